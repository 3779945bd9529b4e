"""Write a tiny, real Qwen2-style BPE tokenizer directory, for tests and tiny BAGEL-layout checkpoints.

It is trained here with the ``tokenizers`` library (nothing is downloaded) and has the pieces that matter for
compatibility with the real Qwen2.5 tokenizer: NFC normalization, Qwen2's pre-tokenization regex, byte-level BPE, the
``<|endoftext|>``/``<|im_start|>``/``<|im_end|>`` specials, and ``tokenizer_class: Qwen2Tokenizer`` so
``AutoTokenizer`` loads it as the Qwen2 class.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import fsio

# Qwen2's pre-tokenization pattern (contractions, letters, single digits, punctuation runs, newlines, spaces).
QWEN2_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

_DEFAULT_CORPUS = (
    "Medium shot: The old man sits by the river at sunset, holding his fishing rod.",
    "The camera slowly pulls back to a long shot. Soft piano music begins.",
    "Close-up: a young woman smiles at the crowd in the bright festival lights.",
    "She whispers: It can't be... Background music: a gentle choir enters.",
)


def write_tiny_qwen2_tokenizer(
    directory: str | Path,
    *,
    vocab_size: int = 512,
    corpus: Iterable[str] = _DEFAULT_CORPUS,
    with_vision_tokens: bool = False,
) -> Path:
    """Train and save a small Qwen2-style tokenizer into ``directory`` (created if needed).

    Args:
        directory: where ``tokenizer.json`` and ``tokenizer_config.json`` go.
        vocab_size: BPE vocabulary target (the byte alphabet alone is 256).
        corpus: training texts.
        with_vision_tokens: also define ``<|vision_start|>``/``<|vision_end|>`` (Qwen2.5 has them; leaving them out
            exercises the adapter's registration path).

    Returns:
        The directory path.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    if with_vision_tokens:
        specials += ["<|vision_start|>", "<|vision_end|>"]
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(corpus), trainer)
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    config = {
        "tokenizer_class": "Qwen2Tokenizer",
        "bos_token": None,
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "model_max_length": 32768,
        "clean_up_tokenization_spaces": False,
    }
    _write_atomic(out / "tokenizer.json", tok.to_str())
    _write_atomic(out / "tokenizer_config.json", json.dumps(config, indent=2))
    return out


def _write_atomic(path: Path, text: str) -> None:
    fsio.atomic_write_text(path, text)
