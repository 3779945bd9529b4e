"""Diagnostics of trained checkpoints that need no rendering (issue 11, item 3).

- ``diagnostics``: ``diagnose(checkpoint_dir, data_dir) -> list[DiagRow]`` and ``write_rows`` (the sweep's long CSV);
- ``targets``: the teacher-forced text views (full, continuation / extension with and without their marker);
- ``losses``: the training loss per token;
- ``regions``: re-appearing / first-appearing / background pixels of each keyframe;
- ``structure``: structural checks of Director output;
- ``heldout``: SynthStory's held-out stories as the diagnostics read them.

Importing this package imports nothing heavy; import the submodules.
"""
