"""The Director: UniMAGE inference (paper §3.5) — write a script, extend or continue it, render its keyframes.

Text and images are generated separately by the one model, as the paper does: the script first (understanding
expert), then one keyframe per shot in order (generation expert), each conditioned on the script so far and the
earlier keyframes.

Context layout (the training layout of ``unimage.data.segments``, reused through ``script_blocks``): one text segment
``<|im_start|> block <|im_end|>`` per script block — the ``<User>`` line, the globals, each marker, each shot — and,
when rendering, after every shot block its keyframe as a clean VAE block then a ViT block (BAGEL's input-image order),
with the shot's In-Context ID tokens when the checkpoint was trained with ``id_prompting``. The last keyframe is not
fed back (nothing follows it).

Script writing (``write`` / ``extend`` / ``continue_``): the context blocks are prefilled once, then the Director
drives the decoding (``unimage.infer.grammar``): it lets the model pick the next tag among those the format allows
(``<Character2>`` / ``<Environment1>`` / end of globals / ``<Frame5>`` ...), emits the ``:`` itself, and lets the model
write the description until it ends the line, accepting only tokens that keep the description well-formed. The one
repair made is closing a ``<-`` cue left open at the end of a line; a description that reaches
``max_entry_tokens`` is cut at its last well-formed point and marked ``…``. Both are listed in ``Generation``. The
result goes through the parser; any problem other than the ``possibly-truncated`` heuristic raises ``DirectorError``
with the located problems (by construction it should not happen).

Rendering: BAGEL's ``interleave_inference`` contexts (``GuidanceContexts``): c = everything; t̄ = without the latest
text (the shot block); ī = all text, no images. Each keyframe's context is prefilled incrementally (only the new
blocks), once per keyframe, and reused by every denoising step and CFG branch.

Determinism: every random draw of a call uses one ``torch.Generator`` seeded with ``SamplingConfig.seed``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from PIL import Image

from unimage.data.segments import ImageSizes, script_blocks
from unimage.infer.config import SamplingConfig
from unimage.infer.decoding import TokenStream, choose
from unimage.infer.grammar import BLOCK_END, SCRIPT_END, ScriptGrammar, description_state
from unimage.model.cache import GuidanceContexts
from unimage.model.generation import CfgOptions, ImageRequest, generate_image, generate_images
from unimage.model.image_transforms import ImageTransform
from unimage.model.packing import CleanVaeImage, Segment, VitImage
from unimage.model.vae import images_to_uint8
from unimage.script import CONTINUATION_PROMPT, Marker, Problem, Script, parse, serialize
from unimage.script.vocab import id_prompt_for_shot

if TYPE_CHECKING:
    from unimage.model.unimage import UniMAGE
    from unimage.model.vae import Autoencoder
    from unimage.script.tokenizer import ScriptTokenizer

__all__ = ["Director", "DirectorError", "Generation", "resolve_checkpoint"]

#: Parser problems that are heuristics about *cut-off* text; the Director ends every text itself, so they are kept as
#: warnings, never errors.
WARNING_CODES = frozenset({"possibly-truncated"})


class DirectorError(RuntimeError):
    """Generated or given text that is not a well-formed script; lists every located problem."""

    def __init__(self, message: str, problems: Sequence[Problem] = (), text: str = "") -> None:
        self.problems = tuple(problems)
        self.text = text
        lines = "".join(f"\n  {p}" for p in self.problems)
        super().__init__(f"{message}{lines}")


@dataclass
class Generation:
    """One script-writing call, with everything the Director did to the model's text.

    Attributes:
        script: The parsed script (the input script plus what was written).
        text: Its canonical text.
        raw_text: The blocks exactly as the model wrote them (forced tags and repairs included).
        kind: ``write``, ``extend`` or ``continue``.
        new_shots: Shots written by this call.
        repairs: Entries whose open ``<-`` cue was closed, e.g. ``<Video3>``.
        truncated: Entries cut at ``max_entry_tokens`` (marked ``…`` in the text).
        warnings: Parser warnings (``possibly-truncated``) of the result.
        stopped: Why writing stopped: ``n_shots`` (the requested count), ``max_shots``, ``model`` (the model ended
            the script) or ``budget`` (``max_new_tokens`` nearly spent).
        num_tokens: Tokens generated (forced ones included).
        seconds: Wall time.
    """

    script: Script
    text: str
    raw_text: str
    kind: str
    new_shots: int
    repairs: list[str] = field(default_factory=list)
    truncated: list[str] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    stopped: str = ""
    num_tokens: int = 0
    seconds: float = 0.0


def resolve_checkpoint(path: str | Path) -> Path:
    """The BAGEL-layout directory for ``path``: the directory itself, or the newest one below it.

    A training run directory (``<runs>/<sweep>/<arm>/``) or its ``checkpoints/`` folder holds an exported
    BAGEL-layout directory (DESIGN.md §3.4); any folder with ``llm_config.json`` and ``ema.safetensors`` counts.

    Raises:
        FileNotFoundError: Nothing usable at or below ``path`` (the message says what was looked for).
    """
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"checkpoint not found: {root}")
    if root.is_file():
        raise FileNotFoundError(
            f"{root}: a single file is not a checkpoint the Director reads; pass a BAGEL-layout directory "
            "(llm_config.json, vit_config.json, ema.safetensors, ae.safetensors, tokenizer files) or a run directory "
            "that contains an exported one"
        )
    if (root / "llm_config.json").is_file():
        return root
    found = [p.parent for p in root.rglob("llm_config.json") if (p.parent / "ema.safetensors").is_file()]
    if not found:
        raise FileNotFoundError(f"{root}: no BAGEL-layout directory (llm_config.json + ema.safetensors) at or below it")
    return max(found, key=lambda p: ((p / "ema.safetensors").stat().st_mtime, str(p)))


class Director:
    """Writes, extends, continues and renders UniMAGE scripts with one model.

    Args:
        model: The UniMAGE model (eval mode).
        vae: The autoencoder, FLUX or synth (needed by ``render`` only).
        tokenizer: The script tokenizer; its special ids must match ``model.config.tokens``.
        config: Sampling settings (BAGEL's defaults when None).
        source: Where the weights came from (for provenance).
    """

    def __init__(
        self,
        model: UniMAGE,
        vae: Autoencoder | None,
        tokenizer: ScriptTokenizer,
        config: SamplingConfig | None = None,
        source: str = "",
    ) -> None:
        self.model = model.eval()
        self.vae = vae.eval() if vae is not None else None
        self.tokenizer = tokenizer
        self.config = config or SamplingConfig()
        self.source = source
        self._colon = tokenizer.encode(":")
        self._close_cue = tokenizer.encode("->")
        self._cut = tokenizer.encode("…\n")

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        config: SamplingConfig | None = None,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> Director:
        """Load a BAGEL-layout directory (or the newest one inside a training run directory).

        Args:
            path: See ``resolve_checkpoint``.
            config: Sampling settings.
            device: Defaults to CUDA when available, else CPU.
            dtype: Cast the weights (e.g. ``torch.bfloat16``); None keeps the file's dtype.
        """
        from unimage.model.checkpoint import TOKENIZER_FILES, load_bagel_dir
        from unimage.script.tokenizer import ByteTokenizer

        directory = resolve_checkpoint(path)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        has_tokenizer = any((directory / name).is_file() for name in TOKENIZER_FILES)
        ckpt = load_bagel_dir(directory, device=device, dtype=dtype, load_tokenizer=has_tokenizer)
        tokenizer: ScriptTokenizer | None = ckpt.tokenizer
        if tokenizer is None:
            # Tiny training runs use the offline byte tokenizer and export no tokenizer files.
            tokenizer = ByteTokenizer()
            tokens = ckpt.config.tokens
            ids = (tokenizer.im_start_id, tokenizer.im_end_id, tokenizer.vision_start_id, tokenizer.vision_end_id)
            if ids != (tokens.im_start, tokens.im_end, tokens.vision_start, tokens.vision_end):
                raise ValueError(
                    f"{directory}: no tokenizer files, and the byte tokenizer's special ids {ids} differ from the "
                    f"checkpoint's {tokens}; copy the tokenizer files of the model into the directory"
                )
        return cls(ckpt.model, ckpt.vae, tokenizer, config, source=str(directory))

    def with_config(self, **changes: Any) -> Director:
        """A Director sharing the weights with some sampling settings changed (e.g. ``seed=3``)."""
        return Director(self.model, self.vae, self.tokenizer, self.config.replace(**changes), self.source)

    @property
    def device(self) -> torch.device:
        """Device of the model's weights."""
        return self.model.llm2vae.weight.device

    # ================================================================================================ script writing

    def write(self, prompt: str, n_shots: int | None = None) -> Script:
        """Write a script (globals, then shots) from a user prompt; see ``write_generation``."""
        return self.write_generation(prompt, n_shots).script

    def extend(self, script: Script, new_prompt: str, n_shots: int | None = None) -> Script:
        """Append shots that follow ``new_prompt`` after an ``<Extension>`` marker; see ``extend_generation``."""
        return self.extend_generation(script, new_prompt, n_shots).script

    def continue_(self, script: Script, n_shots: int = 1) -> Script:
        """Append ``n_shots`` shots after a ``<Continuation>`` marker; repeatable; see ``continue_generation``."""
        return self.continue_generation(script, n_shots).script

    def write_generation(self, prompt: str, n_shots: int | None = None) -> Generation:
        """Write a script from ``prompt``.

        Args:
            prompt: The user prompt (one line; whitespace is normalised).
            n_shots: Exactly this many shots; None lets the model end the script (bounded by ``max_shots`` and
                ``max_new_tokens``).

        Raises:
            ValueError: An empty prompt, one containing script tags, or a shot count the vocabulary cannot index.
            DirectorError: The result does not parse (should not happen by construction).
        """
        prompt = _clean_prompt(prompt, "prompt")
        base = Script(user_prompt=prompt)
        vocab = self.tokenizer.vocab.config
        cfg = self.config
        min_shots, max_shots = self._shot_limits(n_shots, 0)
        grammar = ScriptGrammar(
            mode="write",
            n_characters=0,
            n_environments=0,
            next_shot=1,
            max_characters=_cap(cfg.max_characters, vocab.max_characters),
            max_environments=_cap(cfg.max_environments, vocab.max_environments),
            min_shots=min_shots,
            max_shots=max_shots,
        )
        return self._generate("write", base, grammar, budget=None if n_shots else cfg.max_new_tokens)

    def extend_generation(self, script: Script, new_prompt: str, n_shots: int | None = None) -> Generation:
        """Add ``<Extension>: new_prompt`` after the last shot and write the shots that follow it.

        Args:
            script: A well-formed script (problems other than warnings raise ``ValueError``).
            new_prompt: The new user prompt.
            n_shots: Exactly this many new shots; None lets the model decide (bounded as in ``write``).
        """
        marker = Marker("extension", _clean_prompt(new_prompt, "new_prompt"), len(script.shots))
        return self._append("extend", script, marker, n_shots)

    def continue_generation(self, script: Script, n_shots: int = 1) -> Generation:
        """Add ``<Continuation>: <system prompt>`` after the last shot and write ``n_shots`` more shots."""
        if n_shots < 1:
            raise ValueError(f"n_shots must be >= 1, got {n_shots}")
        marker = Marker("continuation", CONTINUATION_PROMPT, len(script.shots))
        return self._append("continue", script, marker, n_shots)

    def _append(self, kind: str, script: Script, marker: Marker, n_shots: int | None) -> Generation:
        if not script.shots:
            raise ValueError(f"{kind}: the script has no shots yet; use write()")
        _check_input(script)
        base = replace(script, markers=(*script.markers, marker))
        min_shots, max_shots = self._shot_limits(n_shots, script.shots[-1].index)
        grammar = ScriptGrammar(
            mode="continue",
            n_characters=max((c.index for c in script.characters), default=0),
            n_environments=max((e.index for e in script.environments), default=0),
            next_shot=script.shots[-1].index + 1,
            max_characters=0,
            max_environments=0,
            min_shots=min_shots,
            max_shots=max_shots,
        )
        return self._generate(kind, base, grammar, budget=None if n_shots else self.config.max_new_tokens)

    def _shot_limits(self, n_shots: int | None, last_index: int) -> tuple[int, int]:
        """(min_shots, max_shots) of one call."""
        room = self.tokenizer.vocab.config.max_shots - last_index
        if n_shots is not None:
            if not 1 <= n_shots <= room:
                raise ValueError(
                    f"n_shots={n_shots}: the tokenizer vocabulary indexes shots up to "
                    f"{self.tokenizer.vocab.config.max_shots}, so 1..{room} more are possible"
                )
            return n_shots, n_shots
        if room < 1:
            raise ValueError(f"the script already has {last_index} shots, the vocabulary maximum")
        return 1, _cap(self.config.max_shots, room)

    # ------------------------------------------------------------------------------------------------ decoding loop

    def _generate(self, kind: str, base: Script, grammar: ScriptGrammar, budget: int | None) -> Generation:
        start = time.perf_counter()
        tok, cfg = self.tokenizer, self.config
        context_blocks = [text for _, text in script_blocks(base)]
        prefix: list[int] = []
        for text in context_blocks:
            prefix += [tok.im_start_id, *tok.encode(text), tok.im_end_id]
        stream = TokenStream(self.model, [*prefix, tok.im_start_id], use_cache=cfg.use_cache)
        generator = torch.Generator().manual_seed(cfg.seed)
        reserve = 2 * (cfg.max_entry_tokens + len(self._cut) + len(self._close_cue) + len(self._colon) + 2) + 2
        out = Generation(script=base, text="", raw_text="", kind=kind, new_shots=0)
        blocks: list[str] = []
        lines: list[str] = []
        used = 0
        while True:
            wind_down = budget is not None and budget - used < reserve
            entry, token = self._choose_entry(stream.logits, grammar.allowed(wind_down), generator)
            if entry == SCRIPT_END:
                out.stopped = "budget" if wind_down else "model"
                break
            grammar.take(entry, wind_down)
            if entry == BLOCK_END:
                blocks.append("".join(lines))
                lines = []
                if grammar.done:
                    out.stopped = "n_shots" if grammar.min_shots == grammar.max_shots else "max_shots"
                    break
                stream.feed([token, tok.im_start_id])
                used += 2
                continue
            stream.feed([token, *self._colon])
            used += 1 + len(self._colon)
            text, n, repaired, cut = self._description(stream, grammar, generator)
            used += n
            lines.append(f"{entry}:{text}\n")
            if repaired:
                out.repairs.append(entry)
            if cut:
                out.truncated.append(entry)
        out.num_tokens = used
        out.raw_text = "".join(blocks)
        result = parse("".join(context_blocks) + out.raw_text)
        errors = [p for p in result.problems if p.code not in WARNING_CODES]
        if errors:
            raise DirectorError(f"{kind}: the generated script does not parse cleanly", errors, out.raw_text)
        out.script = result.script
        out.warnings = [p for p in result.problems if p.code in WARNING_CODES]
        out.text = serialize(result.script)
        out.new_shots = len(result.script.shots) - len(base.shots)
        out.seconds = time.perf_counter() - start
        return out

    def _choose_entry(self, logits: torch.Tensor, allowed: list[str], generator: torch.Generator) -> tuple[str, int]:
        tok = self.tokenizer
        by_id = {tok.im_end_id if e in (BLOCK_END, SCRIPT_END) else tok.token_id(e): e for e in allowed}
        cfg = self.config
        picked = choose(
            logits,
            by_id.get,
            candidates=list(by_id),
            do_sample=cfg.do_sample,
            temperature=cfg.temperature,
            top_p=cfg.top_p,
            generator=generator,
        )
        if picked is None:  # only when every allowed id has a non-finite logit
            token = next(iter(by_id))
            return by_id[token], token
        token, entry = picked
        return entry, token

    def _description(
        self, stream: TokenStream, grammar: ScriptGrammar, generator: torch.Generator
    ) -> tuple[str, int, bool, bool]:
        """Decode one description until the model ends the line: (text without the newline, tokens, repaired, cut)."""
        tok, cfg = self.tokenizer, self.config
        n_chars, n_envs = grammar.n_characters, grammar.n_environments
        mentions = {tok.token_id(f"<Character{i}>") for i in range(1, n_chars + 1)}
        mentions |= {tok.token_id(f"<Environment{i}>") for i in range(1, n_envs + 1)}
        ids: list[int] = []
        clean, clean_ids = stream.snapshot(), 0
        repaired = False
        fed = 0

        def accept(t: int) -> str | None:
            if t >= tok.vocab_size or (tok.is_special(t) and t not in mentions):
                return None  # padding rows of the embedding, or a tag the format does not allow here
            text = tok.decode([*ids, t])
            if "\r" in text:
                return None
            if "\n" in text:
                head, _, tail = text.partition("\n")
                if tail or not head.strip():
                    return None
                state = description_state(head, n_chars, n_envs)
                return {"ok": "end", "open_cue": "close"}.get(state)
            state = description_state(text, n_chars, n_envs)
            return None if state == "bad" else state

        while len(ids) < cfg.max_entry_tokens:
            picked = choose(
                stream.logits,
                accept,
                do_sample=cfg.do_sample,
                temperature=cfg.temperature,
                top_p=cfg.top_p,
                generator=generator,
            )
            if picked is None:
                break
            token, verdict = picked
            if verdict == "close":
                stream.feed(self._close_cue)
                ids += self._close_cue
                fed += len(self._close_cue)
                repaired = True
                clean, clean_ids = stream.snapshot(), len(ids)
                continue
            stream.feed([token])
            ids.append(token)
            fed += 1
            if verdict == "end":
                return tok.decode(ids)[:-1], fed, repaired, False
            if verdict in ("ok", "open_cue"):
                clean, clean_ids = stream.snapshot(), len(ids)
        # Cut: back to the last well-formed point, close an open cue, mark the cut and end the line.
        if clean_ids < len(ids):
            stream.restore(clean)
            del ids[clean_ids:]
        if description_state(tok.decode(ids), n_chars, n_envs) == "open_cue":
            stream.feed(self._close_cue)
            ids += self._close_cue
            fed += len(self._close_cue)
            repaired = True
        stream.feed(self._cut)
        ids += self._cut
        fed += len(self._cut)
        return tok.decode(ids)[:-1], fed, repaired, True

    # ================================================================================================ rendering

    def image_size(self) -> tuple[int, int]:
        """(H, W) of keyframes: the configured size, clamped to the latent table and rounded to the latent grid."""
        cfg = self.model.config
        step = cfg.latent_downsample
        cap = cfg.max_latent_size * step

        def fit(value: int) -> int:
            return max(step, min(value, cap) // step * step)

        return fit(self.config.image_height), fit(self.config.image_width)

    def _transforms(self) -> tuple[ImageTransform, ImageTransform]:
        cfg = self.model.config
        vae_cap = cfg.max_latent_size * cfg.latent_downsample
        vit_cap = cfg.vit_max_num_patch_per_side * cfg.vit.patch_size
        c = self.config
        sizes = ImageSizes(
            vae_max_size=min(c.vae_max_size, vae_cap),
            vae_min_size=min(c.vae_min_size, c.vae_max_size, vae_cap),
            vit_max_size=min(c.vit_max_size, vit_cap),
            vit_min_size=min(c.vit_min_size, c.vit_max_size, vit_cap),
        )
        return (
            ImageTransform(sizes.vae_max_size, sizes.vae_min_size, cfg.latent_downsample),
            ImageTransform(sizes.vit_max_size, sizes.vit_min_size, cfg.vit.patch_size),
        )

    def id_token_ids(self, script: Script, shot_position: int) -> list[int]:
        """In-Context ID tokens of a shot's keyframe, from the checkpoint's layout (empty without ``id_prompting``)."""
        prompt = id_prompt_for_shot(script.shots[shot_position])
        return list(self.model.config.layout.image_id_tokens(prompt, self.tokenizer))

    def render(self, script: Script, progress: bool = False) -> list[Image.Image]:
        """One keyframe per shot, in shot order; see ``render_iter``."""
        return list(self.render_iter(script, progress=progress))

    @torch.no_grad()
    def render_iter(
        self,
        script: Script,
        progress: bool = False,
        on_context: Callable[[GuidanceContexts], None] | None = None,
    ) -> Iterator[Image.Image]:
        """Yield the keyframes of ``script`` one by one (interleaved generation, module docstring).

        Args:
            script: The script; every shot gets a keyframe (markers stay in the context as text).
            progress: Show a tqdm bar over shots.
            on_context: Called with the guidance contexts before each keyframe (tests inspect them).

        Raises:
            ValueError: The Director has no VAE, or a shot mentions an index the ID vocabulary cannot name.
        """
        if self.vae is None:
            raise ValueError("render() needs the VAE (load the checkpoint with its ae.safetensors)")
        from tqdm.auto import tqdm

        model, tok, cfg = self.model, self.tokenizer, self.config
        size = self.image_size()
        guidance = self._guidance()
        generator = torch.Generator().manual_seed(cfg.seed)
        contexts = GuidanceContexts()
        bar = tqdm(total=len(script.shots), desc="keyframes", unit="shot", disable=not progress, leave=False)
        position = 0
        try:
            for kind, text in script_blocks(script):
                contexts = contexts.add_text(model, tok.encode(text))
                if kind != "shot":
                    continue
                ids = self.id_token_ids(script, position)
                if on_context is not None:
                    on_context(contexts)
                latents = generate_image(
                    model,
                    contexts.full,
                    size,
                    guidance,
                    contexts.cfg_text,
                    contexts.cfg_img,
                    id_token_ids=ids,
                    num_timesteps=cfg.num_timesteps,
                    timestep_shift=cfg.timestep_shift,
                    generator=generator,
                    batch_cfg=cfg.batch_cfg,
                )  # [C, H/8, W/8]
                image = self._decode(latents)
                position += 1
                bar.update(1)
                if position < len(script.shots):
                    contexts = contexts.add_images(model, self._image_segments(image, ids, generator))
                yield image
        finally:
            bar.close()

    @torch.no_grad()
    def render_lockstep(self, scripts: Sequence[Script], seeds: Sequence[int]) -> Iterator[tuple[int, Image.Image]]:
        """Render several scripts together: keyframe k of every script is denoised in one batched call.

        A keyframe depends only on its own script's context, so keyframe k of all scripts that have a shot k are
        sampled by one ``generate_images`` call (one forward per denoising step over scripts × CFG branches); a
        script leaves the group when its last keyframe is done. Script i draws from its own generator seeded with
        ``seeds[i]`` in the same order as ``with_config(seed=seeds[i]).render_iter(script)``, so its keyframes
        equal that call's up to float summation order.

        Args:
            scripts: The scripts.
            seeds: One seed per script.

        Yields:
            (script index, keyframe), round by round (keyframe 1 of every script, then keyframe 2, ...).

        Raises:
            ValueError: No VAE, or ``seeds`` does not match ``scripts``.
        """
        if self.vae is None:
            raise ValueError("render() needs the VAE (load the checkpoint with its ae.safetensors)")
        if len(seeds) != len(scripts):
            raise ValueError(f"{len(seeds)} seeds for {len(scripts)} scripts")
        model, tok, cfg = self.model, self.tokenizer, self.config
        gens = [torch.Generator().manual_seed(seed) for seed in seeds]
        blocks = [iter(script_blocks(script)) for script in scripts]
        contexts = [GuidanceContexts() for _ in scripts]
        for k in range(max((len(s.shots) for s in scripts), default=0)):
            live = [i for i, script in enumerate(scripts) if k < len(script.shots)]
            for i in live:  # prefill each script's text up to and including its shot k
                for kind, text in blocks[i]:
                    contexts[i] = contexts[i].add_text(model, tok.encode(text))
                    if kind == "shot":
                        break
            ids = {i: self.id_token_ids(scripts[i], k) for i in live}
            requests = [
                ImageRequest(contexts[i].full, contexts[i].cfg_text, contexts[i].cfg_img, ids[i], gens[i]) for i in live
            ]
            latents = generate_images(
                model, requests, self.image_size(), self._guidance(), cfg.num_timesteps, cfg.timestep_shift
            )
            for i, lat in zip(live, latents):
                image = self._decode(lat)
                if k + 1 < len(scripts[i].shots):
                    contexts[i] = contexts[i].add_images(model, self._image_segments(image, ids[i], gens[i]))
                yield i, image

    def _guidance(self) -> CfgOptions:
        c = self.config
        return CfgOptions(c.cfg_text_scale, c.cfg_img_scale, c.cfg_interval, c.cfg_renorm_min, c.cfg_renorm_type)

    def _decode(self, latents: torch.Tensor) -> Image.Image:
        assert self.vae is not None
        param = next(self.vae.parameters())
        pixels = self.vae.decode(latents[None].to(param.device, param.dtype))  # [1, 3, H, W]
        return Image.fromarray(images_to_uint8(pixels)[0].cpu().numpy())

    def _image_segments(self, image: Image.Image, ids: list[int], generator: torch.Generator) -> list[Segment]:
        """A generated keyframe as context: clean VAE block (posterior sample, t = 0), then ViT block."""
        assert self.vae is not None
        vae_tf, vit_tf = self._transforms()
        param = next(self.vae.parameters())
        pixels = vae_tf(image)[None].to(param.device, param.dtype)  # [1, 3, H, W]
        latents = self.vae.encode(pixels, generator=generator)[0].float().cpu()  # [C, H/8, W/8]
        return [CleanVaeImage(latents, id_token_ids=ids), VitImage(vit_tf(image), id_token_ids=ids)]


def _cap(value: int | None, maximum: int) -> int:
    return maximum if value is None else min(value, maximum)


def _clean_prompt(prompt: str, what: str) -> str:
    """One-line prompt; refuses text that would read as script structure."""
    text = " ".join(prompt.split())
    if not text:
        raise ValueError(f"{what} is empty")
    probe = parse(f"<User>: {text}\n<Frame1>: x.\n<Video1>: x.\n")
    errors = [p for p in probe.problems if p.code not in WARNING_CODES and p.line == 1]
    if len(probe.script.shots) != 1 or probe.script.markers:
        errors = errors or list(probe.problems)
    if errors:
        raise ValueError(f"{what} {text!r} contains script syntax: " + "; ".join(p.message for p in errors))
    return text


def _check_input(script: Script) -> None:
    result = parse(serialize(script))
    errors = [p for p in result.problems if p.code not in WARNING_CODES]
    if errors:
        raise DirectorError("the input script has problems; fix them before extending it", errors)
