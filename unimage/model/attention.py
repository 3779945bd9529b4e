"""Attention over a packed sequence under BAGEL's generalized causal mask, with three interchangeable backends.

The mask is never stored as an L×L matrix in the batch. It is described by per-token metadata (``AttentionLayout``)
and each backend turns that into what its kernel needs:

- ``sdpa``: ``torch.nn.functional.scaled_dot_product_attention`` once per query split (a contiguous run of one split
  id) on the keys that split sees (``_split_plan``): an image split runs unmasked over its visible prefix and itself,
  a text split as an ``is_causal`` call over prefix ++ split (the prefix rows ride along as queries and their outputs
  are dropped; SDPA with a bool mask costs ~2.6x per score on CPU), and only a split that is neither keeps its
  boolean [n, m] block as the mask. Cost and memory are linear in the number of samples of a pack, as BAGEL's
  per-sample ``nested`` path; contiguous key sets are sliced, not gathered. ``per_doc=False`` keeps the single
  dense-masked call over the whole pack as the reference. On a CPU without bf16 matmul the kernel runs in fp32 on the
  bf16 values (``cpu_gemm``).
- ``flex``: a ``BlockMask`` from the same rule as a ``mask_mod`` and ``flex_attention`` (GPU training; forward-only on
  CPU, where torch has no flex backward). Compiled once per process on CUDA, where the compiled mask builder never
  materialises L×L; on CPU (eager, which would) one flex call per document.
- ``flash``: ``flash_attn.flash_attn_varlen_func`` when the ``gpu`` extra is installed. Flash can only express
  "causal" or "full" per segment, so every query split becomes one varlen segment whose keys are gathered: the
  split's visible prefix followed by the split itself; bottom-right-aligned causal masking (flash-attn >= 2.1) then
  gives exactly the rule below.

The rule (bagel-compat §2.4; ``create_sparse_mask`` in BAGEL's ``data/data_utils.py`` says the same), for query i and
key j:

    allowed(i, j) = same_doc(i, j)
                    AND ( j <= pos(i)  OR  (full(i) AND same_split(i, j)) )
                    AND NOT ( noise(j) AND NOT same_split(i, j) )

``pos(i)`` is the query's own index in the key sequence, so the same rule covers training (keys = queries) and
KV-cache inference (keys = cache ++ queries, ``pos(i) = cache_len + i``). A "full" split is a ViT image, a clean VAE
image or a noisy VAE image (with its markers and, under ID prompting, its ID tokens); "noise" marks the noisy one.

Precision: q, k and v reach every kernel in ONE dtype: the autocast dtype when autocast is on (as BAGEL casts them
to bf16; under autocast the RMSNorm weight multiply would otherwise leave q, k in fp32 beside a bf16 v, which
flash-attn rejects), else the activation dtype of v. The output has the kernel's dtype.

Shape letters: Lq queries, Lk keys, Hq query heads, Hkv key/value heads, Dh head dim.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from unimage.model.cpu_gemm import sdpa_dtype

__all__ = [
    "AttentionLayout",
    "ResolvedBackend",
    "attention_dtype",
    "available_backends",
    "flash_available",
    "packed_attention",
    "resolve_backend",
]

ResolvedBackend = Literal["sdpa", "flex", "flash"]
VarlenFn = Callable[..., Tensor]


########################################################################################################################
# The mask as metadata
########################################################################################################################


@dataclass(frozen=True)
class AttentionLayout:
    """Who may attend to whom, as per-token metadata (all 1-D, on the activations' device).

    Attributes:
        q_doc: [Lq] sample (document) id of each query; samples are block-diagonal.
        q_split: [Lq] split id of each query (unique over the whole key sequence).
        q_full: [Lq] bool, the query's split attends bidirectionally (images) rather than causally (text).
        q_pos: [Lq] index of the query's own token in the key sequence.
        k_doc: [Lk] sample id of each key.
        k_split: [Lk] split id of each key.
        k_noise: [Lk] bool, the key belongs to a noisy VAE split (hidden from every other split).
        per_doc: For ``sdpa`` (and ``flex`` off CUDA): one unmasked (or block-masked) call per document over its own
            keys, so cost is Σ Lq_d·Lk_d, not Lq·Lk (the default). False: one dense [Lq, Lk]-masked call, the
            reference the per-document path is tested against.
    """

    q_doc: Tensor
    q_split: Tensor
    q_full: Tensor
    q_pos: Tensor
    k_doc: Tensor
    k_split: Tensor
    k_noise: Tensor
    per_doc: bool = True
    # Backend artefacts (dense mask, flex BlockMask, flash segments) built once and reused by every layer.
    _memo: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def memo(self, key: str, build: Callable[[], Any]) -> Any:
        """``build()`` once per layout and key (every decoder layer shares the layout of a forward)."""
        if key not in self._memo:
            self._memo[key] = build()
        return self._memo[key]

    @classmethod
    def self_attention(cls, doc: Tensor, split: Tensor, full: Tensor, noise: Tensor) -> AttentionLayout:
        """Layout of a packed training sequence: queries and keys are the same L tokens."""
        pos = torch.arange(doc.shape[0], device=doc.device)
        return cls(doc, split, full, pos, doc, split, noise)

    @property
    def num_queries(self) -> int:
        """Lq."""
        return int(self.q_doc.shape[0])

    @property
    def num_keys(self) -> int:
        """Lk."""
        return int(self.k_doc.shape[0])

    def with_prefix(self, n_prefix: int) -> AttentionLayout:
        """Prepend ``n_prefix`` cached keys that every query may see (one sample, already-processed context).

        The cached keys get split id −1 (never equal to a query split), are never noise, and share the first query's
        document. Query positions shift by ``n_prefix``.
        """
        if n_prefix == 0:
            return self
        if bool((self.q_doc != self.q_doc[0]).any()):
            raise ValueError("a KV-cache prefix needs a single-sample query block")
        dev = self.q_doc.device
        doc = torch.full((n_prefix,), int(self.q_doc[0]), dtype=self.k_doc.dtype, device=dev)
        split = torch.full((n_prefix,), -1, dtype=self.k_split.dtype, device=dev)
        noise = torch.zeros(n_prefix, dtype=torch.bool, device=dev)
        return AttentionLayout(
            self.q_doc,
            self.q_split,
            self.q_full,
            self.q_pos + n_prefix,
            torch.cat([doc, self.k_doc]),
            torch.cat([split, self.k_split]),
            torch.cat([noise, self.k_noise]),
            self.per_doc,
        )

    def with_doc_prefixes(self, prefix_lens: Sequence[int]) -> AttentionLayout:
        """Prepend one cached prefix per document: keys = [cache_0 ++ cache_1 ++ … ++ queries].

        The batched form of ``with_prefix`` (several KV-cache contexts in one forward, e.g. the CFG branches of a
        denoising step): document d's queries see ``prefix_lens[d]`` cached keys of their own and nothing of the
        other documents' caches. The query block's document ids must be 0 … n−1 (``pack`` of n samples).
        Prefix keys get split id −1 and are never noise; query positions shift by Σ prefix_lens, so every cached
        key j of document d satisfies j ≤ pos(i) and the unchanged rule gives exactly [cache_d ++ query_d].
        """
        dev = self.q_doc.device
        n_docs = int(self.q_doc.max()) + 1 if self.num_queries else 0
        if len(prefix_lens) != n_docs:
            raise ValueError(f"{len(prefix_lens)} prefix lengths for a query block of {n_docs} documents")
        lens = torch.tensor(list(prefix_lens), dtype=torch.long, device=dev)  # [n]
        total = int(lens.sum())
        doc = torch.repeat_interleave(torch.arange(n_docs, device=dev), lens).to(self.k_doc.dtype)  # [Σ prefix]
        split = torch.full((total,), -1, dtype=self.k_split.dtype, device=dev)
        noise = torch.zeros(total, dtype=torch.bool, device=dev)
        return AttentionLayout(
            self.q_doc,
            self.q_split,
            self.q_full,
            self.q_pos + total,
            torch.cat([doc, self.k_doc]),
            torch.cat([split, self.k_split]),
            torch.cat([noise, self.k_noise]),
            per_doc=True,
        )

    def allowed(self, qi: Tensor, kj: Tensor) -> Tensor:
        """The rule for broadcastable query/key index tensors (used by the dense mask and by flex's ``mask_mod``)."""
        same_split = self.q_split[qi] == self.k_split[kj]
        visible = (kj <= self.q_pos[qi]) | (self.q_full[qi] & same_split)
        hidden_noise = self.k_noise[kj] & ~same_split
        return (self.q_doc[qi] == self.k_doc[kj]) & visible & ~hidden_noise

    def dense_mask(self) -> Tensor:
        """[Lq, Lk] bool, True = may attend.

        Built one sample (document) at a time: samples are block-diagonal, so only their own blocks need the rule.
        """
        dev = self.q_doc.device
        mask = torch.zeros(self.num_queries, self.num_keys, dtype=torch.bool, device=dev)
        for d in torch.unique(self.q_doc).tolist():
            qi = (self.q_doc == d).nonzero().flatten()  # [Lq_d]
            kj = (self.k_doc == d).nonzero().flatten()  # [Lk_d]
            block = self.allowed(qi[:, None], kj[None, :])  # [Lq_d, Lk_d]
            if _contiguous(qi) and _contiguous(kj):
                mask[int(qi[0]) : int(qi[-1]) + 1, int(kj[0]) : int(kj[-1]) + 1] = block
            else:
                mask[qi[:, None], kj[None, :]] = block
        return mask

    def is_fully_visible(self) -> bool:
        """True when every query sees every key (an image block over a cache): the backends then skip the mask."""
        s0, d0 = self.q_split[0], self.q_doc[0]
        kj = torch.arange(self.num_keys, device=self.k_doc.device)
        own = self.k_split == s0
        ok = (
            self.q_full.all()
            & (self.q_split == s0).all()
            & (self.q_doc == d0).all()
            & (self.k_doc == d0).all()
            & ~(self.k_noise & ~own).any()
            & (own | (kj <= self.q_pos.min())).all()
        )
        return bool(ok)

    def query_splits(self) -> list[tuple[int, int, bool]]:
        """Contiguous runs of equal query split id as (start, end, full), host-side (for the flash backend)."""
        split = self.q_split.tolist()
        full = self.q_full.tolist()
        runs: list[tuple[int, int, bool]] = []
        start = 0
        for i in range(1, len(split) + 1):
            if i == len(split) or split[i] != split[start]:
                runs.append((start, i, bool(full[start])))
                start = i
        return runs


def _contiguous(idx: Tensor) -> bool:
    return idx.numel() > 0 and int(idx[-1]) - int(idx[0]) + 1 == idx.numel()


########################################################################################################################
# Backends
########################################################################################################################


def attention_dtype(v: Tensor) -> torch.dtype:
    """The one dtype q, k, v take at the kernel: the autocast dtype when autocast is on for v's device, else v's."""
    dev = v.device.type
    if torch.is_autocast_enabled(dev):
        return torch.get_autocast_dtype(dev)
    return v.dtype


def flash_available() -> bool:
    """Whether ``flash_attn`` is importable (the ``gpu`` extra)."""
    try:
        import flash_attn  # noqa: F401
    except ImportError:
        return False
    return True


def available_backends(device: torch.device) -> list[ResolvedBackend]:
    """Backends that run on ``device`` here: always sdpa and flex (forward-only on CPU), flash on CUDA if installed."""
    out: list[ResolvedBackend] = ["sdpa", "flex"]
    if device.type == "cuda" and flash_available():
        out.append("flash")
    return out


def resolve_backend(requested: str, device: torch.device) -> ResolvedBackend:
    """Turn ``auto`` into a concrete backend for ``device`` and check a forced one can run.

    ``auto``: flash on CUDA when importable, else flex on CUDA, else sdpa (flex has no CPU backward).

    Raises:
        ValueError: Unknown name, or ``flash`` requested without CUDA / flash-attn.
    """
    if requested == "auto":
        if device.type == "cuda":
            return "flash" if flash_available() else "flex"
        return "sdpa"
    if requested == "flash" and "flash" not in available_backends(device):
        raise ValueError(f"attention_backend='flash' needs CUDA and the flash-attn package (device {device})")
    if requested not in ("sdpa", "flex", "flash"):
        raise ValueError(f"unknown attention backend {requested!r}; choose auto, sdpa, flex or flash")
    return requested  # type: ignore[return-value]


def _sdpa(q: Tensor, k: Tensor, v: Tensor, layout: AttentionLayout, scale: float) -> Tensor:
    mask = layout.memo("sdpa", lambda: None if layout.is_fully_visible() else layout.dense_mask()[None, None])
    out = F.scaled_dot_product_attention(
        q.transpose(0, 1)[None],  # [1, Hq, Lq, Dh]
        k.transpose(0, 1)[None],  # [1, Hkv, Lk, Dh]
        v.transpose(0, 1)[None],
        attn_mask=mask,
        scale=scale,
        enable_gqa=True,
    )
    return out[0].transpose(0, 1)  # [Lq, Hq, Dh]


@dataclass(frozen=True)
class _DocBlock:
    """One document's queries and keys: a slice when contiguous (training packs), else an index tensor."""

    q: slice | Tensor  # [Lq_d] rows of q
    k: slice | Tensor  # [Lk_d] rows of k / v
    mask: Tensor | None  # [Lq_d, Lk_d] bool, None when every query sees every key


def _rows(idx: Tensor) -> slice | Tensor:
    return slice(int(idx[0]), int(idx[-1]) + 1) if _contiguous(idx) else idx


def _doc_blocks(layout: AttentionLayout) -> tuple[list[_DocBlock], bool]:
    """Per document its block, and whether the query slices tile [0, Lq) in order (then outputs are concatenated).

    Only the documents' own [Lq_d, Lk_d] blocks of the rule are evaluated: Σ_d Lq_d·Lk_d, never Lq·Lk.
    """
    out: list[_DocBlock] = []
    q_doc, k_doc = layout.q_doc, layout.k_doc
    # Document boundaries on the host once (one sync), not one nonzero() per document and layer.
    docs = torch.unique_consecutive(q_doc).tolist()
    if len(set(docs)) != len(docs):  # interleaved documents: group by id
        docs = sorted(set(docs))
    tiled, next_row = True, 0
    for d in docs:
        qi = (q_doc == d).nonzero().flatten()  # [Lq_d]
        kj = (k_doc == d).nonzero().flatten()  # [Lk_d]
        if kj.numel() == 0:
            raise ValueError(f"document {d} has queries but no keys")
        block = layout.allowed(qi[:, None], kj[None, :])  # [Lq_d, Lk_d]
        q_rows = _rows(qi)
        tiled = tiled and isinstance(q_rows, slice) and q_rows.start == next_row
        next_row = int(qi[-1]) + 1
        out.append(_DocBlock(q_rows, _rows(kj), None if bool(block.all()) else block))
    return out, tiled and next_row == layout.num_queries


def _math_attention(q: Tensor, k: Tensor, v: Tensor, bias: Tensor, scale: float) -> Tensor:
    """softmax(q·kᵀ·scale + bias)·v for one document, GQA without repeating k/v: [Lq, Hq, Dh] → [Lq, Hq, Dh].

    The query heads of a KV group (h = j·G + g, as ``repeat_interleave``) are stacked along the query axis, so each
    KV head serves one [G·Lq, Lk] matmul. Used for masked blocks in bf16/fp16 on CPU, where torch's fused CPU kernel
    with a mask is about 2x slower forward + backward (measured at 260-token documents, 8/2 heads, Dh 32).
    """
    lq, hq, dh = q.shape
    hkv, lk = k.shape[1], k.shape[0]
    g = hq // hkv
    qg = q.permute(1, 0, 2).reshape(hkv, g * lq, dh)  # [Hkv, G·Lq, Dh]
    scores = torch.baddbmm(
        bias.expand(hkv, g, lq, lk).reshape(hkv, g * lq, lk), qg, k.permute(1, 2, 0), alpha=scale
    )  # [Hkv, G·Lq, Lk]
    out = torch.bmm(scores.softmax(-1), v.transpose(0, 1))  # [Hkv, G·Lq, Dh]
    return out.view(hq, lq, dh).transpose(0, 1)  # [Lq, Hq, Dh]


def _use_math(q: Tensor) -> bool:
    return q.device.type == "cpu" and q.dtype in (torch.bfloat16, torch.float16)


@dataclass(frozen=True)
class _Call:
    """One kernel call of the per-split plan: the rows of one query split over the keys it sees.

    Attributes:
        out: The query rows this call produces (one split, contiguous).
        q: Rows fed to the kernel as queries: ``out``, or for a causal call the ``len(k) - len(out)`` rows before it
            too (their outputs are dropped; their gradient is exactly zero).
        k: Key / value rows (a slice when contiguous, else an index tensor).
        causal: Run with ``is_causal=True`` (top-left aligned over len(q) = len(k) rows, which on the kept rows is
            the bottom-right-aligned causal rule of a text split after its visible prefix).
        mask: [len(out), len(k)] bool where the split's rows are neither all-visible nor causal (else None).
    """

    out: slice
    q: slice
    k: slice | Tensor
    causal: bool
    mask: Tensor | None


# A causal split of n queries over m visible keys runs as one is_causal call over m rows (m²/2 scores) when
# m <= _CAUSAL_WASTE · n; beyond that (a short text after a long context) a masked call over n·m scores is cheaper.
# SDPA with a bool mask costs about 2.6x an is_causal call per score on CPU, so the break-even is near m = 5n.
_CAUSAL_WASTE = 5


def _split_plan(layout: AttentionLayout) -> list[_Call]:
    """Per query split (contiguous run of one split id), the kernel call that computes it, in query order.

    The rule is evaluated only on each split's own [n, Lk_d] block of its document's keys (never Lq·Lk). A split
    whose rows all see the same keys (images; one decoded token) becomes an unmasked call over exactly those keys;
    a text split that sees its prefix and itself causally becomes an ``is_causal`` call; anything else keeps its
    boolean block as the mask.
    """
    calls: list[_Call] = []
    doc_keys: dict[int, Tensor] = {}
    q_doc = layout.q_doc.tolist()
    for start, end, _full in layout.query_splits():
        d = int(q_doc[start])
        if d not in doc_keys:
            doc_keys[d] = (layout.k_doc == d).nonzero().flatten()
        keys = doc_keys[d]  # [Lk_d]
        rows = torch.arange(start, end, device=keys.device)
        block = layout.allowed(rows[:, None], keys[None, :])  # [n, Lk_d]
        visible = block.any(0)
        kidx = keys[visible]  # [m] keys seen by any row of the split
        b = block[:, visible]  # [n, m]
        n, m = b.shape
        if not bool(block.any(1).all()):
            raise ValueError(f"query split at rows {start}:{end} has a query that sees no key")
        out = slice(start, end)
        if bool(b.all()):
            calls.append(_Call(out, out, _rows(kidx), False, None))
            continue
        extra = m - n
        causal = 0 <= extra <= start and torch.equal(b, torch.ones(n, m, dtype=torch.bool, device=b.device).tril(extra))
        if causal and m <= _CAUSAL_WASTE * n:
            calls.append(_Call(out, slice(start - extra, end), _rows(kidx), True, None))
        else:
            calls.append(_Call(out, out, _rows(kidx), False, b))
    return calls


def _sdpa_per_doc(q: Tensor, k: Tensor, v: Tensor, layout: AttentionLayout, scale: float) -> Tensor:
    """SDPA one query split at a time on the keys it sees (the varlen idea without a varlen kernel).

    Documents never meet (each split's keys are its own document's), so cost is linear in the number of samples;
    within a document the images run unmasked and the text causally, so no mask is built for a training pack.
    """
    calls = layout.memo("sdpa_plan", lambda: _split_plan(layout))
    if not calls:
        return q.new_empty(q.shape)
    math = _use_math(q)
    biases: list[Tensor | None] = []
    if math:  # additive masks (0 / −inf) in the kernel dtype, built once per layout and shared by all layers
        biases = layout.memo(
            f"bias_{q.dtype}",
            lambda: [
                None
                if c.mask is None
                else torch.zeros(c.mask.shape, dtype=q.dtype, device=q.device).masked_fill(~c.mask, float("-inf"))
                for c in calls
            ],
        )
    outs = []
    for i, c in enumerate(calls):
        if math and biases[i] is not None:
            outs.append(_math_attention(q[c.q], k[c.k], v[c.k], biases[i], scale))  # type: ignore[arg-type]
            continue
        o = F.scaled_dot_product_attention(
            q[c.q].transpose(0, 1)[None],  # [1, Hq, Lq_c, Dh]
            k[c.k].transpose(0, 1)[None],  # [1, Hkv, Lk_c, Dh]
            v[c.k].transpose(0, 1)[None],
            attn_mask=None if c.mask is None else c.mask[None, None],
            is_causal=c.causal,
            scale=scale,
            enable_gqa=True,
        )[0].transpose(0, 1)  # [Lq_c, Hq, Dh]
        drop = (c.q.stop - c.q.start) - (c.out.stop - c.out.start)
        outs.append(o[drop:] if drop else o)
    return outs[0] if len(outs) == 1 else torch.cat(outs)  # the splits tile [0, Lq) in order


_COMPILED_FLEX: dict[str, Any] = {}


def _flex_fn(device: torch.device) -> Any:
    from torch.nn.attention.flex_attention import flex_attention

    if device.type != "cuda":
        return flex_attention  # eager: correct (forward) on CPU, the compiled path has no CPU benefit here
    if "cuda" not in _COMPILED_FLEX:
        _COMPILED_FLEX["cuda"] = torch.compile(flex_attention)
    return _COMPILED_FLEX["cuda"]


def _flex_call(q: Tensor, k: Tensor, v: Tensor, block_mask: Any, scale: float) -> Tensor:
    import warnings

    with warnings.catch_warnings():
        # Eager flex warns that it is unfused; on CPU that is the intended use (tests and reference numbers).
        warnings.filterwarnings("ignore", message=".*flex_attention called without torch.compile.*")
        out = _flex_fn(q.device)(
            q.transpose(0, 1)[None],
            k.transpose(0, 1)[None],
            v.transpose(0, 1)[None],
            block_mask=block_mask,
            scale=scale,
            enable_gqa=True,
        )
    return out[0].transpose(0, 1)  # [Lq, Hq, Dh]


def _flex(q: Tensor, k: Tensor, v: Tensor, layout: AttentionLayout, scale: float) -> Tensor:
    from torch.nn.attention.flex_attention import create_block_mask

    if q.device.type != "cuda" and layout.per_doc:
        return _flex_per_doc(q, k, v, layout, scale)

    def mask_mod(b: Tensor, h: Tensor, qi: Tensor, kj: Tensor) -> Tensor:
        return layout.allowed(qi, kj)

    def build() -> Any:
        compile_mask = q.device.type == "cuda"  # the compiled mask builder avoids materialising L×L on the GPU
        return create_block_mask(
            mask_mod, None, None, layout.num_queries, layout.num_keys, device=q.device, _compile=compile_mask
        )

    return _flex_call(q, k, v, layout.memo("flex", build), scale)


def _flex_per_doc(q: Tensor, k: Tensor, v: Tensor, layout: AttentionLayout, scale: float) -> Tensor:
    """Eager flex (CPU) one document at a time: its block mask from the document's own [Lq_d, Lk_d] rule."""
    from torch.nn.attention.flex_attention import create_block_mask

    def build() -> list[Any]:
        masks: list[Any] = []
        for b in layout.memo("sdpa_per_doc", lambda: _doc_blocks(layout))[0]:
            if b.mask is None:  # all-visible: flex without a block mask is full attention
                masks.append(None)
                continue

            def mask_mod(_b: Tensor, _h: Tensor, qi: Tensor, kj: Tensor, m: Tensor = b.mask) -> Tensor:
                return m[qi, kj]

            lq, lk = b.mask.shape
            masks.append(create_block_mask(mask_mod, None, None, lq, lk, device=q.device, _compile=False))
        return masks

    masks = layout.memo("flex_per_doc", build)
    blocks, tiled = layout.memo("sdpa_per_doc", lambda: _doc_blocks(layout))
    outs = [_flex_call(q[b.q], k[b.k], v[b.k], m, scale) for b, m in zip(blocks, masks)]
    if tiled:
        return outs[0] if len(outs) == 1 else torch.cat(outs)
    out = outs[0].new_empty((layout.num_queries, *outs[0].shape[1:]))
    for b, o in zip(blocks, outs):
        out[b.q] = o
    return out


def _flash_segments(
    layout: AttentionLayout, device: torch.device
) -> tuple[list[tuple[int, int, bool]], list[Tensor], list[Tensor]]:
    """Per query split: (runs, query indexes, gathered key indexes = visible prefix ++ own split)."""
    runs = layout.query_splits()
    kj = torch.arange(layout.num_keys, device=device)
    q_parts, k_idx = [], []
    for start, end, _full in runs:
        first = torch.tensor([start], device=device)
        # Keys the split's first query sees, excluding its own split: the split's prefix. Appending the split itself
        # (in order) makes bottom-right-aligned causal (text) or non-causal (images) masking exact.
        own = layout.k_split == layout.q_split[start]
        prefix = layout.allowed(first[:, None], kj[None, :])[0] & ~own
        k_idx.append(torch.cat([kj[prefix], kj[own]]))
        q_parts.append(torch.arange(start, end, device=device))
    return runs, q_parts, k_idx


def _flash(
    q: Tensor, k: Tensor, v: Tensor, layout: AttentionLayout, scale: float, varlen_fn: VarlenFn | None
) -> Tensor:
    """One varlen segment per query split; keys gathered as (visible prefix ++ own split)."""
    if varlen_fn is None:
        from flash_attn import flash_attn_varlen_func

        varlen_fn = flash_attn_varlen_func
    runs, q_parts, k_idx = layout.memo("flash", lambda: _flash_segments(layout, q.device))
    causal_flags = {full for _, _, full in runs}
    if len(causal_flags) == 2:
        # Mixed causal and full splits: run the two groups separately (flash takes one causal flag per call).
        out: Tensor | None = None
        for want_full in (False, True):
            sel = [i for i, (_, _, full) in enumerate(runs) if full == want_full]
            sub = _flash_call(
                q, k, v, [q_parts[i] for i in sel], [k_idx[i] for i in sel], not want_full, scale, varlen_fn
            )
            if out is None:  # in the kernel's dtype, not q's
                out = sub.new_empty((q.shape[0], *sub.shape[1:]))
            out[torch.cat([q_parts[i] for i in sel])] = sub
        assert out is not None
        return out
    causal = not next(iter(causal_flags))
    return _flash_call(q, k, v, q_parts, k_idx, causal, scale, varlen_fn)


def _flash_call(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    q_parts: list[Tensor],
    k_idx: list[Tensor],
    causal: bool,
    scale: float,
    varlen_fn: VarlenFn,
) -> Tensor:
    q_all = torch.cat(q_parts)
    k_all = torch.cat(k_idx)
    cu_q = torch.tensor([0] + [int(p.shape[0]) for p in q_parts], device=q.device).cumsum(0).to(torch.int32)
    cu_k = torch.tensor([0] + [int(p.shape[0]) for p in k_idx], device=q.device).cumsum(0).to(torch.int32)
    return varlen_fn(
        q[q_all],  # [ΣLq, Hq, Dh]
        k[k_all],  # [ΣLk, Hkv, Dh]; flash handles GQA itself
        v[k_all],
        cu_seqlens_q=cu_q,
        cu_seqlens_k=cu_k,
        max_seqlen_q=max(int(p.shape[0]) for p in q_parts),
        max_seqlen_k=max(int(p.shape[0]) for p in k_idx),
        causal=causal,
        softmax_scale=scale,
    )


def packed_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    layout: AttentionLayout,
    backend: ResolvedBackend = "sdpa",
    varlen_fn: VarlenFn | None = None,
) -> Tensor:
    """Attention of packed queries over packed keys under ``layout``; softmax scale 1/√Dh.

    Args:
        q: [Lq, Hq, Dh] queries (after QK-norm and RoPE).
        k: [Lk, Hkv, Dh] keys.
        v: [Lk, Hkv, Dh] values.
        layout: Who may attend to whom.
        backend: A resolved backend (see ``resolve_backend``).
        varlen_fn: Only for ``flash``: a function with ``flash_attn_varlen_func``'s signature (tests pass a pure-torch
            one to check the segment construction without a GPU).

    Returns:
        [Lq, Hq, Dh] in ``attention_dtype(v)`` (q, k, v are cast to it first).
    """
    if q.shape[0] != layout.num_queries or k.shape[0] != layout.num_keys:
        raise ValueError(
            f"layout is for {layout.num_queries} queries / {layout.num_keys} keys, got {q.shape[0]} / {k.shape[0]}"
        )
    scale = 1.0 / math.sqrt(q.shape[-1])
    dtype = attention_dtype(v)
    q, k, v = q.to(dtype), k.to(dtype), v.to(dtype)
    if backend == "sdpa":
        kernel = sdpa_dtype(dtype, q.device)  # fp32 for bf16 on a CPU without bf16 matmul (``cpu_gemm``)
        if kernel != dtype:
            q, k, v = q.to(kernel), k.to(kernel), v.to(kernel)
        out = _sdpa_per_doc(q, k, v, layout, scale) if layout.per_doc else _sdpa(q, k, v, layout, scale)
        return out.to(dtype)
    if backend == "flex":
        return _flex(q, k, v, layout, scale)
    if backend == "flash":
        return _flash(q, k, v, layout, scale, varlen_fn)
    raise ValueError(f"unknown attention backend {backend!r}")
