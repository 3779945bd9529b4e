"""SynthStory texts, derived from a `StorySpec` without any model.

- the UniMAGE script (DESIGN.md §3.1; the token format of the published scripts): `script_text`,
  and the script-structured caption of a one-shot pair story: `pair_text`;
- the ViStoryBench ``story.json`` content (reference/vistorybench.md §1.2, key order of the official
  example), bilingual (``en``/``ch``): `story_json`;
- the exact ground truth (boxes, ids, counts per shot): `ground_truth`.

Every text is a pure function of the spec, so texts and pixels can never disagree.
"""

from __future__ import annotations

from typing import Any, Literal

from unimage.data.synthspec import STORY_TYPE, ShotSpec, StorySpec
from unimage.data.synthvocab import (
    CAMERAS,
    LINES,
    PAIR_ACTIONS,
    POSITIONS,
    SHOT_SIZES,
    SOLO_ACTIONS,
    Word,
)


def _names(story: StorySpec, members: list[int], lang: Literal["en", "ch"], tagged: bool) -> list[str]:
    out = []
    for m in members:
        ch = story.character(m)
        name = ch.name.en if lang == "en" else ch.name.ch
        out.append(f"{name}{ch.token}" if tagged else name)
    return out


def _join(items: list[str], lang: Literal["en", "ch"]) -> str:
    if lang == "ch":
        return "和".join(items) if len(items) <= 2 else "、".join(items[:-1]) + "和" + items[-1]
    if len(items) <= 2:
        return " and ".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def user_prompt(story: StorySpec) -> Word:
    """The ``<User>`` prompt, in one of the paper's four styles (chosen per story)."""
    who = [c.index for c in story.characters]
    places_en = [e.name.en for e in story.environments]
    places_ch = [e.name.ch for e in story.environments]
    names_en, names_ch = _join(_names(story, who, "en", False), "en"), _join(_names(story, who, "ch", False), "ch")
    theme = story.theme
    if story.prompt_style == "narrative":
        en = f"{names_en} share a story of {theme.en} in a {_join(places_en, 'en')}."
        ch = f"{names_ch}在{_join(places_ch, 'ch')}里经历了一段关于{theme.ch}的故事。"
    elif story.prompt_style == "concept":
        en = f"A short film about {theme.en}."
        ch = f"一部关于{theme.ch}的短片。"
    elif story.prompt_style == "phrases":
        en = ", ".join([*(c.name.en for c in story.characters), *places_en, theme.en]) + "."
        ch = "，".join([*(c.name.ch for c in story.characters), *places_ch, theme.ch]) + "。"
    else:
        en = f"Can you make a little story where {names_en} spend time in a {places_en[0]}?"
        ch = f"你能写一个{names_ch}在{places_ch[0]}里度过时光的小故事吗？"
    return Word(en, ch)


def frame_text(story: StorySpec, shot: ShotSpec, lang: Literal["en", "ch"] = "en", tagged: bool = True) -> str:
    """Static layout of the shot: who stands where, in which environment (``<FrameN>`` / Static Shot Description)."""
    env = story.environment(shot.environment)
    env_name = env.name.en if lang == "en" else env.name.ch
    env_ref = f"{env_name}{env.token}" if tagged else env_name
    landmark = POSITIONS[env.landmark_side]
    names = _names(story, [p.character for p in shot.placements], lang, tagged)
    if story.appearance == "frame":  # the body colour of each character, beside its name
        colours = [story.character(p.character).body_color for p in shot.placements]
        names = [f"{n}, in {c.en}," if lang == "en" else f"{n}（{c.ch}）" for n, c in zip(names, colours)]
    if lang == "en":
        if not shot.placements:
            body = f"The {env_ref} lies empty, with a {env.landmark.en} {landmark.en}."
        else:
            parts = [f"{n} stands {POSITIONS[p.position(story.width)].en}" for n, p in zip(names, shot.placements)]
            body = f"{_join(parts, 'en')} in the {env_ref}, with a {env.landmark.en} {landmark.en}."
        body = body[0].upper() + body[1:]
        return f"{SHOT_SIZES[shot.size][0]}: {body}" if tagged else body
    if not shot.placements:
        return f"{env_ref}空无一人，{env.landmark.ch}{landmark.ch}。"
    parts = [f"{n}站{POSITIONS[p.position(story.width)].ch}" for n, p in zip(names, shot.placements)]
    return f"在{env_ref}里，{'，'.join(parts)}，{env.landmark.ch}{landmark.ch}。"


def plot_text(story: StorySpec, shot: ShotSpec, lang: Literal["en", "ch"] = "en", tagged: bool = True) -> str:
    """What happens: the action of the shot's first character (towards the second, if any)."""
    members = [p.character for p in shot.placements]
    if not members:
        env = story.environment(shot.environment)
        name = env.name.en if lang == "en" else env.name.ch
        ref = f"{name}{env.token}" if tagged else name
        return f"All is quiet in the {ref}." if lang == "en" else f"{ref}一片寂静。"
    names = _names(story, members, lang, tagged)
    if len(members) == 1:
        act = SOLO_ACTIONS[shot.action]
        return f"{names[0]} {act.en}." if lang == "en" else f"{names[0]}{act.ch}。"
    act = PAIR_ACTIONS[shot.action]
    return f"{names[0]} {act.en.format(o=names[1])}." if lang == "en" else f"{names[0]}{act.ch.format(o=names[1])}。"


