"""Write a TINY ViStoryBench weight bundle: random weights in each real checkpoint format and file layout.

Same key names and directory layout as the official files (§11), tiny dims where the architecture allows:
- csd/csd_vit-large.pth: flat state dict `backbone.*` (OpenAI-CLIP visual names, no `backbone.proj`),
  `last_layer_style`, `last_layer_content`; width 64, 2 blocks.
- IDEA-Research/grounding-dino-tiny/: transformers GroundingDinoForObjectDetection dir (tiny Swin + tiny BERT),
  BERT vocab, PIL image processor config.
- openai/clip-vit-large-patch14/: transformers CLIPModel dir + preprocessor_config.json.
- google/siglip-so400m-patch14-384/: transformers SiglipModel dir (hidden 32, 384 px, patch 14).
- aesthetic_predictor/aesthetic_predictor_v2_5.pth: `scoring_head.{0,2,4,6,8}.{weight,bias}`, 32→16→8→4→2→1.
- adaface/adaface_ir101_webface12m.ckpt: Lightning checkpoint {"state_dict": {"model.<IR key>", "head.kernel"},
  "epoch", "global_step", "pytorch-lightning_version", ...}; IR with units (1, 2, 1, 1), widths 8-32.
- facenet/20180402-114759-vggface2.pt: flat facenet-pytorch InceptionResnetV1 state dict incl. `logits.*`;
  widths ÷8, repeats (1, 2, 1), 10 classes.
- inception/inception_v3_google-0cc3c7bd.pth: torchvision Inception-v3 state dict (full size: the architecture
  has no size knob; random init, ~100 MB).
"""

from __future__ import annotations

from pathlib import Path

import torch

from bench.backbones import weights as W

BERT_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", "people", "character", "a", "the", "?"]


def write_csd(root: Path, nested: bool = False) -> Path:
    """Tiny CSD checkpoint; `nested=True` writes the CSD authors' {'model_state_dict': {'module.…'}} layout."""
    from bench.backbones.csd import CSD_SIZES, CSDModel  # open_clip: the csd extra

    torch.manual_seed(1)
    model = CSDModel(CSD_SIZES["tiny"])
    with torch.no_grad():
        model.last_layer_style.normal_()
        model.last_layer_content.normal_()
    sd = dict(model.state_dict())
    assert "backbone.proj" not in sd
    if nested:
        obj: object = {"model_state_dict": {f"module.{k}": v for k, v in sd.items()}, "epoch": 3}
    else:
        obj = sd
    path = root / W.CSD.relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(obj, path)
    return path


def write_grounding_dino(root: Path) -> Path:
    """Tiny transformers Grounding DINO directory with tokenizer and PIL image processor."""
    from transformers import (
        BertConfig,
        BertTokenizer,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessorPil,
        SwinConfig,
    )

    torch.manual_seed(2)
    cfg = GroundingDinoConfig(
        backbone_config=SwinConfig(
            embed_dim=16,
            depths=[1, 1, 1, 1],
            num_heads=[1, 1, 1, 1],
            window_size=7,
            out_features=["stage2", "stage3", "stage4"],
        ),
        text_config=BertConfig(
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            vocab_size=len(BERT_VOCAB),
            max_position_embeddings=64,
        ),
        d_model=32,
        encoder_layers=1,
        decoder_layers=2,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        num_queries=30,
        encoder_n_points=2,
        decoder_n_points=2,
    )
    path = root / W.GROUNDING_DINO_HF.relpath
    path.mkdir(parents=True, exist_ok=True)
    GroundingDinoForObjectDetection(cfg).save_pretrained(path)
    vocab = path / "vocab.txt"
    vocab.write_text("\n".join(BERT_VOCAB) + "\n")
    BertTokenizer(str(vocab), do_lower_case=True).save_pretrained(path)
    # Small working size keeps the tiny test fast; the real processor config says 800/1333.
    GroundingDinoImageProcessorPil(size={"shortest_edge": 96, "longest_edge": 160}).save_pretrained(path)
    return path


