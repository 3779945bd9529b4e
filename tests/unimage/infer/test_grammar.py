"""The script grammar: description classification (known answers) and a random walk through the entry state machine
whose every accepted text must parse without problems."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from unimage.infer.grammar import BLOCK_END, SCRIPT_END, ScriptGrammar, description_state
from unimage.script import parse


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (" a quiet street at dawn.", "ok"),
        (" <Character1> waves at <Environment2>.", "ok"),
        (" she says: <-hello there", "open_cue"),
        (" she says: <-hello-> and <-wind", "open_cue"),
        (" she says: <", "pending"),
        (" she says: <hel", "pending"),
        (" <Character3> waves.", "bad"),  # undefined character (2 defined)
        (" <Environment3> at night.", "bad"),  # undefined environment
        (" see <Frame2> here", "bad"),  # entry tag inside a description
        (" an <odd> tag", "bad"),
        (" a stray > bracket", "bad"),
        (" closed <-badly> here", "bad"),
        (" two\nlines", "bad"),
        (" <Character0> zero", "bad"),
    ],
)
def test_description_state_known_answers(text, expected):
    assert description_state(text, n_characters=2, n_environments=2) == expected


def test_write_grammar_sequence():
    g = ScriptGrammar("write", 0, 0, 1, max_characters=2, max_environments=1, min_shots=1, max_shots=2)
    assert g.allowed() == ["<Character1>", "<Environment1>", "<Frame1>"]
    g.take("<Character1>")
    assert g.allowed() == ["<Character2>", "<Environment1>", BLOCK_END]
    g.take("<Environment1>")
    assert g.allowed() == [BLOCK_END]  # no character after an environment; env quota reached
    g.take(BLOCK_END)
    assert g.allowed() == ["<Frame1>"]
    g.take("<Frame1>")
    assert g.allowed() == ["<Video1>"]
    g.take("<Video1>")
    assert g.allowed() == [BLOCK_END]
    g.take(BLOCK_END)
    assert g.allowed() == ["<Frame2>", SCRIPT_END]
    assert g.allowed(wind_down=True) == [SCRIPT_END]
    g.take("<Frame2>")
    g.take("<Video2>")
    g.take(BLOCK_END)
    assert g.done and g.shots_written == 2
    with pytest.raises(ValueError, match="not allowed"):
        g.take("<Frame3>")


def test_continue_grammar_and_wind_down():
    g = ScriptGrammar("continue", 2, 1, 5, 0, 0, min_shots=2, max_shots=2)
    assert g.allowed() == ["<Frame5>"]
    assert g.allowed(wind_down=True) == ["<Frame5>"]  # cannot end before the requested count
    for tag in ("<Frame5>", "<Video5>", BLOCK_END):
        g.take(tag)
    assert g.allowed() == ["<Frame6>"]
    w = ScriptGrammar("write", 0, 0, 1, 3, 3, 1, 5)
    w.take("<Character1>")
    assert w.allowed(wind_down=True) == [BLOCK_END]
    with pytest.raises(ValueError):
        ScriptGrammar("write", 0, 0, 1, 1, 1, min_shots=3, max_shots=2)


_SAFE = st.text(alphabet="abc xyz.,!?-'", min_size=1, max_size=12).filter(lambda s: s.strip())


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_random_walk_always_parses(data):
    """Any path the grammar allows, with any well-formed descriptions (mentions of defined entries and cues
    included), gives a script the parser reads without problems."""
    mode = data.draw(st.sampled_from(["write", "continue"]))
    if mode == "write":
        header = "<User>: a story.\n"
        g = ScriptGrammar("write", 0, 0, 1, 3, 2, 1, data.draw(st.integers(1, 4)))
    else:
        header = "<User>: a story.\n<Character1>: a fox.\n<Environment1>: a wood.\n<Frame1>: x.\n<Video1>: y.\n"
        header += "<Continuation>: Based on the above script, continue to write the subsequent shot content.\n"
        g = ScriptGrammar("continue", 1, 1, 2, 0, 0, 1, data.draw(st.integers(1, 4)))
    text = header
    for _ in range(60):
        entry = data.draw(st.sampled_from(g.allowed()))
        g.take(entry)
        if entry == SCRIPT_END or (entry == BLOCK_END and g.done):
            break
        if entry == BLOCK_END:
            continue
        body = data.draw(_SAFE)
        if g.n_characters and data.draw(st.booleans()):
            body += f" <Character{data.draw(st.integers(1, g.n_characters))}>"
        if data.draw(st.booleans()):
            body += " says <-" + data.draw(_SAFE) + "->"
        text += f"{entry}: {body}.\n"
        assert description_state(f" {body}.", g.n_characters, g.n_environments) == "ok"
    result = parse(text)
    assert result.ok, (text, result.problems)
    assert len(result.script.shots) >= 1


def test_sampling_config_validation_and_training_sizes(tmp_path):
    from unimage.infer.config import SamplingConfig

    cfg = SamplingConfig()
    # BAGEL interleave_inference row (bagel-compat §3.6)
    assert (cfg.num_timesteps, cfg.timestep_shift, cfg.cfg_text_scale, cfg.cfg_img_scale) == (50, 3.0, 3.0, 1.5)
    assert (cfg.cfg_interval, cfg.cfg_renorm_type, cfg.cfg_renorm_min) == ((0.4, 1.0), "global", 0.0)
    assert SamplingConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.replace(seed=None, top_p=0.9) == SamplingConfig(top_p=0.9)
    for bad in ({"top_p": 0.0}, {"temperature": 0}, {"num_timesteps": 1}, {"cfg_interval": (0.8, 0.2)}):
        with pytest.raises(ValueError):
            SamplingConfig(**bad)
    with pytest.raises(ValueError, match="unknown"):
        SamplingConfig.from_dict({"steps": 3})
    (tmp_path / "config.yaml").write_text(
        "data:\n  images:\n    vae_max_size: 64\n    vae_min_size: 32\n    vit_max_size: 56\n    vit_min_size: 28\n"
    )
    run = SamplingConfig.for_training_run(tmp_path, seed=3)
    assert (run.image_height, run.image_width, run.vae_min_size, run.vit_max_size, run.seed) == (64, 64, 32, 56, 3)
    (tmp_path / "config.yaml").write_text("data: {}\n")
    with pytest.raises(ValueError, match=r"data\.images"):
        SamplingConfig.for_training_run(tmp_path)
