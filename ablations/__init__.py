"""Ablation sweeps: YAML sweep definitions and the resumable train → generate → evaluate runner."""
