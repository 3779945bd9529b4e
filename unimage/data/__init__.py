"""Training and evaluation data for UniMAGE.

- `unimage.data.synthstory` — SynthStory, a procedural story generator whose ground truth is known exactly
  (characters, environments, boxes per shot), writing training manifests and a ViStoryBench-layout eval set.
- `unimage.data.manifest` — the three sample kinds (interleaved script + keyframes, text-only script,
  text–image pair) read from JSONL / parquet manifests, with bad records skipped and counted.
- `unimage.data.transforms` — Pre-Context Script Splitting for text-only scripts.

Importing this package has no side effects.
"""
