"""One tokenizer interface over a Hugging Face (Qwen2) tokenizer and an offline byte-level tokenizer.

Both register BAGEL's chat/vision tokens and the script vocabulary (:mod:`unimage.script.vocab`) so that every special
token encodes to exactly one id, expose those ids as attributes, and never add bos/eos on their own: BAGEL wraps each
text segment as ``<|im_start|> ids <|im_end|>`` itself (``reference/bagel-compat.md`` §4.3), see
:meth:`ScriptTokenizer.encode_segment`.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from unimage.script.vocab import (
    BAGEL_SPECIAL_TOKENS,
    ENDOFTEXT,
    IM_END,
    IM_START,
    VISION_END,
    VISION_START,
    ScriptVocab,
    VocabConfig,
)


class ScriptTokenizer(ABC):
    """The interface the model and data code use, whatever tokenizer is underneath."""

    def __init__(self, vocab: ScriptVocab) -> None:
        self.vocab = vocab
        self.special_tokens: tuple[str, ...] = (*BAGEL_SPECIAL_TOKENS, *vocab.tokens)

    def _init_ids(self) -> None:
        """Cache special ids; call at the end of a subclass constructor, once tokens are registered."""
        self.endoftext_id = self.token_id(ENDOFTEXT)
        self.pad_id = self.endoftext_id  # Qwen2 pads with <|endoftext|>
        self.im_start_id = self.token_id(IM_START)
        self.im_end_id = self.token_id(IM_END)
        self.bos_id = self.im_start_id
        self.eos_id = self.im_end_id
        self.vision_start_id = self.token_id(VISION_START)
        self.vision_end_id = self.token_id(VISION_END)
        self.script_token_ids: dict[str, int] = {t: self.token_id(t) for t in self.vocab.tokens}

    @property
    @abstractmethod
    def vocab_size(self) -> int:
        """Number of ids in use (embedding rows needed at least)."""

    @abstractmethod
    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``; adds no bos/eos."""

    @abstractmethod
    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids``, special tokens included verbatim."""

    @abstractmethod
    def token_id(self, token: str) -> int:
        """The id of one special token; raises KeyError if it is not registered as a single token."""

    def encode_segment(self, text: str) -> list[int]:
        """BAGEL's text split: ``[<|im_start|>] + encode(text) + [<|im_end|>]``."""
        return [self.im_start_id, *self.encode(text), self.im_end_id]

    def is_special(self, token_id: int) -> bool:
        """True for the ids of BAGEL and script special tokens."""
        return token_id in self._special_ids()

    def _special_ids(self) -> frozenset[int]:
        cached: frozenset[int] | None = getattr(self, "_special_id_set", None)
        if cached is None:
            cached = frozenset(self.token_id(t) for t in self.special_tokens)
            self._special_id_set = cached
        return cached


class ByteTokenizer(ScriptTokenizer):
    """Offline tokenizer for tiny configs: ids 0-255 are UTF-8 bytes, then the special tokens in fixed order."""

    def __init__(self, vocab_config: VocabConfig | None = None) -> None:
        super().__init__(ScriptVocab(vocab_config))
        self._ids = {tok: 256 + k for k, tok in enumerate(self.special_tokens)}
        self._tokens = {i: t for t, i in self._ids.items()}
        alternatives = sorted(self.special_tokens, key=len, reverse=True)
        self._split = re.compile("(" + "|".join(re.escape(t) for t in alternatives) + ")")
        self._init_ids()

    @property
    def vocab_size(self) -> int:
        return 256 + len(self.special_tokens)

    def token_id(self, token: str) -> int:
        return self._ids[token]

    def encode(self, text: str) -> list[int]:
        ids: list[int] = []
        for k, part in enumerate(self._split.split(text)):
            if k % 2:
                ids.append(self._ids[part])
            else:
                ids.extend(part.encode("utf-8"))
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        out: list[str] = []
        buf = bytearray()
        for i in ids:
            if 0 <= i < 256:
                buf.append(i)
                continue
            out.append(buf.decode("utf-8", errors="replace"))
            buf.clear()
            if i not in self._tokens:
                raise ValueError(f"token id {i} is outside this tokenizer (vocab_size={self.vocab_size})")
            out.append(self._tokens[i])
        out.append(buf.decode("utf-8", errors="replace"))
        return "".join(out)


class HFTokenizer(ScriptTokenizer):
    """A Hugging Face tokenizer (Qwen2 in real use) with the BAGEL and script tokens registered.

    Tokens the tokenizer already has (Qwen2.5 has all four BAGEL tokens) keep their ids; the rest are appended as
    special, unnormalized, non-stripping added tokens, so ``decode(encode(text)) == text``.
    """

    def __init__(self, tokenizer: Any, vocab_config: VocabConfig | None = None) -> None:
        from tokenizers import AddedToken

        super().__init__(ScriptVocab(vocab_config))
        self.hf = tokenizer
        known = tokenizer.get_vocab()
        missing = [t for t in self.special_tokens if t not in known]
        self.added = missing
        if missing:
            tokenizer.add_tokens(
                [AddedToken(t, special=True, normalized=False, lstrip=False, rstrip=False) for t in missing],
                special_tokens=True,
            )
        self._init_ids()

    @classmethod
    def from_directory(cls, path: str | Path, vocab_config: VocabConfig | None = None) -> HFTokenizer:
        """Load with ``AutoTokenizer.from_pretrained(path, local_files_only=True)``; never downloads.

        Raises:
            FileNotFoundError: when ``path`` is not a directory.
        """
        from transformers import AutoTokenizer

        directory = Path(path)
        if not directory.is_dir():
            raise FileNotFoundError(f"tokenizer directory not found: {directory}")
        return cls(AutoTokenizer.from_pretrained(str(directory), local_files_only=True), vocab_config)

    @property
    def vocab_size(self) -> int:
        return len(self.hf)

    def token_id(self, token: str) -> int:
        ids = self.hf.encode(token, add_special_tokens=False)
        if len(ids) != 1:
            raise KeyError(f"{token!r} is not a single token in this tokenizer (encodes to {ids})")
        return int(ids[0])

    def encode(self, text: str) -> list[int]:
        return [int(i) for i in self.hf.encode(text, add_special_tokens=False)]

    def decode(self, ids: Sequence[int]) -> str:
        return str(self.hf.decode(list(ids), skip_special_tokens=False, clean_up_tokenization_spaces=False))


def load_tokenizer(path: str | Path | None, vocab_config: VocabConfig | None = None) -> ScriptTokenizer:
    """The tokenizer for a model: the Hugging Face one in ``path``, or the byte-level one when ``path`` is None."""
    if path is None:
        return ByteTokenizer(vocab_config)
    return HFTokenizer.from_directory(path, vocab_config)
