"""The run directory of one arm (DESIGN.md §3.4): written by training, generation and evaluation; read by reports and
the dashboard::

    <runs>/<sweep>/<arm>/
      config.yaml         the fully resolved config of this arm (replayable as is)
      provenance.json     git commit, package versions, seeds, device, metric era, judge model, dataset split
      checkpoints/        the training run directory (Lightning checkpoints, the exported BAGEL-layout dir, logs)
      outputs/            ViStoryBench output layout (`formats.vistory`)
      metrics/            the evaluator's results folder (`formats.results`: results_row.json, per_story.json, ...)
      status.json         which stages finished; the runner resumes from here

Files are written atomically (:mod:`fsio.atomic`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["ARM_MARKERS", "CONFIG_FILE", "PROVENANCE_FILE", "STATUS_FILE", "ArmPaths"]

CONFIG_FILE = "config.yaml"
PROVENANCE_FILE = "provenance.json"
STATUS_FILE = "status.json"
#: Files whose presence marks a folder as an arm's run directory (readers look for any of them).
ARM_MARKERS: tuple[str, ...] = (CONFIG_FILE, PROVENANCE_FILE, STATUS_FILE)


@dataclass(frozen=True)
class ArmPaths:
    """The run directory of one arm (module docstring)."""

    root: Path

    @property
    def config(self) -> Path:
        """``config.yaml``: the resolved, replayable config."""
        return self.root / CONFIG_FILE

    @property
    def provenance(self) -> Path:
        """``provenance.json``."""
        return self.root / PROVENANCE_FILE

    @property
    def status(self) -> Path:
        """``status.json``: the stages finished (the runner resumes from it)."""
        return self.root / STATUS_FILE

    @property
    def checkpoints(self) -> Path:
        """``checkpoints/``: the training run directory of ``unimage fit`` (its resolved ``config.yaml``,
        ``checkpoints/`` with ``last.ckpt`` and ``export/``, ``logs/csv/metrics.csv``, ``train_status.json``)."""
        return self.root / "checkpoints"

    @property
    def export(self) -> Path:
        """The exported BAGEL-layout checkpoint (training's own layout: ``<its run_dir>/checkpoints/export``)."""
        return self.checkpoints / "checkpoints" / "export"

    @property
    def train_log(self) -> Path:
        """Lightning CSVLogger file of the training run."""
        return self.checkpoints / "logs" / "csv" / "metrics.csv"

    @property
    def outputs(self) -> Path:
        """``outputs/``: ViStoryBench output layout."""
        return self.root / "outputs"

    @property
    def metrics(self) -> Path:
        """``metrics/``: the evaluator's out dir (``results_row.json``, per-story JSON)."""
        return self.root / "metrics"

    @property
    def launch(self) -> Path:
        """``launch/``: emitted commands and sbatch scripts."""
        return self.root / "launch"

    def stage_dir(self, stage: str) -> Path | None:
        """The folder a stage owns inside the arm (moved aside when the stage's config changes); data has none."""
        return {"train": self.checkpoints, "generate": self.outputs, "evaluate": self.metrics}.get(stage)
