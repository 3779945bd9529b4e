"""The Director end to end on a random tiny checkpoint: write → continue_ → continue_ → extend → render, structure,
counts, determinism, the ID-prompting context, the one repair (closing a cue), cuts, and refusals."""

from __future__ import annotations

import io

import pytest
import torch
from PIL import Image

from tests._helpers.director import FAST
from unimage.data.segments import script_blocks
from unimage.infer.director import Director, DirectorError, resolve_checkpoint
from unimage.model.packing import CleanVaeImage, VitImage, pack
from unimage.script import CONTINUATION_PROMPT, Description, Script, Shot, parse, serialize


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _story(director: Director):
    g1 = director.write_generation("A fox and a crow share a story in a forest.", n_shots=2)
    s2 = director.continue_(g1.script, 1)
    s3 = director.continue_(s2, 1)
    g4 = director.extend_generation(s3, "Then it starts to rain.", n_shots=2)
    return g1, s2, s3, g4


def test_write_continue_extend_render_end_to_end(director):
    g1, s2, s3, g4 = _story(director)
    for script in (g1.script, s2, s3, g4.script):
        result = parse(serialize(script))
        assert [p.code for p in result.problems if p.code != "possibly-truncated"] == []
        assert result.script == script  # canonical text round-trips
    assert [len(s.shots) for s in (g1.script, s2, s3, g4.script)] == [2, 3, 4, 6]
    assert [s.index for s in g4.script.shots] == [1, 2, 3, 4, 5, 6]
    assert g1.script.user_prompt == "A fox and a crow share a story in a forest."
    assert len(g1.script.characters) <= FAST.max_characters and len(g1.script.environments) <= FAST.max_environments
    # Earlier content is kept verbatim; markers sit where the calls put them.
    assert s3.shots[:3] == s2.shots and g4.script.shots[:4] == s3.shots
    assert [(m.kind, m.position) for m in g4.script.markers] == [
        ("continuation", 2),
        ("continuation", 3),
        ("extension", 4),
    ]
    assert g4.script.markers[0].text == CONTINUATION_PROMPT and g4.script.markers[2].text == "Then it starts to rain."
    assert g4.new_shots == 2 and g4.stopped == "n_shots"
    # Every mention in the generated shots refers to a defined entry.
    defined = {("character", c.index) for c in g4.script.characters} | {
        ("environment", e.index) for e in g4.script.environments
    }
    for shot in g4.script.shots:
        for desc in (shot.frame, shot.video):
            assert desc is not None and desc.text
            assert {(m.kind, m.index) for m in desc.mentions} <= defined

    images = director.render(g4.script)
    assert len(images) == 6
    assert all(im.size == (64, 64) and im.mode == "RGB" for im in images)
    assert len({_png(im) for im in images}) == 6


def test_deterministic_under_a_fixed_seed(director, tiny_ckpt):
    other = Director.from_pretrained(tiny_ckpt, config=FAST, device="cpu")  # a second load, same seed
    a = _story(director)[-1].script
    b = _story(other)[-1].script
    assert serialize(a) == serialize(b)
    short = Script(a.user_prompt, a.characters, a.environments, a.shots[:2])
    assert [_png(i) for i in director.render(short)] == [_png(i) for i in other.render(short)]
    reseeded = [_png(i) for i in director.with_config(seed=1).render(short)]
    assert reseeded != [_png(i) for i in director.render(short)]
    sampled = director.with_config(do_sample=True, temperature=1.0, seed=3)
    assert serialize(sampled.write("A fox.", n_shots=1)) == serialize(sampled.write("A fox.", n_shots=1))


def _script(n: int = 3) -> Script:
    from unimage.script import Entity

    return Script(
        "Two friends at the sea.",
        (Entity(1, Description("Ana, a tall girl.")), Entity(2, Description("Bo, a small dog."))),
        (Entity(1, Description("A beach at noon.")),),
        tuple(
            Shot(
                i,
                Description(f"Wide shot: <Character1> and <Character2> on <Environment1>, pose {i}."),
                Description("They run."),
            )
            for i in range(1, n + 1)
        ),
    )


