"""The original IDEA Grounding DINO checkpoint (`groundingdino_swint_ogc.pth`) loaded through transformers.

The original key scheme is described here independently of `bench.backbones.grounding_dino_original.RULES`:
`original_key_shapes` lists every tensor the original `GroundingDINO` module (groundingdino/models/GroundingDINO:
swin_transformer.py, bertwarper.py, transformer.py, transformer_vanilla.py, fuse_modules.py, groundingdino.py)
registers, with its shape as a function of the sizes, plus the extras the released files carry
(`bert.embeddings.position_ids`, `label_enc.weight`; GroundingDINO issue #271 lists both as unexpected keys
when loading a released checkpoint).
"""

from __future__ import annotations

import hashlib
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from bench.backbones import load_backbones
from bench.backbones import weights as W
from bench.backbones.detector import GroundingDinoDetector
from bench.backbones.grounding_dino_original import (
    CheckpointFormatError,
    hf_to_original,
    infer_config,
    load_original_grounding_dino,
    original_to_hf,
)
from tests.bench.backbones.conftest import draw_scene

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", "people", "character", "a", "the", "?"]
SWIN_LAYERNORM = "model.backbone.conv_encoder.model.swin.layernorm."


@dataclass(frozen=True)
class Dims:
    embed: int = 16
    depths: tuple[int, ...] = (1, 2, 1, 1)
    swin_heads: tuple[int, ...] = (1, 2, 2, 2)
    window: int = 7
    d_model: int = 32
    enc_layers: int = 1
    dec_layers: int = 2
    ffn: int = 64
    queries: int = 30
    heads: int = 8  # official value (shapes do not determine it)
    points: int = 4  # official value
    levels: int = 4
    bert_hidden: int = 32
    bert_layers: int = 1
    bert_ffn: int = 64
    vocab: int = len(VOCAB)
    max_pos: int = 64
    dn_labelbook: int = 2000


TINY = Dims()
SWINT_OGC = Dims(
    embed=96,
    depths=(2, 2, 6, 2),
    swin_heads=(3, 6, 12, 24),
    d_model=256,
    enc_layers=6,
    dec_layers=6,
    ffn=2048,
    queries=900,
    bert_hidden=768,
    bert_layers=12,
    bert_ffn=3072,
    vocab=30522,
    max_pos=512,
)
#: Original keys the converter drops (buffers, unused pooler, training-only label embedding).
EXTRA_PATTERNS = ("attn.relative_position_index", "bert.embeddings.position_ids", "bert.pooler.", "label_enc.")


class _Shapes(dict[str, tuple[int, ...]]):
    """Tensor name → shape, with one method per repeated module of the original code."""

    def __init__(self, d: Dims) -> None:
        super().__init__()
        self.d = d

    def lin(self, name: str, o: int, i: int, bias: bool = True) -> None:
        self[f"{name}.weight"] = (o, i)
        if bias:
            self[f"{name}.bias"] = (o,)

    def ln(self, name: str, n: int) -> None:
        self[f"{name}.weight"] = (n,)
        self[f"{name}.bias"] = (n,)

    def mha(self, name: str, n: int) -> None:  # nn.MultiheadAttention
        self[f"{name}.in_proj_weight"] = (3 * n, n)
        self[f"{name}.in_proj_bias"] = (3 * n,)
        self.lin(f"{name}.out_proj", n, n)

    def msda(self, name: str) -> None:  # MSDeformAttn
        d = self.d
        self.lin(f"{name}.sampling_offsets", d.heads * d.levels * d.points * 2, d.d_model)
        self.lin(f"{name}.attention_weights", d.heads * d.levels * d.points, d.d_model)
        self.lin(f"{name}.value_proj", d.d_model, d.d_model)
        self.lin(f"{name}.output_proj", d.d_model, d.d_model)

    def box_mlp(self, name: str) -> None:  # MLP(d, d, 4, 3)
        d = self.d
        self.lin(f"{name}.layers.0", d.d_model, d.d_model)
        self.lin(f"{name}.layers.1", d.d_model, d.d_model)
        self.lin(f"{name}.layers.2", 4, d.d_model)