def write_clip(root: Path) -> Path:
    """Tiny transformers CLIPModel directory + PIL image processor config (224 px as the real one)."""
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel

    torch.manual_seed(3)
    cfg = CLIPConfig(
        text_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "vocab_size": 64,
            "max_position_embeddings": 16,
            "bos_token_id": 0,
            "eos_token_id": 1,
            "pad_token_id": 1,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": 224,
            "patch_size": 14,
        },
        projection_dim=16,
    )
    path = root / W.CLIP.relpath
    path.mkdir(parents=True, exist_ok=True)
    CLIPModel(cfg).save_pretrained(path)
    CLIPImageProcessorPil(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224}).save_pretrained(path)
    return path


def write_aesthetic(root: Path) -> tuple[Path, Path]:
    """Tiny SigLIP (full SiglipModel checkpoint, as the bundle holds) + tiny head .pth with the official keys."""
    from transformers import SiglipConfig, SiglipModel

    torch.manual_seed(4)
    cfg = SiglipConfig(
        text_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "vocab_size": 64,
            "max_position_embeddings": 16,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": 384,
            "patch_size": 14,
        },
    )
    siglip = root / W.SIGLIP.relpath
    siglip.mkdir(parents=True, exist_ok=True)
    SiglipModel(cfg).save_pretrained(siglip)
    dims = [32, 16, 8, 4, 2, 1]
    head = {}
    for n, i in enumerate((0, 2, 4, 6, 8)):
        head[f"scoring_head.{i}.weight"] = torch.randn(dims[n + 1], dims[n]) / dims[n] ** 0.5
        head[f"scoring_head.{i}.bias"] = torch.randn(dims[n + 1]) * 0.1
    head_path = root / W.AESTHETIC_HEAD.relpath
    head_path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(head, head_path)
    return siglip, head_path


def _randomise_norms(model: torch.nn.Module) -> None:
    """Random BatchNorm statistics/affines and PReLU slopes, so the tiny nets are not near-identity maps."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.normal_(0.0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                if m.affine:
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.normal_(0.0, 0.1)
            elif isinstance(m, torch.nn.PReLU):
                m.weight.uniform_(0.1, 0.4)


def write_adaface(root: Path) -> Path:
    """Tiny AdaFace IR checkpoint in the official Lightning format (backbone under `model.`, head kernel beside)."""
    from bench.backbones.adaface import IR_SIZES, IRBackbone

    torch.manual_seed(6)
    cfg = IR_SIZES["tiny"]
    model = IRBackbone(cfg)
    _randomise_norms(model)
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    state["head.kernel"] = torch.randn(cfg.embedding_dim, 7)  # AdaFace margin head: [embedding, classes]
    ckpt = {
        "epoch": 25,
        "global_step": 1000,
        "pytorch-lightning_version": "1.4.4",
        "state_dict": state,
        "hyper_parameters": {"arch": "ir_101", "head": "adaface", "m": 0.4, "h": 0.333},
    }
    path = root / W.ADAFACE.relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, path)
    return path


def write_facenet(root: Path) -> Path:
    """Tiny facenet-pytorch InceptionResnetV1 state dict (flat, with the `logits` classifier)."""
    from bench.backbones.facenet import FACENET_SIZES, InceptionResnetV1

    torch.manual_seed(7)
    model = InceptionResnetV1(FACENET_SIZES["tiny"])
    _randomise_norms(model)
    path = root / W.FACENET.relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return path


def write_inception(root: Path) -> Path:
    """Random torchvision Inception-v3 state dict at the bundle's `inception/` location."""
    from bench.backbones.inception import build_inception_v3

    torch.manual_seed(5)
    model = build_inception_v3()
    path = root / W.INCEPTION_CANDIDATES[0]
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return path


def write_tiny_bundle(root: Path, inception: bool = True) -> Path:
    """All of the above under `root`; returns `root`."""
    write_csd(root)
    write_grounding_dino(root)
    write_clip(root)
    write_aesthetic(root)
    write_adaface(root)
    write_facenet(root)
    if inception:
        write_inception(root)
    return root
