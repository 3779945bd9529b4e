"""Token-level text decoding for the Director: a token stream over the KV cache, and constrained token choice.

``TokenStream`` feeds token ids to the understanding expert and returns the next-token logits. With the cache
(``use_cache=True``) the prefix is prefilled once and every new token attends to the cached keys/values (BAGEL's
``generate_text``, bagel-compat §2.5, §4.3): cost per token grows linearly with the context. Without it the whole
sequence is recomputed for every token (quadratic; kept as the reference the cache is tested and benchmarked against).
Both go through the same packed forward, so they must give the same tokens.

The stream is persistent in the functional sense: ``snapshot()`` returns a handle (an immutable ``Context`` and a
length) and ``restore()`` goes back to it, which the Director uses to drop a description tail it cannot keep.

``choose`` picks one id from logits restricted by a mask and an acceptance test: greedy takes the best accepted id,
sampling draws from softmax(logits / T) within the top-p nucleus and redraws without rejected ids. BAGEL has no
constrained decoding; with an always-true test and no mask this is exactly its greedy / multinomial rule (plus top-p).

Shape letters: V vocabulary, D hidden.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import torch
from torch import Tensor

from unimage.model.cache import Context, run_cached
from unimage.model.packing import pack_tokens

if TYPE_CHECKING:
    from unimage.model.unimage import UniMAGE

__all__ = ["StreamState", "TokenStream", "choose"]

T = TypeVar("T")


@dataclass(frozen=True)
class StreamState:
    """A point of a ``TokenStream`` to come back to."""

    context: Context
    num_ids: int
    logits: Tensor


class TokenStream:
    """Feeds text tokens through the model after a raw-token prefix; see the module docstring.

    Args:
        model: The model (eval mode).
        prefix_ids: Raw ids of everything before the generated tokens, delimiters included
            (``<|im_start|> context <|im_end|> <|im_start|>``); positions run from 0.
        use_cache: Keep a KV cache (True) or recompute the whole sequence at every call.
    """

    def __init__(self, model: UniMAGE, prefix_ids: Sequence[int], use_cache: bool = True) -> None:
        if not prefix_ids:
            raise ValueError("TokenStream needs a non-empty prefix (at least <|im_start|>)")
        self.model = model
        self.use_cache = use_cache
        self.ids: list[int] = []
        self.context = Context.empty()
        self._prefix = list(prefix_ids)
        self.num_forward_tokens = 0  # tokens pushed through the decoder (cost measure for the benchmark)
        self.logits = self._run(self._prefix, initial=True)

    @torch.no_grad()
    def _run(self, new_ids: Sequence[int], initial: bool = False) -> Tensor:
        model = self.model
        cfg = model.config
        device = model.llm2vae.weight.device
        empty_lat = torch.empty(0, cfg.patch_latent_dim, device=device)
        empty_t = torch.empty(0, device=device)
        if self.use_cache:
            batch = pack_tokens(list(new_ids), cfg, start_position=self.context.next_position).to(device)
            hidden, kv = run_cached(model, self.context, batch, empty_lat, empty_t)  # [n, D]
            self.context = self.context.extended(kv, len(new_ids), self.context.next_position + len(new_ids))
            self.num_forward_tokens += len(new_ids)
        else:
            everything = self._prefix + self.ids + ([] if initial else list(new_ids))
            batch = pack_tokens(everything, cfg, start_position=0).to(device)
            hidden, _ = run_cached(model, Context.empty(), batch, empty_lat, empty_t)  # [L, D]
            self.num_forward_tokens += len(everything)
        return model.language_model.lm_head(hidden[-1]).float()  # [V]

    def feed(self, ids: Sequence[int]) -> Tensor:
        """Append ``ids`` (one forward for all of them); returns the next-token logits [V] and keeps them."""
        if not ids:
            return self.logits
        logits = self._run(ids)
        self.ids.extend(int(i) for i in ids)
        self.logits = logits
        return logits

    def snapshot(self) -> StreamState:
        """The current point (cheap: the context is immutable and shared)."""
        return StreamState(self.context, len(self.ids), self.logits)

    def restore(self, state: StreamState) -> None:
        """Go back to ``state`` (tokens fed after it are forgotten)."""
        self.context = state.context
        del self.ids[state.num_ids :]
        self.logits = state.logits


def _draw(
    logits: Tensor,
    allowed: Tensor,
    do_sample: bool,
    temperature: float,
    top_p: float,
    generator: torch.Generator | None,
) -> int | None:
    """One id among ``allowed`` ([V] bool), or None when nothing is allowed."""
    if not bool(allowed.any()):
        return None
    masked = logits.masked_fill(~allowed, float("-inf"))
    if not do_sample:
        return int(masked.argmax())
    probs = torch.softmax(masked / temperature, dim=-1)  # [V]
    if top_p < 1:
        sorted_p, order = probs.sort(descending=True)
        before = sorted_p.cumsum(0) - sorted_p  # mass of strictly more probable ids
        sorted_p = torch.where(before < top_p, sorted_p, torch.zeros_like(sorted_p))
        probs = torch.zeros_like(probs).scatter(0, order, sorted_p)
    return int(torch.multinomial(probs.cpu(), 1, generator=generator))


def choose(
    logits: Tensor,
    accept: Callable[[int], T | None],
    *,
    candidates: Sequence[int] | None = None,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
    max_tries: int = 64,
) -> tuple[int, T] | None:
    """Pick an id whose ``accept(id)`` is not None, among ``candidates`` (all ids when None).

    Rejected ids are removed and the pick is redone (greedy: the next best; sampling: a redraw renormalised
    without them, still within the nucleus of the original distribution when possible).

    Returns:
        (id, verdict), or None when every candidate was rejected or ``max_tries`` picks failed.
    """
    allowed = torch.zeros_like(logits, dtype=torch.bool)
    if candidates is None:
        allowed[:] = True
    else:
        allowed[list(candidates)] = True
    allowed &= torch.isfinite(logits)
    for _ in range(max_tries):
        token = _draw(logits, allowed, do_sample, temperature, top_p, generator)
        if token is None:
            return None
        verdict = accept(token)
        if verdict is not None:
            return token, verdict
        allowed[token] = False
    return None