def test_render_context_holds_earlier_keyframes_with_id_tokens(tiny_ckpt, tiny_ckpt_id):
    """Before keyframe k the full context holds keyframes 1..k-1 as clean VAE + ViT blocks (with the shots' ID tokens
    when the checkpoint uses ID prompting); ī holds the same text without them; t̄ lacks the latest shot block."""
    script = _script(3)
    for ckpt, id_prompting in ((tiny_ckpt, False), (tiny_ckpt_id, True)):
        d = Director.from_pretrained(ckpt, config=FAST, device="cpu")
        assert d.model.config.layout.id_prompting is id_prompting
        seen = []
        images = list(d.render_iter(script, on_context=seen.append))
        assert len(images) == 3 and len(seen) == 3
        tok = d.tokenizer
        ids = d.id_token_ids(script, 0)
        expected_ids = [tok.token_id(t) for t in ("<Frame1>", "<Character1>", "<Character2>", "<Environment1>")]
        assert ids == (expected_ids if id_prompting else [])
        # Token count of one keyframe's two context blocks, from the packer itself.
        # BAGEL's resize rules (min short side 512 / 224, capped by the tiny tables: 128 / 112 px) upscale the 64 px
        # keyframe before it re-enters the context: 128 px → 8x8 latent tokens, 112 px → 8x8 ViT patches.
        vae_tf, vit_tf = d._transforms()
        assert tuple(vae_tf(images[0]).shape) == (3, 128, 128) and tuple(vit_tf(images[0]).shape) == (3, 112, 112)
        lat = torch.zeros(d.model.config.latent_channels, 16, 16)
        vit = torch.zeros(3, 112, 112)
        per_image = pack([[CleanVaeImage(lat, ids), VitImage(vit, ids)]], d.model.config).length
        shot_text = [len(tok.encode(t)) + 2 for kind, t in script_blocks(script) if kind == "shot"]
        for k, ctx in enumerate(seen):
            assert ctx.full.length - ctx.cfg_img.length == k * per_image
            assert ctx.full.length - ctx.cfg_text.length == shot_text[k]
            assert ctx.full.next_position - ctx.cfg_img.next_position == 2 * k  # one RoPE id per image block


class _Scripted(torch.nn.Module):
    """An lm_head that prefers a planned token at each call (one call per forward of the stream)."""

    def __init__(self, vocab: int, plan: list[int], decoy: int | None = None) -> None:
        super().__init__()
        self.vocab, self.plan, self.calls, self.decoy = vocab, plan, 0, decoy

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        logits = torch.linspace(0, 1, self.vocab)  # a fixed, distinct runner-up order
        logits[self.plan[min(self.calls, len(self.plan) - 1)]] = 100.0
        if self.decoy is not None:
            logits[self.decoy] = 200.0  # always preferred, never acceptable
        self.calls += 1
        return logits


def test_open_cue_is_closed_and_long_descriptions_are_cut(tiny_ckpt):
    d = Director.from_pretrained(tiny_ckpt, config=FAST.replace(max_entry_tokens=64), device="cpu")
    tok = d.tokenizer
    nl = tok.encode("\n")
    plan = [tok.token_id("<Frame1>"), *tok.encode(" she says <-hi"), *nl, *nl, tok.token_id("<Video1>")]
    plan += [*tok.encode(" ok."), *nl, tok.im_end_id]
    # The decoy is an embedding row beyond the tokenizer (768 rows, fewer ids): it must never be emitted.
    assert tok.vocab_size < d.model.config.llm.vocab_size
    d.model.language_model.lm_head = _Scripted(d.model.config.llm.vocab_size, plan, decoy=tok.vocab_size + 1)
    g = d.write_generation("A girl.", n_shots=1)
    assert g.script.shots[0].frame == Description("she says <-hi->")
    assert g.script.shots[0].video == Description("ok.")
    assert g.repairs == ["<Frame1>"] and g.truncated == [] and g.warnings == []

    d2 = Director.from_pretrained(tiny_ckpt, config=FAST.replace(max_entry_tokens=4), device="cpu")
    g2 = d2.write_generation("A girl.", n_shots=1)
    assert g2.truncated and all(
        t in {"<Character1>", "<Character2>", "<Environment1>", "<Environment2>", "<Frame1>", "<Video1>"}
        for t in g2.truncated
    )
    assert g2.script.shots[0].frame.text.endswith("…")


def test_open_ended_write_respects_budget_and_limits(director):
    g = director.with_config(max_new_tokens=60, max_shots=5).write_generation("A fox.")
    assert 1 <= len(g.script.shots) <= 5 and g.stopped in ("model", "budget", "max_shots")
    g = director.with_config(max_new_tokens=100_000, max_shots=2).write_generation("A fox.")
    assert len(g.script.shots) <= 2


def test_refusals(director, tmp_path):
    with pytest.raises(ValueError, match="script syntax"):
        director.write("a prompt <Frame1>: sneaky")
    with pytest.raises(ValueError, match="empty"):
        director.write("   ")
    bad = Script("p", (), (), (Shot(1, Description("<Character4> waves."), Description("x.")),))
    with pytest.raises(DirectorError, match="undefined-mention"):
        director.continue_(bad, 1)
    with pytest.raises(ValueError, match="no shots"):
        director.continue_(Script("p"), 1)
    with pytest.raises(ValueError, match="n_shots"):
        director.continue_(_script(1), 500)
    with pytest.raises(FileNotFoundError):
        resolve_checkpoint(tmp_path)


def test_resolve_checkpoint_finds_an_exported_dir(tiny_ckpt, tmp_path):
    run = tmp_path / "runs" / "smoke" / "full"
    (run / "checkpoints" / "export").parent.mkdir(parents=True)
    (run / "checkpoints" / "export").symlink_to(tiny_ckpt, target_is_directory=True)
    # rglob does not follow directory symlinks; a copy of the two marker files is what a real export has
    real = run / "checkpoints" / "bagel"
    real.mkdir()
    for name in ("llm_config.json", "ema.safetensors"):
        (real / name).symlink_to(tiny_ckpt / name)
    assert resolve_checkpoint(run) == real
    assert resolve_checkpoint(tiny_ckpt) == tiny_ckpt
