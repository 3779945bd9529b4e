"""Special-token vocabulary, ID prompts, and both tokenizers behind one interface."""

from __future__ import annotations

import json
import os

import pytest

from unimage.script import parse
from unimage.script.tiny_tokenizer import write_tiny_qwen2_tokenizer
from unimage.script.tokenizer import ByteTokenizer, HFTokenizer, load_tokenizer
from unimage.script.vocab import (
    BAGEL_SPECIAL_TOKENS,
    QWEN2_EMBEDDING_ROWS,
    QWEN2_SPECIAL_IDS,
    QWEN2_TOKENIZER_LEN,
    VOCAB_SIZES,
    IdPrompt,
    ScriptVocab,
    VocabConfig,
    id_prompt_for_shot,
)

TINY = VOCAB_SIZES["tiny"]


def test_vocab_sizes_and_order():
    default = ScriptVocab()
    assert len(default) == 3 + 32 + 32 + 2 * 128 == 323
    assert QWEN2_TOKENIZER_LEN + len(default) <= QWEN2_EMBEDDING_ROWS  # fits BAGEL-7B's spare rows
    tiny = ScriptVocab(TINY)
    assert tiny.tokens[:4] == ("<User>", "<Extension>", "<Continuation>", "<Character1>")
    assert tiny.tokens[-1] == "<Video8>" and len(tiny) == 3 + 4 + 4 + 16
    assert "<Frame8>" in tiny and "<Frame9>" not in tiny
    with pytest.raises(ValueError, match="max_characters=4"):
        tiny.character(5)
    with pytest.raises(ValueError, match="max_shots"):
        VocabConfig(max_shots=0)


def test_id_prompt_from_a_real_shot(script_texts):
    shot = parse(script_texts["unimage_result_3.txt"]).script.shots[3]
    prompt = id_prompt_for_shot(shot)
    assert prompt == IdPrompt(4, (1, 2, 3), (1,))
    assert prompt.tokens(ScriptVocab(TINY)) == [
        "<Frame4>",
        "<Character1>",
        "<Character2>",
        "<Character3>",
        "<Environment1>",
    ]
    assert IdPrompt(None, (2,)).tokens(ScriptVocab(TINY)) == ["<Character2>"]


def test_byte_tokenizer_ids_and_round_trip(script_texts):
    tok = ByteTokenizer(TINY)
    assert tok.vocab_size == 256 + len(BAGEL_SPECIAL_TOKENS) + 27
    assert (tok.endoftext_id, tok.im_start_id, tok.im_end_id, tok.vision_start_id, tok.vision_end_id) == (
        256,
        257,
        258,
        259,
        260,
    )
    assert (tok.bos_id, tok.eos_id, tok.pad_id) == (257, 258, 256)
    assert tok.script_token_ids["<User>"] == 261 and tok.script_token_ids["<Video8>"] == tok.vocab_size - 1
    for text in script_texts.values():
        assert tok.decode(tok.encode(text)) == text
    assert tok.encode("é<Character1>") == [0xC3, 0xA9, tok.token_id("<Character1>")]
    assert len(tok.encode("<Character5>")) == len("<Character5>")  # beyond the tiny maximum: plain bytes
    assert tok.encode_segment("hi") == [257, ord("h"), ord("i"), 258]
    with pytest.raises(ValueError, match="outside this tokenizer"):
        tok.decode([tok.vocab_size])


@pytest.fixture(scope="module")
def tiny_qwen_dir(tmp_path_factory):
    return write_tiny_qwen2_tokenizer(tmp_path_factory.mktemp("qwen2_tiny"), vocab_size=400)


def test_tiny_qwen2_directory_is_qwen2_style(tiny_qwen_dir):
    data = json.loads((tiny_qwen_dir / "tokenizer.json").read_text())
    assert data["model"]["type"] == "BPE"
    assert [t["content"] for t in data["added_tokens"]] == ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    assert json.loads((tiny_qwen_dir / "tokenizer_config.json").read_text())["tokenizer_class"] == "Qwen2Tokenizer"


def test_hf_tokenizer_registers_tokens_and_round_trips(tiny_qwen_dir, script_texts):
    file_ids = {
        t["content"]: t["id"] for t in json.loads((tiny_qwen_dir / "tokenizer.json").read_text())["added_tokens"]
    }
    tok = load_tokenizer(tiny_qwen_dir, TINY)
    assert isinstance(tok, HFTokenizer)
    # Existing specials keep their ids; the vision tokens and the script vocabulary are appended.
    assert (tok.endoftext_id, tok.im_start_id, tok.im_end_id) == tuple(file_ids[t] for t in BAGEL_SPECIAL_TOKENS[:3])
    assert tok.added == [*BAGEL_SPECIAL_TOKENS[3:], *ScriptVocab(TINY).tokens]
    base = len(tok.hf) - len(tok.added)
    assert tok.vision_start_id == base and tok.vision_end_id == base + 1
    assert tok.script_token_ids["<User>"] == base + 2 and tok.vocab_size == base + 2 + 27
    assert (tok.bos_id, tok.eos_id, tok.pad_id) == (tok.im_start_id, tok.im_end_id, tok.endoftext_id)
    for token in tok.special_tokens:
        assert tok.encode(token) == [tok.hf.convert_tokens_to_ids(token)]
    for text in script_texts.values():
        ids = tok.encode(text)
        assert tok.decode(ids) == text
        # every canonical mention in the text is one id
        assert ids.count(tok.token_id("<Character1>")) == text.count("<Character1>")


def test_hf_keeps_vision_tokens_already_present(tmp_path):
    directory = write_tiny_qwen2_tokenizer(tmp_path, vocab_size=300, with_vision_tokens=True)
    tok = HFTokenizer.from_directory(directory, TINY)
    assert tok.added == list(ScriptVocab(TINY).tokens)
    assert (tok.vision_start_id, tok.vision_end_id) == (3, 4)


def test_both_tokenizers_agree_on_special_structure(tiny_qwen_dir, script_texts):
    text = parse(script_texts["unimage_result_5.txt"]).script.shots[9].video.text
    for tok in (ByteTokenizer(TINY), load_tokenizer(tiny_qwen_dir, TINY)):
        specials = [tok.decode([i]) for i in tok.encode(text) if tok.is_special(i)]
        assert specials == ["<Character1>", "<Environment1>", "<Character2>", "<Character1>"]


def test_missing_tokenizer_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="tokenizer directory not found"):
        load_tokenizer(tmp_path / "absent")


@pytest.mark.skipif(
    not os.environ.get("UNIMAGE_QWEN2_TOKENIZER"), reason="set UNIMAGE_QWEN2_TOKENIZER to a local Qwen2.5 dir"
)
def test_real_qwen2_ids():
    tok = HFTokenizer.from_directory(os.environ["UNIMAGE_QWEN2_TOKENIZER"])
    assert {t: tok.token_id(t) for t in QWEN2_SPECIAL_IDS} == QWEN2_SPECIAL_IDS
    assert min(tok.script_token_ids.values()) == QWEN2_TOKENIZER_LEN
    assert tok.vocab_size <= QWEN2_EMBEDDING_ROWS
