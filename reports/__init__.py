"""Tables and figures built from run directories (never imports torch at module level, never recomputes metrics)."""