def original_key_shapes(d: Dims) -> dict[str, tuple[int, ...]]:
    """Every tensor of the original checkpoint for sizes `d` (read from the IDEA-Research source)."""
    out = _Shapes(d)
    for part in (_swin, _bert, _input_proj, _transformer, _encoder, _decoder):
        part(out, d)
    out["label_enc.weight"] = (d.dn_labelbook + 1, d.d_model)
    return dict(out)


def _swin(out: _Shapes, d: Dims) -> None:
    # Swin (backbone.0), out_indices (1, 2, 3)
    out["backbone.0.patch_embed.proj.weight"] = (d.embed, 3, 4, 4)
    out["backbone.0.patch_embed.proj.bias"] = (d.embed,)
    out.ln("backbone.0.patch_embed.norm", d.embed)
    for i, (depth, heads) in enumerate(zip(d.depths, d.swin_heads, strict=True)):
        c = d.embed * 2**i
        for b in range(depth):
            p = f"backbone.0.layers.{i}.blocks.{b}"
            out.ln(f"{p}.norm1", c)
            out[f"{p}.attn.relative_position_bias_table"] = ((2 * d.window - 1) ** 2, heads)
            out[f"{p}.attn.relative_position_index"] = (d.window**2, d.window**2)
            out.lin(f"{p}.attn.qkv", 3 * c, c)
            out.lin(f"{p}.attn.proj", c, c)
            out.ln(f"{p}.norm2", c)
            out.lin(f"{p}.mlp.fc1", 4 * c, c)
            out.lin(f"{p}.mlp.fc2", c, 4 * c)
        if i < len(d.depths) - 1:
            out.lin(f"backbone.0.layers.{i}.downsample.reduction", 2 * c, 4 * c, bias=False)
            out.ln(f"backbone.0.layers.{i}.downsample.norm", 4 * c)
    for i in (1, 2, 3):
        out.ln(f"backbone.0.norm{i}", d.embed * 2**i)


def _bert(out: _Shapes, d: Dims) -> None:
    # BERT (BertModelWarper keeps embeddings, encoder, pooler)
    h = d.bert_hidden
    out["bert.embeddings.word_embeddings.weight"] = (d.vocab, h)
    out["bert.embeddings.position_embeddings.weight"] = (d.max_pos, h)
    out["bert.embeddings.token_type_embeddings.weight"] = (2, h)
    out["bert.embeddings.position_ids"] = (1, d.max_pos)
    out.ln("bert.embeddings.LayerNorm", h)
    for i in range(d.bert_layers):
        p = f"bert.encoder.layer.{i}"
        for n in ("query", "key", "value"):
            out.lin(f"{p}.attention.self.{n}", h, h)
        out.lin(f"{p}.attention.output.dense", h, h)
        out.ln(f"{p}.attention.output.LayerNorm", h)
        out.lin(f"{p}.intermediate.dense", d.bert_ffn, h)
        out.lin(f"{p}.output.dense", h, d.bert_ffn)
        out.ln(f"{p}.output.LayerNorm", h)
    out.lin("bert.pooler.dense", h, h)
    out.lin("feat_map", d.d_model, h)


def _input_proj(out: _Shapes, d: Dims) -> None:
    # input projections: 3 backbone levels (1×1 conv) + 1 extra (3×3 stride-2 conv), each + GroupNorm(32)
    for i, c in enumerate([d.embed * 2, d.embed * 4, d.embed * 8]):
        out[f"input_proj.{i}.0.weight"] = (d.d_model, c, 1, 1)
        out[f"input_proj.{i}.0.bias"] = (d.d_model,)
        out.ln(f"input_proj.{i}.1", d.d_model)
    out["input_proj.3.0.weight"] = (d.d_model, d.embed * 8, 3, 3)
    out["input_proj.3.0.bias"] = (d.d_model,)
    out.ln("input_proj.3.1", d.d_model)


