"""Typed configuration of the UniMAGE model (BAGEL-7B-MoT layout) and the registry of named sizes.

Three layers of config, each a frozen dataclass of serialisable primitives:

- ``LLMConfig``: the Qwen2 fields of the MoT decoder, read from / written to ``llm_config.json`` in the Hugging Face
  Qwen2 format (BAGEL reads that file with ``Qwen2Config.from_json_file`` and forces ``qk_norm=True``,
  ``tie_word_embeddings=False``; we keep both as explicit fields).
- ``ViTConfig`` (``unimage.model.vit``) and ``VAEConfig`` (``unimage.model.vae``): the two image encoders; ``ae``
  selects the latent autoencoder, the FLUX VAE (``vae``) or the patch-PCA "synth" one (``synth_ae``,
  ``unimage.model.synth_ae``) that tiny CPU runs on SynthStory use.
- ``ModelConfig``: the architecture (the BAGEL top-level fields: latent patch size, max latent size, ViT positions per
  side, connector activation; the special token ids, the autoencoder kind and the attention backend) with two nested
  parts that are not architecture: ``SequenceLayout`` (how a sample becomes tokens: UniMAGE's ``id_prompting``, and the
  one function that decides an image block's ID tokens) and ``LossRecipe`` (loss weights, training timestep shift,
  the stop-gradient). Each ablation flag has one owner; ``config.json`` keeps BAGEL's flat keys (``to_json_dict``).

``MODEL_SIZES`` holds the named sizes: ``tiny`` (unit tests, a forward in milliseconds on CPU), ``tiny-synth`` (``tiny``
with the synth autoencoder: the SynthStory training default), ``small`` (CPU benchmarks) and ``bagel-7b-mot`` (the released shapes, see ``shared/reference/bagel-compat.md`` §1.2).
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

import fsio
from unimage.model.synth_ae import SynthAEConfig
from unimage.model.vae import VAE_SIZES, VAEConfig
from unimage.model.vit import VIT_SIZES, ViTConfig

if TYPE_CHECKING:
    from unimage.script.tokenizer import ScriptTokenizer
    from unimage.script.vocab import IdPrompt

__all__ = [
    "LLM_SIZES",
    "MODEL_SIZES",
    "AttentionBackend",
    "AutoencoderKind",
    "LLMConfig",
    "LossRecipe",
    "ModelConfig",
    "SequenceLayout",
    "SpecialTokens",
    "get_config",
    "list_sizes",
]

AttentionBackend = Literal["auto", "sdpa", "flex", "flash"]
AutoencoderKind = Literal["flux", "synth"]


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    fsio.atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def _read_json(path: str | Path, what: str) -> dict[str, Any]:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: cannot read {what}: {err}") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path}: {what} must be a JSON object, got {type(data).__name__}")
    return data


########################################################################################################################
# LLM (Qwen2 fields)
########################################################################################################################


@dataclass(frozen=True)
class LLMConfig:
    """Shape of the Qwen2 MoT decoder (both experts share it).

    Attributes:
        vocab_size: Rows of ``embed_tokens`` and ``lm_head`` (152064 for Qwen2.5-7B; the tokenizer has 151665).
        hidden_size: Width D.
        intermediate_size: SwiGLU width.
        num_hidden_layers: Decoder layers.
        num_attention_heads: Query heads H.
        num_key_value_heads: Key/value heads (GQA); must divide ``num_attention_heads``.
        rope_theta: RoPE base θ.
        rms_norm_eps: RMSNorm epsilon.
        max_position_embeddings: Longest RoPE position Qwen2 was trained for (informational, kept for the json).
        hidden_act: MLP activation; only ``silu`` (SwiGLU) exists in Qwen2.
        qk_norm: Per-head RMSNorm on q and k before RoPE (BAGEL forces it on).
        tie_word_embeddings: Must be False (BAGEL unties ``lm_head``).
        bos_token_id: Written to ``llm_config.json`` only (Qwen2's ``<|endoftext|>``); the model's segment
            delimiters are in ``SpecialTokens``.
        eos_token_id: Written to ``llm_config.json`` only.
    """

    vocab_size: int = 152064
    hidden_size: int = 3584
    intermediate_size: int = 18944
    num_hidden_layers: int = 28
    num_attention_heads: int = 28
    num_key_value_heads: int = 4
    rope_theta: float = 1_000_000.0
    rms_norm_eps: float = 1e-6
    max_position_embeddings: int = 32768
    hidden_act: str = "silu"
    qk_norm: bool = True
    tie_word_embeddings: bool = False
    bos_token_id: int = 151643
    eos_token_id: int = 151645

    def __post_init__(self) -> None:
        for name in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads"):
            if getattr(self, name) <= 0:
                raise ValueError(f"LLMConfig.{name} must be positive, got {getattr(self, name)}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"LLMConfig.hidden_size={self.hidden_size} is not divisible by num_attention_heads={self.num_attention_heads}"
            )
        if self.num_key_value_heads <= 0 or self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"LLMConfig.num_key_value_heads={self.num_key_value_heads} must divide "
                f"num_attention_heads={self.num_attention_heads}"
            )
        if self.head_dim % 2:
            raise ValueError(f"LLMConfig head_dim={self.head_dim} must be even for rotate-half RoPE")
        if self.hidden_act != "silu":
            raise ValueError(f"LLMConfig.hidden_act={self.hidden_act!r}: only 'silu' (Qwen2 SwiGLU) is supported")
        if self.tie_word_embeddings:
            raise ValueError("LLMConfig.tie_word_embeddings=True is not supported: BAGEL's lm_head is untied")

    @property
    def head_dim(self) -> int:
        """Dh = hidden_size / num_attention_heads (128 for Qwen2.5-7B)."""
        return self.hidden_size // self.num_attention_heads

    def to_hf_dict(self) -> dict[str, Any]:
        """The ``llm_config.json`` content in the Hugging Face Qwen2 format (readable by ``Qwen2Config``)."""
        out: dict[str, Any] = {
            "architectures": ["Qwen2ForCausalLM"],
            "model_type": "qwen2",
            "attention_dropout": 0.0,
            "initializer_range": 0.02,
            "max_window_layers": self.num_hidden_layers,
            "rope_scaling": None,
            "sliding_window": self.max_position_embeddings,
            "use_sliding_window": False,
            "use_cache": True,
            "torch_dtype": "bfloat16",
        }
        out.update(asdict(self))
        return out

    @classmethod
    def from_hf_dict(cls, data: dict[str, Any], source: str = "llm_config.json") -> LLMConfig:
        """Read a Hugging Face Qwen2 config dict; unknown keys (``architectures``, ``torch_dtype``, ...) are ignored.

        BAGEL overrides ``qk_norm=True`` and ``tie_word_embeddings=False`` after loading the released file (which is
        the plain Qwen2.5-7B-Instruct config and says ``tie_word_embeddings: false`` and has no ``qk_norm``), so a
        missing ``qk_norm`` reads as True.

        Raises:
            ValueError: A required shape field is missing or invalid (the message names the file and field).
        """
        required = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads")
        missing = [k for k in required if k not in data]
        if missing:
            raise ValueError(f"{source}: missing field(s) {missing}")
        if data.get("use_sliding_window"):
            raise ValueError(f"{source}: use_sliding_window=true is not supported (BAGEL attends to the full context)")
        if data.get("rope_scaling") not in (None, {}):
            raise ValueError(f"{source}: rope_scaling={data['rope_scaling']!r} is not supported (plain RoPE only)")
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        kwargs.setdefault("num_key_value_heads", data["num_attention_heads"])
        kwargs.setdefault("qk_norm", True)
        kwargs["tie_word_embeddings"] = False  # BAGEL overrides it the same way
        try:
            return cls(**kwargs)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{source}: {err}") from err

    @classmethod
    def from_json(cls, path: str | Path) -> LLMConfig:
        """Load ``llm_config.json`` (see ``from_hf_dict``)."""
        return cls.from_hf_dict(_read_json(path, "LLM config"), source=str(path))

    def to_json(self, path: str | Path) -> None:
        """Write ``llm_config.json`` atomically (temp file + rename)."""
        _write_json_atomic(Path(path), self.to_hf_dict())


LLM_SIZES: dict[str, LLMConfig] = {
    # vocab 640 holds the offline ByteTokenizer with the default script vocabulary (256 bytes + 328 specials = 584).
    "tiny": LLMConfig(
        vocab_size=640,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        rope_theta=10_000.0,
        max_position_embeddings=4096,
        bos_token_id=256,
        eos_token_id=258,
    ),
    "small": LLMConfig(
        vocab_size=2048,
        hidden_size=256,
        intermediate_size=704,
        num_hidden_layers=4,
        num_attention_heads=8,
        num_key_value_heads=2,
        rope_theta=10_000.0,
        max_position_embeddings=8192,
        bos_token_id=256,
        eos_token_id=258,
    ),
    # The decoder of the synth-long sweep (issue 11): 4 layers of width 128 on the tiny byte vocabulary. On SynthStory
    # 64 px (with the 4x4/16-channel synth latent) it drew the right sky in 10 of 15 held-out shots after 500 steps,
    # where "tiny" (width 64, 2 layers) needed about 2000; width 256 costs about 3x more per step on CPU.
    "bytes-128": LLMConfig(
        vocab_size=640,
        hidden_size=128,
        intermediate_size=352,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        rope_theta=10_000.0,
        max_position_embeddings=8192,
        bos_token_id=256,
        eos_token_id=258,
    ),
    "bagel-7b-mot": LLMConfig(),
}


########################################################################################################################
# Special tokens and the top-level model config
########################################################################################################################


@dataclass(frozen=True)
class SpecialTokens:
    """Ids of the four delimiters BAGEL uses (Qwen2.5 values by default, bagel-compat §4.3).

    Every text segment is ``<|im_start|> ... <|im_end|>`` and every image block ``<|vision_start|> ... <|vision_end|>``.
    """

    im_start: int = 151644
    im_end: int = 151645
    vision_start: int = 151652
    vision_end: int = 151653

    def check(self, vocab_size: int) -> None:
        """Raise ``ValueError`` if an id is outside ``[0, vocab_size)``."""
        for name, value in asdict(self).items():
            if not 0 <= value < vocab_size:
                raise ValueError(f"SpecialTokens.{name}={value} is outside the vocabulary [0, {vocab_size})")


@dataclass(frozen=True)
class SequenceLayout:
    """How a sample becomes a token sequence, beyond the architecture: the one owner of ``id_prompting``.

    Attributes:
        id_prompting: UniMAGE's In-Context ID Prompting: ID tokens inside every image block (see ``packing``).
            False reproduces BAGEL exactly.
    """

    id_prompting: bool = False

    def image_id_tokens(self, prompt: IdPrompt | None, tokenizer: ScriptTokenizer) -> tuple[int, ...]:
        """The ID tokens of one image block: ``<FrameN>``, then characters, then environments (``script.vocab``).

        The only reader of ``id_prompting``: the data planner and the Director both take an image's ID tokens from
        here, and the packer lays out whatever a segment carries, so the flag has exactly one gate. Off (or without a
        prompt) the block has none, and no id is looked up (an index beyond the vocabulary is then no error).

        Raises:
            ValueError: With the flag on, an index beyond the tokenizer's vocabulary maxima.
        """
        if not self.id_prompting or prompt is None:
            return ()
        return tuple(tokenizer.token_id(tok) for tok in prompt.tokens(tokenizer.vocab))


@dataclass(frozen=True)
class LossRecipe:
    """What training optimises, beyond the architecture (the model's forward reads it; inference never does).

    Attributes:
        ce_weight: Weight of the next-token cross-entropy in the total loss.
        mse_weight: Weight of the flow-matching velocity MSE in the total loss.
        timestep_shift: s in t ← s·t / (1 + (s−1)·t), applied to training timesteps (1.0 = no shift).
        freeze_und: Stop-gradient through the understanding expert's outputs (UniMAGE's Disentangled Expert
            Learning, BAGEL's ``freeze_und``); only the generation expert and the image heads learn from the MSE.
    """

    ce_weight: float = 1.0
    mse_weight: float = 1.0
    timestep_shift: float = 1.0
    freeze_und: bool = False

    def __post_init__(self) -> None:
        if self.timestep_shift <= 0:
            raise ValueError(f"LossRecipe.timestep_shift must be positive, got {self.timestep_shift}")
        if self.ce_weight < 0 or self.mse_weight < 0:
            raise ValueError(f"loss weights must be >= 0, got ce={self.ce_weight}, mse={self.mse_weight}")


#: Field names of the nested parts, as ``config.json`` and ``ModelConfig.replace`` spell them (flat).
_NESTED: dict[str, tuple[str, ...]] = {
    "layout": tuple(f.name for f in fields(SequenceLayout)),
    "loss": tuple(f.name for f in fields(LossRecipe)),
}


@dataclass(frozen=True)
class ModelConfig:
    """The whole UniMAGE model: the architecture, its sequence layout and its loss recipe.

    Attributes:
        llm: MoT decoder shape.
        vit: SigLIP NaViT encoder shape.
        vae: FLUX autoencoder shape (held outside the model's state dict); used when ``ae="flux"``.
        latent_patch_size: p; p×p latent pixels become one LLM token (2 in BAGEL).
        max_latent_size: Latent tokens per side of the ``latent_pos_embed`` table (64 in the release: 1024 px).
        vit_max_num_patch_per_side: S of ``vit_pos_embed`` and of the ViT position ids row·S + col (70).
        connector_act: Activation between ``connector.fc1`` and ``fc2``.
        attention_backend: ``auto`` picks flash-attn on CUDA when importable, else flex on CUDA, else SDPA with a
            dense mask; the others force a backend.
        tokens: Ids of the segment delimiters.
        ae: Which autoencoder makes the latents: ``flux`` (BAGEL's FLUX VAE, ``ae.safetensors``) or ``synth`` (a
            patch PCA fitted on the training keyframes, ``synth_ae.safetensors``; see ``unimage.model.synth_ae``).
        synth_ae: Shape of the synth autoencoder; used when ``ae="synth"``.
        layout: Sequence layout (``id_prompting``).
        loss: Loss recipe (weights, training timestep shift, ``freeze_und``).
    """

    llm: LLMConfig = field(default_factory=LLMConfig)
    vit: ViTConfig = field(default_factory=ViTConfig)
    vae: VAEConfig = field(default_factory=VAEConfig)
    latent_patch_size: int = 2
    max_latent_size: int = 64
    vit_max_num_patch_per_side: int = 70
    connector_act: str = "gelu_pytorch_tanh"
    attention_backend: AttentionBackend = "auto"
    tokens: SpecialTokens = field(default_factory=SpecialTokens)
    ae: AutoencoderKind = "flux"
    synth_ae: SynthAEConfig = field(default_factory=SynthAEConfig)
    layout: SequenceLayout = field(default_factory=SequenceLayout)
    loss: LossRecipe = field(default_factory=LossRecipe)

    def __post_init__(self) -> None:
        if self.ae not in get_args(AutoencoderKind):
            raise ValueError(f"ModelConfig.ae={self.ae!r}; choose one of {get_args(AutoencoderKind)}")
        if self.latent_patch_size <= 0:
            raise ValueError(f"ModelConfig.latent_patch_size must be positive, got {self.latent_patch_size}")
        if self.max_latent_size <= 0:
            raise ValueError(f"ModelConfig.max_latent_size must be positive, got {self.max_latent_size}")
        if not 0 < self.vit_max_num_patch_per_side <= self.vit.num_patches_per_side:
            raise ValueError(
                f"ModelConfig.vit_max_num_patch_per_side={self.vit_max_num_patch_per_side} must be in "
                f"[1, {self.vit.num_patches_per_side}] (the ViT's learned positions per side)"
            )
        if self.attention_backend not in get_args(AttentionBackend):
            raise ValueError(
                f"ModelConfig.attention_backend={self.attention_backend!r}; choose one of {get_args(AttentionBackend)}"
            )
        self.tokens.check(self.llm.vocab_size)

    @property
    def latent_channels(self) -> int:
        """C of the autoencoder's latent (16 for FLUX)."""
        return int(self.synth_ae.z_channels if self.ae == "synth" else self.vae.z_channels)

    @property
    def patch_latent_dim(self) -> int:
        """p·p·C: one latent token's vector (64 in BAGEL)."""
        return self.latent_patch_size**2 * self.latent_channels

    @property
    def ae_downsample(self) -> int:
        """Pixels per latent pixel per side of the autoencoder (8 for FLUX; synth: its patch size)."""
        return int(self.synth_ae.downsample if self.ae == "synth" else self.vae.downsample)

    @property
    def latent_downsample(self) -> int:
        """Pixels per latent token per side (8·2 = 16 in BAGEL; synth: patch_size · latent_patch_size)."""
        return self.ae_downsample * self.latent_patch_size

    def replace(self, **changes: Any) -> ModelConfig:
        """A copy with fields changed (validated again), named flat as in ``config.json``.

        A name of ``SequenceLayout`` or ``LossRecipe`` (``id_prompting=True``, ``ce_weight=0.5``) changes that field
        of ``layout`` / ``loss``; any other name is a top-level field (``layout=`` / ``loss=`` replace a whole part).

        Raises:
            ValueError: An unknown name (the message gives the nearest valid one).
        """
        top = {f.name for f in fields(self)}
        nested: dict[str, dict[str, Any]] = {part: {} for part in _NESTED}
        direct: dict[str, Any] = {}
        for name, value in changes.items():
            part = next((p for p, names in _NESTED.items() if name in names), None)
            if part is not None:
                nested[part][name] = value
            elif name in top:
                direct[name] = value
            else:
                valid = sorted(top | {n for names in _NESTED.values() for n in names})
                near = difflib.get_close_matches(name, valid, n=1)
                hint = f"; did you mean {near[0]!r}?" if near else f"; valid: {valid}"
                raise ValueError(f"ModelConfig has no field {name!r}{hint}")
        for part, part_changes in nested.items():
            if part_changes:
                direct[part] = replace(direct.get(part, getattr(self, part)), **part_changes)
        return replace(self, **direct)

    def to_json_dict(self) -> dict[str, Any]:
        """The top-level fields as written to BAGEL's ``config.json`` (encoders are in their own json files).

        Layout and loss fields are written flat, under the keys they always had (checkpoints on disk load unchanged).
        """
        return {
            "latent_patch_size": self.latent_patch_size,
            "max_latent_size": self.max_latent_size,
            "vit_max_num_patch_per_side": self.vit_max_num_patch_per_side,
            "connector_act": self.connector_act,
            "interpolate_pos": False,
            "timestep_shift": self.loss.timestep_shift,
            "visual_gen": True,
            "visual_und": True,
            "id_prompting": self.layout.id_prompting,
            "attention_backend": self.attention_backend,
            "ce_weight": self.loss.ce_weight,
            "mse_weight": self.loss.mse_weight,
            "freeze_und": self.loss.freeze_und,
            "special_tokens": asdict(self.tokens),
            "ae": self.ae,
        }

    @classmethod
    def from_json_dicts(
        cls,
        top: dict[str, Any],
        llm: LLMConfig,
        vit: ViTConfig,
        vae: VAEConfig,
        source: str = "config.json",
        changes: Mapping[str, Any] | None = None,
    ) -> ModelConfig:
        """Assemble a config from BAGEL's ``config.json`` content and already-read encoder configs.

        Unknown keys (``vae_config``, ``vit_config``, ``llm_config`` that vLLM reads) are ignored; missing ones take the
        inference defaults of the release (bagel-compat §1.2); a file without ``ae`` is a FLUX checkpoint, and
        ``synth_ae_config`` gives the synth autoencoder's shape. ``changes`` (flat names, as ``replace`` takes them,
        e.g. ``tokens=``) are applied BEFORE validation, so an override can rescue a file whose defaults would not
        validate (a small vocab without ``special_tokens``: the Qwen default ids are out of range until ``tokens``
        replaces them).

        Raises:
            ValueError: ``interpolate_pos`` is true, or a field has an invalid value.
        """
        if top.get("interpolate_pos", False):
            raise ValueError(f"{source}: interpolate_pos=true is not supported (the release uses extrapolate ids)")
        names = {
            "latent_patch_size",
            "max_latent_size",
            "vit_max_num_patch_per_side",
            "connector_act",
            "attention_backend",
            "ae",
        }
        kwargs: dict[str, Any] = {k: v for k, v in top.items() if k in names}
        if top.get("synth_ae_config"):
            kwargs["synth_ae"] = SynthAEConfig.from_json_dict(
                top["synth_ae_config"], source=f"{source}: synth_ae_config"
            )
        if "special_tokens" in top:
            kwargs["tokens"] = SpecialTokens(**top["special_tokens"])
        flat = {k: v for k, v in top.items() if any(k in part for part in _NESTED.values())}
        flat.update(changes or {})
        top_changes = {k: v for k, v in flat.items() if not any(k in part for part in _NESTED.values())}
        try:
            parts = {
                "layout": SequenceLayout(**{k: v for k, v in flat.items() if k in _NESTED["layout"]}),
                "loss": LossRecipe(**{k: v for k, v in flat.items() if k in _NESTED["loss"]}),
            }
            return cls(llm=llm, vit=vit, vae=vae, **(kwargs | parts | top_changes))
        except (TypeError, ValueError) as err:
            raise ValueError(f"{source}: {err}") from err


def _byte_tokenizer_tokens() -> SpecialTokens:
    # Ids of ``unimage.script.tokenizer.ByteTokenizer`` (the offline tokenizer of tiny configs): bytes 0-255, then
    # <|endoftext|> 256, <|im_start|> 257, <|im_end|> 258, <|vision_start|> 259, <|vision_end|> 260, then the script
    # tokens. A test checks these against the tokenizer.
    return SpecialTokens(im_start=257, im_end=258, vision_start=259, vision_end=260)


MODEL_SIZES: dict[str, ModelConfig] = {
    "tiny": ModelConfig(
        llm=LLM_SIZES["tiny"],
        vit=VIT_SIZES["tiny"],
        vae=VAE_SIZES["tiny"],
        max_latent_size=8,
        vit_max_num_patch_per_side=VIT_SIZES["tiny"].num_patches_per_side,
        attention_backend="sdpa",
        tokens=_byte_tokenizer_tokens(),
    ),
    # tiny with the patch-PCA autoencoder (8×8 patches → 64 channels, fitted on the training keyframes at the start of
    # training): latent_downsample stays 8·2 = 16, so a keyframe has as many image tokens as with the tiny FLUX VAE;
    # each token carries 2·2·64 = 256 latent numbers (vs 64). Measured on SynthStory 64 px: 31.7 dB held-out (4×4/16
    # channels with latent_patch_size 4: 30.6 dB, same 256 numbers per token). Per-channel unit variance (the default)
    # vs scaling="global", 300 icl steps: global's teacher-forced x0 at t = 0.5 gained more (+1.9 vs +0.9 dB in pixels)
    # but its sampled keyframes carry 7x the data's high-frequency energy (speckle); per-channel ones have the data's.
    "tiny-synth": ModelConfig(
        llm=LLM_SIZES["tiny"],
        vit=VIT_SIZES["tiny"],
        vae=VAE_SIZES["tiny"],
        max_latent_size=8,
        vit_max_num_patch_per_side=VIT_SIZES["tiny"].num_patches_per_side,
        attention_backend="sdpa",
        tokens=_byte_tokenizer_tokens(),
        ae="synth",
        synth_ae=SynthAEConfig(patch_size=8, z_channels=64, scaling="channel"),
    ),
    # The synth-long model (issue 11): the "bytes-128" decoder with a finer synth latent: 4x4 patches -> 16 channels,
    # 2x2 latent patches per token, so a 64 px keyframe is 8x8 = 64 tokens of 8x8 pixels (tiny-synth: 4x4 = 16 tokens
    # of 16x16 pixels, coarser than a figure's head).
    "small-synth": ModelConfig(
        llm=LLM_SIZES["bytes-128"],
        vit=VIT_SIZES["tiny"],
        vae=VAE_SIZES["tiny"],
        max_latent_size=16,
        vit_max_num_patch_per_side=VIT_SIZES["tiny"].num_patches_per_side,
        attention_backend="sdpa",
        tokens=_byte_tokenizer_tokens(),
        ae="synth",
        synth_ae=SynthAEConfig(patch_size=4, z_channels=16, scaling="channel"),
    ),
    "small": ModelConfig(
        llm=LLM_SIZES["small"],
        vit=VIT_SIZES["small"],
        vae=VAE_SIZES["small"],
        max_latent_size=32,
        vit_max_num_patch_per_side=VIT_SIZES["small"].num_patches_per_side,
        tokens=_byte_tokenizer_tokens(),
    ),
    "bagel-7b-mot": ModelConfig(
        llm=LLM_SIZES["bagel-7b-mot"], vit=VIT_SIZES["bagel-7b-mot"], vae=VAE_SIZES["bagel-7b-mot"]
    ),
}


def list_sizes() -> list[str]:
    """Names accepted by ``get_config`` (for CLI ``choices``)."""
    return list(MODEL_SIZES)


def get_config(name: str, **changes: Any) -> ModelConfig:
    """The named size, optionally with fields changed by their flat names (``ModelConfig.replace``, e.g.
    ``id_prompting=True``).

    Raises:
        ValueError: Unknown name (the message lists the known ones).
    """
    if name not in MODEL_SIZES:
        raise ValueError(f"unknown model size {name!r}; choose one of {list_sizes()}")
    cfg = MODEL_SIZES[name]
    return cfg.replace(**changes) if changes else cfg
