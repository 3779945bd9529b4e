"""Official backbone loaders on a tiny random-weight bundle in the real checkpoint formats.

Each test checks the loader against an independent computation written out here (functional ops on the raw
state dict, hand-made preprocessing), and that missing or wrong files give a clear error naming the file.
"""

from __future__ import annotations

import hashlib
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

pytest.importorskip("open_clip", reason="the CSD tower needs open_clip (the csd extra)")

from bench.backbones import MissingDependencyError, MissingWeightsError, load_backbones
from bench.backbones import weights as W
from bench.backbones.aesthetic import build_head
from bench.backbones.csd import CSDStyleEncoder, load_csd, read_csd_state_dict
from bench.backbones.detector import preprocess_caption
from bench.backbones.faces import faces_available
from tests.bench.backbones.test_base import official_crop_boxes
from tests.bench.backbones.tiny_bundle import write_csd

IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
CLIP_MEAN = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(3, 1, 1)
CLIP_STD = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(3, 1, 1)


def pil_to_tensor(im: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0).permute(2, 0, 1)


@pytest.fixture(scope="module")
def official(tiny_bundle):
    return load_backbones("official", tiny_bundle, era="A")


#####################################################################################################
# CSD
#####################################################################################################


def csd_reference(sd: dict[str, torch.Tensor], pixels: torch.Tensor) -> torch.Tensor:
    """OpenAI-CLIP visual forward written with functional ops from the raw state dict, then CSD's style head."""
    width, _, patch, _ = sd["backbone.conv1.weight"].shape
    heads = width // 64
    x = F.conv2d(pixels, sd["backbone.conv1.weight"], stride=patch).flatten(2).transpose(1, 2)  # [N, G², W]
    cls = sd["backbone.class_embedding"].expand(x.shape[0], 1, width)
    x = torch.cat([cls, x], dim=1) + sd["backbone.positional_embedding"]
    x = F.layer_norm(x, (width,), sd["backbone.ln_pre.weight"], sd["backbone.ln_pre.bias"])
    blocks = sorted({int(k.split(".")[3]) for k in sd if k.startswith("backbone.transformer.resblocks.")})
    for b in blocks:
        p = f"backbone.transformer.resblocks.{b}."
        h = F.layer_norm(x, (width,), sd[p + "ln_1.weight"], sd[p + "ln_1.bias"])
        q, k, v = (h @ sd[p + "attn.in_proj_weight"].T + sd[p + "attn.in_proj_bias"]).chunk(3, dim=-1)
        split = lambda t: t.view(t.shape[0], t.shape[1], heads, -1).transpose(1, 2)  # noqa: E731
        att = F.scaled_dot_product_attention(split(q), split(k), split(v)).transpose(1, 2).flatten(2)
        x = x + att @ sd[p + "attn.out_proj.weight"].T + sd[p + "attn.out_proj.bias"]
        h = F.layer_norm(x, (width,), sd[p + "ln_2.weight"], sd[p + "ln_2.bias"])
        h = h @ sd[p + "mlp.c_fc.weight"].T + sd[p + "mlp.c_fc.bias"]
        h = h * torch.sigmoid(1.702 * h)  # QuickGELU
        x = x + h @ sd[p + "mlp.c_proj.weight"].T + sd[p + "mlp.c_proj.bias"]
    cls_out = F.layer_norm(x[:, 0], (width,), sd["backbone.ln_post.weight"], sd["backbone.ln_post.bias"])
    return F.normalize(cls_out @ sd["last_layer_style"], dim=-1)


