"""Helpers shared by the metric classes: a float64 sum/count state pair reduced by summation."""

from __future__ import annotations

import math

import torch
from torchmetrics import Metric


def add_mean_state(metric: Metric, name: str) -> None:
    """Register ``<name>_sum`` and ``<name>_count`` float64 states, summed across processes."""
    metric.add_state(f"{name}_sum", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
    metric.add_state(f"{name}_count", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")


def add_value(metric: Metric, name: str, value: float, weight: float = 1.0) -> None:
    """Add one (finite) value to the running mean ``name``; NaN values (e.g. a story with no image) are skipped."""
    if math.isnan(value):
        return
    setattr(metric, f"{name}_sum", getattr(metric, f"{name}_sum") + value * weight)
    setattr(metric, f"{name}_count", getattr(metric, f"{name}_count") + weight)


def mean_of(metric: Metric, name: str) -> torch.Tensor:
    """The running mean ``name`` (NaN before any value)."""
    count = getattr(metric, f"{name}_count")
    total = getattr(metric, f"{name}_sum")
    return total / count if count > 0 else torch.tensor(float("nan"), dtype=torch.float64)