def video_text(story: StorySpec, shot: ShotSpec) -> str:
    """``<VideoN>``: action, camera motion, a spoken line and a sound cue, in the published format."""
    env = story.environment(shot.environment)
    text = f"{plot_text(story, shot)} {CAMERAS[shot.camera]}."
    if shot.placements:
        speaker = story.character(shot.placements[0].character)
        text += f" {speaker.name.en}{speaker.token} says: <-{LINES[shot.line].en}->"
    return f"{text} <-{env.sky.sound.en}->."


def script_text(story: StorySpec) -> str:
    """The full UniMAGE script (DESIGN.md §3.1): prompt, global descriptions, then Frame/Video per shot."""
    lines = [f"<User>: {user_prompt(story).en}"]
    lines += [f"{c.token}: {story.look(c.index).en}" for c in story.characters]
    lines += [f"{e.token}: {e.description.en}" for e in story.environments]
    for shot in story.shots:
        lines += [
            "",
            f"<Frame{shot.index}>: {frame_text(story, shot)}",
            f"<Video{shot.index}>: {video_text(story, shot)}",
        ]
    return "\n".join(lines) + "\n"


def pair_text(story: StorySpec) -> str:
    """Script-structured caption of a one-shot story: global descriptions of what is visible, then ``<Frame1>``.

    Pair stories show their whole cast in their single shot, so the caption never mentions an undefined entry.
    There is no ``<User>`` prompt and no ``<Video1>``: a pair teaches the image, not the script.
    """
    shot = story.shots[0]
    visible = sorted(p.character for p in shot.placements)
    lines = [f"{story.character(c).token}: {story.look(c).en}" for c in visible]
    env = story.environment(shot.environment)
    lines += [f"{env.token}: {env.description.en}", f"<Frame1>: {frame_text(story, shot)}"]
    return "\n".join(lines) + "\n"


def story_json(story: StorySpec, story_type: Word = STORY_TYPE) -> dict[str, Any]:
    """The ViStoryBench ``story.json`` content (reference/vistorybench.md §1.2, key order of the official example)."""
    appearances = {
        c.index: sum(any(p.character == c.index for p in s.placements) for s in story.shots) for c in story.characters
    }
    characters = {
        c.key: {
            "tag": c.tag,
            "name_ch": c.name.ch,
            "name_en": c.name.en,
            "prompt_ch": story.look(c.index).ch,
            "prompt_en": story.look(c.index).en,
            "num_of_appearances": appearances[c.index],
        }
        for c in story.characters
    }
    shots = []
    for shot in story.shots:
        env = story.environment(shot.environment)
        members = [p.character for p in shot.placements]
        shots.append(
            {
                "index": shot.index,
                "Plot Correspondence": {
                    "ch": plot_text(story, shot, "ch", False),
                    "en": plot_text(story, shot, "en", False),
                },
                "Setting Description": {"ch": env.setting.ch, "en": env.setting.en},
                "Shot Perspective Design": {"ch": SHOT_SIZES[shot.size][1].ch, "en": SHOT_SIZES[shot.size][1].en},
                "Characters Appearing": {
                    "ch": [story.character(m).name.ch for m in members],
                    "en": [story.character(m).key for m in members],
                },
                "Static Shot Description": {
                    "ch": frame_text(story, shot, "ch", False),
                    "en": frame_text(story, shot, "en", False),
                },
            }
        )
    return {"Story_type": {"en": story_type.en, "ch": story_type.ch}, "Characters": characters, "Shots": shots}


def ground_truth(story: StorySpec) -> dict[str, Any]:
    """Exact ground truth of a story: cast and palettes, environments, and per shot the boxes and counts."""
    return {
        "story_id": story.story_id,
        "split": story.split,
        "seed": story.seed,
        "image_size": [story.width, story.height],
        "box_format": "xyxy pixels, exclusive ends; tight around the drawn figure",
        "characters": {
            c.key: {
                "id": c.index,
                "token": c.token,
                "tag": c.tag,
                "head_shape": c.head_shape,
                "body_shape": c.body_shape,
                "head_color": list(c.head_color.rgb),
                "body_color": list(c.body_color.rgb),
                "accessory": c.accessory,
                "accessory_color": list(c.accessory_color.rgb) if c.accessory != "none" else None,
            }
            for c in story.characters
        },
        "environments": [
            {
                "id": e.index,
                "token": e.token,
                "sky_color": list(e.sky.color.rgb),
                "ground_color": list(e.ground.color.rgb),
                "pattern": e.pattern,
                "landmark": e.landmark.en,
                "landmark_side": e.landmark_side,
            }
            for e in story.environments
        ],
        "shots": [
            {
                "index": s.index,
                "environment": s.environment,
                "shot_size": s.size,
                "count": len(s.placements),
                "characters": [
                    {
                        "key": story.character(p.character).key,
                        "id": p.character,
                        "box_xyxy": list(p.box),
                        "position": p.position(story.width),
                    }
                    for p in s.placements
                ],
            }
            for s in story.shots
        ],
    }