@pytest.mark.parametrize("era", ["A", "B"])
def test_csd_matches_functional_reference(tiny_bundle, scenes, era):
    path = tiny_bundle / W.CSD.relpath
    sd = torch.load(path, weights_only=True)
    enc = CSDStyleEncoder(load_csd(path), era=era)
    got = enc.encode(scenes)
    mode = "bilinear" if era == "A" else "bicubic"
    pixels = torch.stack(
        [
            F.interpolate(pil_to_tensor(im)[None], size=(224, 224), mode=mode, antialias=True, align_corners=False)[0]
            for im in scenes
        ]
    )
    pixels = (pixels - CLIP_MEAN) / CLIP_STD
    torch.testing.assert_close(got, csd_reference(sd, pixels), atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(got.norm(dim=-1), torch.ones(len(scenes)))


def test_csd_eras_preprocess_differently(tiny_bundle, scenes):
    model = load_csd(tiny_bundle / W.CSD.relpath)
    a = CSDStyleEncoder(model, era="A").preprocess(scenes[1])
    b = CSDStyleEncoder(model, era="C").preprocess(scenes[1])
    assert a.shape == b.shape == (3, 224, 224) and not torch.allclose(a, b)


def test_csd_nested_release_format_and_strictness(tmp_path):
    nested = write_csd(tmp_path, nested=True)
    flat_sd = read_csd_state_dict(nested)
    assert "last_layer_style" in flat_sd and not any(k.startswith("module.") for k in flat_sd)
    assert load_csd(nested).config.width == 64
    broken = {k: v for k, v in flat_sd.items() if k != "backbone.ln_post.weight"}
    torch.save(broken, tmp_path / "broken.pth")
    with pytest.raises(ValueError, match=r"missing keys \['backbone.ln_post.weight'\]"):
        load_csd(tmp_path / "broken.pth")


def test_file_hashes_recorded(official, tiny_bundle, scenes):
    official.style.encode(scenes[:1])
    path = tiny_bundle / W.CSD.relpath
    assert official.file_hashes[W.CSD.relpath] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert official.provenance()["comparable_with_published"] is True


#####################################################################################################
# CLIP
#####################################################################################################


def test_clip_matches_hand_preprocessing(official):
    from transformers import CLIPModel

    # Sizes chosen so the centre crop offsets are exact: (100, 50) → 448×224, (56, 84) → 224×336.
    ims = [Image.new("RGB", (100, 50), (200, 30, 30)), Image.radial_gradient("L").resize((56, 84)).convert("RGB")]
    feats = official.clip.encode(ims)
    model: CLIPModel = official.clip.model  # type: ignore[attr-defined]
    ref = []
    for im, (w, h) in zip(ims, [(448, 224), (224, 336)]):
        x = pil_to_tensor(im.resize((w, h), Image.Resampling.BICUBIC))
        top, left = (h - 224) // 2, (w - 224) // 2
        x = ((x[:, top : top + 224, left : left + 224] - CLIP_MEAN) / CLIP_STD)[None]
        with torch.no_grad():
            ref.append(F.normalize(model.visual_projection(model.vision_model(pixel_values=x).pooler_output), dim=-1))
    torch.testing.assert_close(feats.features["clip"], torch.cat(ref), atol=1e-4, rtol=1e-4)
    assert feats.valid["clip"].all()


#####################################################################################################
# Aesthetics
#####################################################################################################


def test_aesthetic_unnormalised_378_quirk(official, scenes):
    scorer = official.aesthetic
    got = scorer.score(scenes)
    tower = scorer.tower  # type: ignore[attr-defined]
    head_sd = dict(scorer.head.state_dict())  # type: ignore[attr-defined]
    pixels = torch.stack([pil_to_tensor(im.resize((378, 378), Image.Resampling.BILINEAR)) for im in scenes])
    assert pixels.min() >= 0 and pixels.max() <= 1  # no SigLIP normalisation
    with torch.no_grad():
        pooled = tower(pixel_values=pixels).pooler_output
    x = pooled / pooled.norm(dim=-1, keepdim=True)
    for i in (0, 2, 4, 6, 8):  # Linear layers; Dropout is identity in eval
        x = x @ head_sd[f"{i}.weight"].T + head_sd[f"{i}.bias"]
    torch.testing.assert_close(got, x[:, 0], atol=1e-5, rtol=1e-4)
    assert got.shape == (4,)


def test_aesthetic_head_key_check():
    with pytest.raises(ValueError, match="size mismatch"):  # biases must be 1-D
        build_head({f"scoring_head.{i}.{p}": torch.zeros(1, 1) for i in (0, 2, 4, 6, 8) for p in ("weight", "bias")})
    sd = {f"scoring_head.{i}.weight": torch.zeros(1, 1) for i in (0, 2, 4, 6, 8)}
    sd |= {f"scoring_head.{i}.bias": torch.zeros(1) for i in (0, 2, 4, 6)}
    with pytest.raises(ValueError, match=r"missing \['scoring_head.8.bias'\]"):
        build_head(sd)


#####################################################################################################
# Inception
#####################################################################################################


def test_inception_logits_match_hand_preprocessing(official):
    clf = official.inception
    im = Image.radial_gradient("L").convert("RGB").resize((400, 320))
    got = clf.logits([im, im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)])
    # Resize(299) on the shorter side: 320 → 299, 400 → int(299·400/320) = 373; centre crop 299 (torchvision rounds).
    x = pil_to_tensor(im.resize((373, 299), Image.Resampling.BILINEAR))
    left = round((373 - 299) / 2.0)
    x = ((x[:, :, left : left + 299] - IMAGENET_MEAN) / IMAGENET_STD)[None]
    with torch.no_grad():
        ref = clf.model(x)  # type: ignore[attr-defined]
    assert got.shape == (2, 1000)
    torch.testing.assert_close(got[:1], ref, atol=1e-3, rtol=1e-3)


def test_inception_wrong_state_dict(tmp_path):
    from bench.backbones.inception import InceptionV3Classifier

    torch.save({"fc.weight": torch.zeros(1000, 2048)}, tmp_path / "x.pth")
    with pytest.raises(ValueError, match="not a torchvision Inception-v3"):
        InceptionV3Classifier(tmp_path / "x.pth")