def _transformer(out: _Shapes, d: Dims) -> None:
    # transformer
    out["transformer.level_embed"] = (d.levels, d.d_model)
    out["transformer.tgt_embed.weight"] = (d.queries, d.d_model)
    out.lin("transformer.enc_output", d.d_model, d.d_model)
    out.ln("transformer.enc_output_norm", d.d_model)
    out.box_mlp("transformer.enc_out_bbox_embed")


def _encoder(out: _Shapes, d: Dims) -> None:
    for i in range(d.enc_layers):
        p = f"transformer.encoder.layers.{i}"
        out.msda(f"{p}.self_attn")
        out.ln(f"{p}.norm1", d.d_model)
        out.lin(f"{p}.linear1", d.ffn, d.d_model)
        out.lin(f"{p}.linear2", d.d_model, d.ffn)
        out.ln(f"{p}.norm2", d.d_model)
        t = f"transformer.encoder.text_layers.{i}"  # TransformerEncoderLayer(d, heads // 2, ffn // 2)
        out.mha(f"{t}.self_attn", d.d_model)
        out.lin(f"{t}.linear1", d.ffn // 2, d.d_model)
        out.lin(f"{t}.linear2", d.d_model, d.ffn // 2)
        out.ln(f"{t}.norm1", d.d_model)
        out.ln(f"{t}.norm2", d.d_model)
        f = f"transformer.encoder.fusion_layers.{i}"  # BiAttentionBlock(v=l=d, embed=ffn // 2)
        out[f"{f}.gamma_v"] = (d.d_model,)
        out[f"{f}.gamma_l"] = (d.d_model,)
        out.ln(f"{f}.layer_norm_v", d.d_model)
        out.ln(f"{f}.layer_norm_l", d.d_model)
        for n in ("v_proj", "l_proj", "values_v_proj", "values_l_proj"):
            out.lin(f"{f}.attn.{n}", d.ffn // 2, d.d_model)
        for n in ("out_v_proj", "out_l_proj"):
            out.lin(f"{f}.attn.{n}", d.d_model, d.ffn // 2)


def _decoder(out: _Shapes, d: Dims) -> None:
    for i in range(d.dec_layers):
        p = f"transformer.decoder.layers.{i}"
        out.msda(f"{p}.cross_attn")
        out.ln(f"{p}.norm1", d.d_model)
        out.mha(f"{p}.ca_text", d.d_model)
        out.ln(f"{p}.catext_norm", d.d_model)
        out.mha(f"{p}.self_attn", d.d_model)
        out.ln(f"{p}.norm2", d.d_model)
        out.lin(f"{p}.linear1", d.ffn, d.d_model)
        out.lin(f"{p}.linear2", d.d_model, d.ffn)
        out.ln(f"{p}.norm3", d.d_model)
    out.ln("transformer.decoder.norm", d.d_model)
    out.lin("transformer.decoder.ref_point_head.layers.0", d.d_model, 2 * d.d_model)
    out.lin("transformer.decoder.ref_point_head.layers.1", d.d_model, d.d_model)
    for i in range(d.dec_layers):  # one shared MLP, registered per layer under two paths
        out.box_mlp(f"bbox_embed.{i}")
        out.box_mlp(f"transformer.decoder.bbox_embed.{i}")


def is_extra(key: str) -> bool:
    return any(p in key for p in EXTRA_PATTERNS)


def hf_config(d: Dims):
    from transformers import BertConfig, GroundingDinoConfig, SwinConfig

    swin: dict[str, Any] = {
        "embed_dim": d.embed,
        "depths": list(d.depths),
        "num_heads": list(d.swin_heads),
        "window_size": d.window,
        "out_features": ["stage2", "stage3", "stage4"],
    }
    return GroundingDinoConfig(
        backbone_config=SwinConfig(**swin),
        text_config=BertConfig(
            hidden_size=d.bert_hidden,
            num_hidden_layers=d.bert_layers,
            num_attention_heads=2 if d is TINY else 12,
            intermediate_size=d.bert_ffn,
            vocab_size=d.vocab,
            max_position_embeddings=d.max_pos,
        ),
        d_model=d.d_model,
        encoder_layers=d.enc_layers,
        decoder_layers=d.dec_layers,
        encoder_attention_heads=d.heads,
        decoder_attention_heads=d.heads,
        encoder_ffn_dim=d.ffn,
        decoder_ffn_dim=d.ffn,
        num_queries=d.queries,
        encoder_n_points=d.points,
        decoder_n_points=d.points,
    )


def random_original(d: Dims, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors for `original_key_shapes` (shared box heads equal, constant buffers as the original)."""
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}
    for key, shape in original_key_shapes(d).items():
        sd[key] = torch.randn(shape, generator=g) * 0.2
    for key in list(sd):
        if key.startswith("bbox_embed."):
            sd[key] = sd["bbox_embed.0." + key.split(".", 2)[-1]]
            sd["transformer.decoder." + key] = sd[key]
        elif key.endswith("relative_position_index"):
            sd[key] = torch.randint(0, (2 * d.window - 1) ** 2, sd[key].shape, generator=g)
        elif key.endswith("position_ids"):
            sd[key] = torch.arange(d.max_pos)[None]
    return sd


def write_bert_dir(root: Path, d: Dims = TINY) -> Path:
    """Tiny stand-in for the bundle's google-bert/bert-base-uncased/ (config + vocab + tokenizer files)."""
    from transformers import BertTokenizer

    path = root / W.BERT_BASE_UNCASED.relpath
    path.mkdir(parents=True, exist_ok=True)
    hf_config(d).text_config.save_pretrained(path)
    (path / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    BertTokenizer(str(path / "vocab.txt"), do_lower_case=True).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def tiny_hf_model():
    from transformers import GroundingDinoForObjectDetection

    torch.manual_seed(7)
    model = GroundingDinoForObjectDetection(hf_config(TINY)).eval()
    with torch.no_grad():  # the released box head is not zero-initialised
        for p in model.parameters():
            if p.dim() >= 1:
                p.add_(torch.randn_like(p) * 0.05)
    return model


@pytest.fixture(scope="module")
def bundles(tmp_path_factory, tiny_hf_model):
    """(bundle with the original .pth + BERT dir, bundle with the transformers directory) of the same weights."""
    root = tmp_path_factory.mktemp("gdino")
    original_root, hf_root = root / "original", root / "hf"
    pth = original_root / W.GROUNDING_DINO_ORIGINAL.relpath
    pth.parent.mkdir(parents=True)
    torch.save({"model": hf_to_original(tiny_hf_model.state_dict())}, pth)
    write_bert_dir(original_root)
    hf_dir = hf_root / W.GROUNDING_DINO_HF.relpath
    tiny_hf_model.save_pretrained(hf_dir)
    from transformers import BertTokenizer, GroundingDinoImageProcessorPil

    (hf_dir / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    BertTokenizer(str(hf_dir / "vocab.txt"), do_lower_case=True).save_pretrained(hf_dir)

    GroundingDinoImageProcessorPil().save_pretrained(hf_dir)  # official 800 / 1333
    return original_root, hf_root


def test_tiny_original_key_set_matches_the_listed_scheme(tiny_hf_model):
    listed = {k: v for k, v in original_key_shapes(TINY).items() if not is_extra(k)}
    produced = hf_to_original(tiny_hf_model.state_dict())
    assert {k: tuple(v.shape) for k, v in produced.items()} == listed


def test_round_trip_is_bit_identical(tiny_hf_model):
    sd = tiny_hf_model.state_dict()
    back = original_to_hf(hf_to_original(sd))
    assert set(back) == {k for k in sd if not k.startswith(SWIN_LAYERNORM)}
    assert all(torch.equal(back[k], sd[k]) for k in back)


def test_independent_original_loads_every_weight(tmp_path):
    """Random tensors in the listed original scheme (incl. extras) fill the whole model; splits are in q, k, v order."""
    original = random_original(TINY)
    pth = tmp_path / "groundingdino_swint_ogc.pth"
    torch.save({"model": {f"module.{k}": v for k, v in original.items()}}, pth)
    model = load_original_grounding_dino(pth, write_bert_dir(tmp_path))
    got = model.state_dict()
    swin = "model.backbone.conv_encoder.model.swin.encoder.layers.1.blocks.1.attention"
    qkv = original["backbone.0.layers.1.blocks.1.attn.qkv.weight"]  # [3C, C], C = 32
    assert torch.equal(got[f"{swin}.q_proj.weight"], qkv[:32])
    assert torch.equal(got[f"{swin}.k_proj.weight"], qkv[32:64])
    assert torch.equal(got[f"{swin}.v_proj.bias"], original["backbone.0.layers.1.blocks.1.attn.qkv.bias"][64:])
    in_proj = original["transformer.decoder.layers.1.ca_text.in_proj_weight"]
    assert torch.equal(got["model.decoder.layers.1.encoder_attn_text.value.weight"], in_proj[64:])
    in_bias = original["transformer.encoder.text_layers.0.self_attn.in_proj_bias"]
    assert torch.equal(got["model.encoder.layers.0.text_enhancer_layer.self_attn.key.bias"], in_bias[32:64])
    stage4 = "model.backbone.conv_encoder.model.hidden_states_norms.stage4.weight"
    assert torch.equal(got[stage4], original["backbone.0.norm3.weight"])
    assert torch.equal(got["model.query_position_embeddings.weight"], original["transformer.tgt_embed.weight"])
    assert torch.equal(got["model.text_projection.bias"], original["feat_map.bias"])
    assert torch.equal(
        got["model.encoder.layers.0.fusion_layer.text_param"], original["transformer.encoder.fusion_layers.0.gamma_l"]
    )
    assert torch.equal(got["bbox_embed.1.layers.2.weight"], original["bbox_embed.0.layers.2.weight"])
    assert torch.equal(
        got["model.encoder_output_bbox_embed.layers.0.bias"], original["transformer.enc_out_bbox_embed.layers.0.bias"]
    )
    # every converted tensor appears in the model unchanged (no key silently ignored)
    converted = original_to_hf(original)
    assert all(torch.equal(got[k], v) for k, v in converted.items())
    # each fused module (Swin qkv per block, text self-attention per encoder layer, two MultiheadAttentions per
    # decoder layer) has a weight and a bias that each become three tensors: +2 per tensor
    fused_modules = sum(TINY.depths) + TINY.enc_layers + 2 * TINY.dec_layers
    assert len(converted) == len([k for k in original if not is_extra(k)]) + 2 * 2 * fused_modules


def test_official_loads_original_pth_with_identical_detections(bundles):
    original_root, hf_root = bundles
    from_pth = load_backbones("official", original_root)
    from_hf = load_backbones("official", hf_root)
    det_pth, det_hf = from_pth.detector, from_hf.detector
    assert det_pth.image_processor.size == {"shortest_edge": 800, "longest_edge": 1333}
    sd_pth, sd_hf = det_pth.model.state_dict(), det_hf.model.state_dict()
    assert set(sd_pth) == set(sd_hf)
    assert all(torch.equal(sd_pth[k], sd_hf[k]) for k in sd_hf if not k.startswith(SWIN_LAYERNORM))
    pth = original_root / W.GROUNDING_DINO_ORIGINAL.relpath
    assert from_pth.file_hashes[W.GROUNDING_DINO_ORIGINAL.relpath] == hashlib.sha256(pth.read_bytes()).hexdigest()
    assert {f"{W.BERT_BASE_UNCASED.relpath}/{n}" for n in ("config.json", "vocab.txt")} <= set(from_pth.file_hashes)
    images = [draw_scene([((20, 30, 60, 100), (200, 40, 40))], size=(160, 120)), draw_scene([], size=(120, 160))]
    logits, _ = det_hf.raw_outputs(images[:1], "people")
    ranked = logits[0].sigmoid().amax(dim=-1).sort(descending=True).values
    threshold = float(ranked[9] + ranked[10]) / 2  # ten boxes on the first image
    det_pth.box_threshold = det_hf.box_threshold = threshold
    got, want = det_pth.detect(images, "People"), det_hf.detect(images, "People")
    assert len(got[0]) == 10
    for a, b in zip(got, want, strict=True):
        assert torch.equal(a.boxes, b.boxes) and torch.equal(a.scores, b.scores)


def test_unknown_and_missing_keys_are_named(tmp_path):
    bert = write_bert_dir(tmp_path)
    original = random_original(TINY)
    pth = tmp_path / "x.pth"
    torch.save({"model": {**original, "transformer.decoder.query_scale.weight": torch.zeros(2)}}, pth)
    with pytest.raises(CheckpointFormatError, match=r"x\.pth.*transformer\.decoder\.query_scale\.weight"):
        load_original_grounding_dino(pth, bert)
    del original["transformer.decoder.layers.1.norm3.bias"]
    torch.save({"model": original}, pth)
    with pytest.raises(CheckpointFormatError, match=r"missing \['model\.decoder\.layers\.1\.final_layer_norm\.bias'\]"):
        load_original_grounding_dino(pth, bert)


def test_other_head_count_is_refused(tmp_path):
    original = random_original(Dims(heads=4))
    with pytest.raises(CheckpointFormatError, match="sampling_offsets has 128 rows"):
        infer_config(original, hf_config(TINY).text_config, "y.pth")


class _Payload:
    """Stands for arbitrary pickled code: weights_only loading must refuse it."""


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_arbitrary_pickle_is_refused(tmp_path):
    pth = tmp_path / "evil.pth"
    with pth.open("wb") as fh:
        pickle.dump({"model": _Payload()}, fh)
    with pytest.raises(CheckpointFormatError, match=r"evil\.pth.*weights_only=True"):
        load_original_grounding_dino(pth, write_bert_dir(tmp_path))


def test_original_checkpoint_needs_text_encoder_dir(tmp_path):
    pth = tmp_path / "z.pth"
    torch.save({"model": {}}, pth)
    with pytest.raises(ValueError, match="text_encoder_dir"):
        GroundingDinoDetector(pth)


def test_full_swint_ogc_tensor_count_on_meta():
    """Full-size Swin-T OGC: 924 weight tensors, 940 with the extras the released file holds.

    Not marked slow: on the meta device nothing is allocated, so this takes well under a second.
    """
    from transformers import GroundingDinoForObjectDetection

    config = hf_config(SWINT_OGC)
    with torch.device("meta"):
        model = GroundingDinoForObjectDetection(config)
    original = hf_to_original(model.state_dict())
    listed = original_key_shapes(SWINT_OGC)
    assert {k: tuple(v.shape) for k, v in original.items()} == {k: v for k, v in listed.items() if not is_extra(k)}
    assert len(original) == 924
    assert len(listed) == 940  # + 12 relative_position_index, position_ids, 2 pooler, label_enc
    # shapes + the official head/point counts give back every field of transformers' default config, which is
    # grounding-dino-tiny = the SwinT-OGC conversion (backbone and text configs included)
    from transformers import GroundingDinoConfig

    inferred = infer_config(original, config.text_config).to_dict()
    reference = GroundingDinoConfig(text_config=config.text_config).to_dict()
    assert inferred["backbone_config"]["depths"] == [2, 2, 6, 2]
    assert inferred == reference
