"""File formats shared by every package: the one place that knows where files live and what they hold.

A leaf package: pure Python (standard library and :mod:`fsio`, nothing else of the project, no numpy, no torch), so
``bench`` (which must not import ``unimage``), ``unimage``, ``ablations``, ``reports`` and ``dashboard`` can all use it.

- `formats.vistory`: the ViStoryBench dataset layout (``story.json`` reading, the lite split), the generated-output
  layout, its timestamps, and `OutputWriter`, the one writer of that layout (DESIGN.md §3.3);
- `formats.rundir`: the run directory of one arm (DESIGN.md §3.4);
- `formats.results`: the results-table columns, their headers and decimals (DESIGN.md §3.5);
- `formats.perstory`: ``per_story.json``, the per-story numbers the evaluator aggregates and the reports resample;
- `formats.published`: the published numbers our rows are printed beside.

Writes go through :mod:`fsio.atomic`, the one atomic writer.
"""
