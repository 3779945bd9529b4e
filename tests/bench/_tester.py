"""Shared tester for the torchmetrics classes (torchmetrics' `MetricTester` pattern, trimmed).

`check_metric(factory, stories, reference)` runs, for a list of per-story `update` argument tuples:
- accumulated: all updates on one instance == `reference(all stories)` (the functional path);
- batch-wise: `forward` on each batch returns `reference(batch)`, and the accumulated state after the
  forwards still equals `reference(all)`;
- reset: after `reset()` the metric equals a fresh one on new data;
- pickling: a pickled/unpickled instance continues accumulating identically;
- distributed reduction: states of two instances that saw disjoint halves, merged with `merge_state` (the
  `dist_reduce_fx` path), equal the single-instance result.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torchmetrics import Metric

Args = tuple[Any, ...]


def _as_float_dict(value: Any) -> dict[str, float]:
    if isinstance(value, dict):
        return {k: float(v) for k, v in value.items()}
    return {"value": float(value)}


def assert_close(got: Any, want: Any, tol: float = 1e-9) -> None:
    g, w = _as_float_dict(got), _as_float_dict(want)
    assert g.keys() == w.keys(), (g, w)
    for k in g:
        if math.isnan(w[k]):
            assert math.isnan(g[k]), (k, g[k])
        else:
            assert abs(g[k] - w[k]) <= tol * max(1.0, abs(w[k])), (k, g[k], w[k])


def _feed(metric: Metric, stories: Sequence[Args]) -> None:
    for args in stories:
        metric.update(*args)


def check_metric(
    factory: Callable[[], Metric], stories: Sequence[Args], reference: Callable[[Sequence[Args]], Any], batch: int = 2
) -> None:
    assert len(stories) >= 4, "need at least 4 stories to split into batches and halves"
    want_all = reference(stories)

    # accumulated == functional
    m = factory()
    _feed(m, stories)
    assert_close(m.compute(), want_all)

    # batch-wise: `forward` returns the value of that call's story alone while the state keeps accumulating;
    # a fresh instance fed a batch of stories equals the reference on that batch
    m = factory()
    for args in stories:
        assert_close(m(*args), reference([args]))
    assert_close(m.compute(), want_all)
    for i in range(0, len(stories), batch):
        probe = factory()
        _feed(probe, stories[i : i + batch])
        assert_close(probe.compute(), reference(stories[i : i + batch]))

    # reset
    m.reset()
    _feed(m, stories[:2])
    fresh = factory()
    _feed(fresh, stories[:2])
    assert_close(m.compute(), fresh.compute())
    assert_close(m.compute(), reference(stories[:2]))

    # pickling mid-way
    m = factory()
    half = len(stories) // 2
    _feed(m, stories[:half])
    m2 = pickle.loads(pickle.dumps(m))
    _feed(m2, stories[half:])
    assert_close(m2.compute(), want_all)

    # distributed reduction: merge the states of two ranks
    a, b = factory(), factory()
    _feed(a, stories[:half])
    _feed(b, stories[half:])
    a.merge_state(b)
    assert_close(a.compute(), want_all)

    # contract flags
    assert factory().higher_is_better is True
    assert factory().is_differentiable is False
    assert all(isinstance(v, torch.Tensor | list) for v in factory()._defaults.values())
