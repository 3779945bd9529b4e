"""Matching listed characters to detected boxes in one shot (`reference/vistorybench.md` §4.3).

Both matchers take ``sim`` [E, N]: ``sim[c, b]`` = max over character ``c``'s reference features of the
similarity between box ``b``'s crop and that reference. They return, per character, the matched box index or
None ("missing in this shot").
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

INVALID = -1e6  # cost-matrix entry for a crop the encoder gave no feature for (no face), as in the official code


def greedy_match(sim: Tensor, valid: Tensor | None = None) -> list[int | None]:
    """Eras A/B greedy matcher.

    For each character ``c`` go through boxes in descending ``sim[c, b]`` and accept the first box for which no
    other listed character has a strictly higher similarity. Boxes are not removed after a match, so two
    characters can share a box on an exact tie (as in the official code).

    Args:
        sim: [E, N] similarities (the caller has already kept the top-min(N, E) boxes by detector logit for CIDS).
        valid: optional [E, N] bool, False where the crop has no feature for that character's encoder.

    Returns:
        Per character, the matched box index or None.

    Example:
        >>> import torch
        >>> greedy_match(torch.tensor([[0.9, 0.8], [0.85, 0.1]]))
        [0, None]
    """
    E, N = _check(sim, valid)
    s = sim.double().clone()
    if valid is not None:
        s[~valid] = float("-inf")
    result: list[int | None] = []
    for c in range(E):
        order = sorted(range(N), key=lambda b: -float(s[c, b]))  # stable: ties keep box order
        chosen: int | None = None
        for b in order:
            if s[c, b] == float("-inf"):
                break
            others = torch.cat([s[:c, b], s[c + 1 :, b]])
            if others.numel() == 0 or not bool((others > s[c, b]).any()):
                chosen = b
                break
        result.append(chosen)
    return result


def greedy_match_gpt_eval(sim: Tensor, names: Sequence[str] | None = None) -> list[int | None]:
    """Era A's prompt-alignment matcher exactly as `gpt_eval.py` runs it (OCCM and single character action).

    For character ``c`` it repeatedly takes the best remaining value of its (shrinking) candidate list, but checks
    the other characters' similarity at that value's *position in the shrinking list*, not at the box itself; a
    conflict drops the value and the loop goes on. The accepted box is the first box holding the accepted value.
    Characters with the same name never conflict (the official loop compares names). Use
    ``--fix gpt-eval-matching`` for :func:`greedy_match` instead.

    Args:
        sim: [E, N] similarities, the boxes in the detector's order.
        names: the E listed character names (default: all distinct).

    Returns:
        Per character, the matched box index or None.

    Example:
        >>> import torch
        >>> greedy_match_gpt_eval(torch.tensor([[0.9, 0.8, 0.1], [0.95, 0.2, 0.7]]))
        [None, 0]
    """
    E, _ = _check(sim, None)
    labels = list(names) if names is not None else [str(i) for i in range(E)]
    if len(labels) != E:
        raise ValueError(f"names must have one entry per row of sim ({E}), got {len(labels)}")
    rows = sim.tolist()
    result: list[int | None] = []
    for c in range(E):
        remaining = list(rows[c])
        chosen: int | None = None
        while remaining:
            pos = max(range(len(remaining)), key=lambda i: remaining[i])  # first maximum, as torch.argmax
            if not any(rows[o][pos] > rows[c][pos] for o in range(E) if labels[o] != labels[c]):
                chosen = rows[c].index(remaining[pos])
                break
            remaining.pop(pos)
        result.append(chosen)
    return result


def hungarian_match(sim: Tensor, valid: Tensor | None = None) -> list[int | None]:
    """Era C matcher: maximum-total-similarity assignment (``scipy.optimize.linear_sum_assignment`` on ``-S``).

    Invalid entries get the score -1e6; an assignment onto an invalid entry is discarded.

    Example:
        >>> import torch
        >>> hungarian_match(torch.tensor([[0.9, 0.8], [0.85, 0.1]]))
        [1, 0]
    """
    E, N = _check(sim, valid)
    s = sim.double().clone()
    if valid is not None:
        s[~valid] = INVALID
    result: list[int | None] = [None] * E
    if E == 0 or N == 0:
        return result
    from scipy.optimize import linear_sum_assignment  # lazy: importing scipy.optimize costs ~1 s

    rows, cols = linear_sum_assignment(-s.numpy())
    for r, c in zip(rows.tolist(), cols.tolist()):
        if valid is None or bool(valid[r, c]):
            result[r] = int(c)
    return result


def _check(sim: Tensor, valid: Tensor | None) -> tuple[int, int]:
    if sim.ndim != 2:
        raise ValueError(f"sim must be [E, N], got shape {tuple(sim.shape)}")
    if valid is not None and (valid.shape != sim.shape or valid.dtype != torch.bool):
        raise ValueError(
            f"valid must be a bool tensor of shape {tuple(sim.shape)}, got {valid.dtype} {tuple(valid.shape)}"
        )
    return int(sim.shape[0]), int(sim.shape[1])


def top_boxes(logits: Tensor, k: int) -> list[int]:
    """Indices of the ``k`` highest-logit boxes, highest first (Eras A/B keep top-min(N, E) boxes)."""
    k = max(0, min(k, int(logits.numel())))
    return [int(i) for i in np.argsort(-logits.detach().double().numpy(), kind="stable")[:k]]