#####################################################################################################
# Grounding DINO
#####################################################################################################


def test_caption_rule():
    assert preprocess_caption(" People ") == "people."
    assert preprocess_caption("character.") == "character."


def test_detector_matches_hand_postprocessing(official, scenes):
    det = official.detector
    # Hand preprocessing: shortest side 96, longest 160 (the tiny processor config), PIL bilinear, ImageNet norm.
    im = scenes[1]  # 320×240 → 128×96
    x = ((pil_to_tensor(im.resize((128, 96), Image.Resampling.BILINEAR)) - IMAGENET_MEAN) / IMAGENET_STD)[None]
    tokens = det.tokenizer(["people."], return_tensors="pt")  # type: ignore[attr-defined]
    with torch.no_grad():
        out = det.model(pixel_values=x, pixel_mask=torch.ones(1, 96, 128, dtype=torch.long), **tokens)  # type: ignore[attr-defined]
    scores = out.logits[0].sigmoid().max(dim=-1).values
    ranked = scores.sort(descending=True).values
    # keep about half the queries of this random model; a threshold between two scores, so float
    # reassociation in batched runs cannot flip a box
    det.box_threshold = float(ranked[len(ranked) // 2 - 1] + ranked[len(ranked) // 2]) / 2
    keep = scores > det.box_threshold
    expected = official_crop_boxes(out.pred_boxes[0][keep], 320, 240)
    (got,) = det.detect([im], "People")
    assert 0 < len(got) == len(expected) < len(scores)
    order = torch.argsort(scores[keep], descending=True, stable=True).tolist()
    boxes = [official_crop_boxes(out.pred_boxes[0][keep][i : i + 1], 320, 240) for i in order]
    assert got.boxes.tolist() == [list(b[0]) for b in boxes if b]
    # batching by size gives the same answer as one image at a time
    batched = det.detect(scenes, "people")
    for im_, b in zip(scenes, batched):
        (single,) = det.detect([im_], "people")
        torch.testing.assert_close(b.boxes, single.boxes)
        torch.testing.assert_close(b.scores, single.scores, atol=1e-5, rtol=1e-5)


#####################################################################################################
# Faces and missing files
#####################################################################################################


@pytest.mark.skipif(faces_available(), reason="insightface/onnxruntime installed")
def test_faces_extra_absent_is_explained(tiny_bundle):
    bb = load_backbones("official", tiny_bundle, era="A")
    with pytest.raises(MissingDependencyError, match=r"pip install 'unimage-harness\[faces\]'"):
        bb.validate(["face"])
    with pytest.raises(MissingDependencyError, match="insightface"):
        _ = bb.face
    _ = bb.clip  # other components still work


@pytest.mark.parametrize("era", ["B", "C"])
def test_face_ensemble_needs_antelopev2_too(tiny_bundle, era):
    # The tiny bundle has AdaFace and FaceNet but no insightface pack: the ensemble names the missing ArcFace dir.
    bb = load_backbones("official", tiny_bundle, era=era)
    with pytest.raises(MissingWeightsError, match=r"insightface/models/antelopev2"):
        bb.validate(["face"])


@pytest.mark.parametrize(
    ("component", "named"),
    [
        ("style", "csd/csd_vit-large.pth"),
        ("detector", "IDEA-Research/grounding-dino-tiny"),
        ("clip", "openai/clip-vit-large-patch14"),
        ("aesthetic", "google/siglip-so400m-patch14-384"),
        ("inception", "inception_v3_google-0cc3c7bd.pth"),
    ],
)
def test_missing_files_are_named(tmp_path, component, named):
    bb = load_backbones("official", tmp_path)
    with pytest.raises(MissingWeightsError, match=named):
        bb.validate([component])
    with pytest.raises(MissingWeightsError, match=named):
        getattr(bb, component)


def test_missing_inner_files_and_original_dino(tmp_path, tiny_bundle):
    shutil.copytree(tiny_bundle / W.CLIP.relpath, tmp_path / W.CLIP.relpath)
    (tmp_path / W.CLIP.relpath / "preprocessor_config.json").unlink()
    bb = load_backbones("official", tmp_path)
    with pytest.raises(MissingWeightsError, match=r"clip-vit-large-patch14/preprocessor_config.json"):
        bb.validate(["clip"])
    shutil.copytree(tiny_bundle / W.SIGLIP.relpath, tmp_path / W.SIGLIP.relpath)
    with pytest.raises(MissingWeightsError, match=r"aesthetic_predictor_v2_5\.pth"):
        bb.validate(["aesthetic"])
    original = tmp_path / W.GROUNDING_DINO_ORIGINAL.relpath
    original.parent.mkdir(parents=True)
    original.write_bytes(b"not used")
    # the original checkpoint is used directly, but needs the bundle's BERT directory beside it
    with pytest.raises(MissingWeightsError, match=r"google-bert/bert-base-uncased"):
        bb.validate(["detector"])
