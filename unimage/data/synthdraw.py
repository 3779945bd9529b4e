"""SynthStory rendering with PIL: backgrounds, figures, keyframes and character reference images.

The renderer draws exactly what a `StorySpec` says, with no anti-aliasing (``ImageDraw`` fills whole pixels),
so every pixel has one of the palette colours of `unimage.data.synthvocab`. That is what lets the tests check
the ground truth against the pixels: inside a character's box its body colour covers a large share of the
pixels, and it appears nowhere else in the frame.

Figure layout inside its box ``(x0, y0, x1, y1)`` (exclusive ends; w = x1-x0, h = y1-y0)::

    y0 ............ headwear (top hat / crown), if any, down to y0 + 0.14 h
    head top ...... head (circle / square / triangle / diamond), down to the neck at y0 + 0.42 h
    neck .......... body (box / round / cone / bell), full box width at its widest, down to y1 - 1

so the figure touches all four edges of its box.
"""

from __future__ import annotations

from PIL import Image, ImageDraw

from unimage.data.synthspec import HORIZON, Box, CharacterSpec, EnvironmentSpec, ShotSpec, StorySpec
from unimage.data.synthvocab import EYE_COLOR, HEADWEAR, REF_BACKGROUND

NECK = 0.42
HEADWEAR_H = 0.14


def draw_figure(draw: ImageDraw.ImageDraw, char: CharacterSpec, box: Box) -> None:
    """Draw ``char`` so that it exactly fills ``box`` (see the module docstring for the layout)."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    xr, yb = x1 - 1, y1 - 1  # inclusive right / bottom pixel
    cx = (x0 + xr) / 2
    neck = y0 + round(NECK * h)
    body = char.body_color.rgb

    # body: widest extent spans the full box width and reaches the bottom row
    if char.body_shape == "box":
        draw.rectangle((x0, neck, xr, yb), fill=body)
    elif char.body_shape == "round":
        draw.ellipse((x0, neck, xr, yb), fill=body)
    elif char.body_shape == "cone":
        draw.polygon([(round(cx), neck), (x0, yb), (xr, yb)], fill=body)
    elif char.body_shape == "bell":
        inset = round(0.25 * w)
        draw.polygon([(x0 + inset, neck), (xr - inset, neck), (xr, yb), (x0, yb)], fill=body)
    else:
        raise ValueError(f"unknown body_shape {char.body_shape!r}")

    # head: square-ish, centred, between the headwear (if any) and the neck
    head_top = y0 + (round(HEADWEAR_H * h) if char.accessory in HEADWEAR else 0)
    hh = max(3, neck - head_top)
    hw = min(hh, w)
    hx0 = round(cx - (hw - 1) / 2)
    hx1 = hx0 + hw - 1
    hy1 = head_top + hh - 1
    head = char.head_color.rgb
    if char.head_shape == "circle":
        draw.ellipse((hx0, head_top, hx1, hy1), fill=head)
    elif char.head_shape == "square":
        draw.rectangle((hx0, head_top, hx1, hy1), fill=head)
    elif char.head_shape == "triangle":
        draw.polygon([(round(cx), head_top), (hx0, hy1), (hx1, hy1)], fill=head)
    elif char.head_shape == "diamond":
        my = (head_top + hy1) // 2
        draw.polygon([(round(cx), head_top), (hx1, my), (round(cx), hy1), (hx0, my)], fill=head)
    else:
        raise ValueError(f"unknown head_shape {char.head_shape!r}")
    eye = max(1, hh // 9)
    ey = head_top + round(0.6 * hh)
    for ex in (round(cx - hw * 0.18), round(cx + hw * 0.18)):
        draw.rectangle((ex - eye // 2, ey - eye // 2, ex - eye // 2 + eye - 1, ey - eye // 2 + eye - 1), fill=EYE_COLOR)

    acc = char.accessory_color.rgb
    if char.accessory == "top_hat":
        brim = max(1, round(0.025 * h))
        draw.rectangle((round(cx - 0.3 * hw), y0, round(cx + 0.3 * hw), head_top - 1), fill=acc)
        draw.rectangle((round(cx - 0.5 * hw), head_top - brim, round(cx + 0.5 * hw), head_top - 1), fill=acc)
    elif char.accessory == "crown":
        left, right, base = round(cx - 0.4 * hw), round(cx + 0.4 * hw), head_top - 1
        mid = (y0 + base) // 2
        draw.polygon(
            [
                (left, base),
                (left, y0),
                (round(cx - 0.2 * hw), mid),
                (round(cx), y0),
                (round(cx + 0.2 * hw), mid),
                (right, y0),
                (right, base),
            ],
            fill=acc,
        )
    elif char.accessory == "scarf":
        draw.rectangle((round(x0 + 0.2 * w), neck, round(xr - 0.2 * w), neck + max(1, round(0.06 * h))), fill=acc)
    elif char.accessory == "belt":
        by = neck + round(0.55 * (yb - neck))
        draw.rectangle((round(x0 + 0.25 * w), by, round(xr - 0.25 * w), by + max(1, round(0.04 * h))), fill=acc)


def draw_environment(image: Image.Image, env: EnvironmentSpec) -> None:
    """Paint sky (with its pattern), ground and landmark over the whole ``image``."""
    draw = ImageDraw.Draw(image)
    w, h = image.size
    horizon = round(HORIZON * h)
    draw.rectangle((0, 0, w - 1, horizon - 1), fill=env.sky.color.rgb)
    draw.rectangle((0, horizon, w - 1, h - 1), fill=env.ground.color.rgb)
    pat = env.sky.pattern_rgb
    step = max(4, w // 8)
    if env.pattern == "stripes":
        band = max(1, h // 40)
        for y in range(step // 2, horizon - band, step):
            draw.rectangle((0, y, w - 1, y + band - 1), fill=pat)
    elif env.pattern == "dots":
        r = max(1, w // 64)
        for y in range(step // 2, horizon - r, step):
            for x in range(step // 2 + (y // step % 2) * step // 2, w, step):
                draw.ellipse((x - r, y - r, x + r, y + r), fill=pat)
    elif env.pattern == "grid":
        for x in range(step // 2, w, step):
            draw.line((x, 0, x, horizon - 1), fill=pat)
        for y in range(step // 2, horizon, step):
            draw.line((0, y, w - 1, y), fill=pat)

    lx = round((0.18 if env.landmark_side == "left" else 0.82) * w)
    base = horizon + round(0.03 * h)
    main, detail = env.landmark.main_rgb, env.landmark.detail_rgb
    name = env.landmark.en
    if name == "tall tree":
        tw = max(2, round(0.05 * w))
        draw.rectangle((lx - tw // 2, base - round(0.2 * h), lx - tw // 2 + tw - 1, base), fill=detail)
        r = round(0.1 * w)
        cy = base - round(0.25 * h)
        draw.ellipse((lx - r, cy - r, lx + r, cy + r), fill=main)
    elif name == "small house":
        hw2, top = round(0.11 * w), base - round(0.14 * h)
        draw.rectangle((lx - hw2, top, lx + hw2, base), fill=main)
        draw.polygon([(lx - hw2 - 2, top), (lx + hw2 + 2, top), (lx, top - round(0.1 * h))], fill=detail)
    elif name == "mountain":
        half, peak = round(0.25 * w), base - round(0.32 * h)
        draw.polygon([(lx - half, base), (lx + half, base), (lx, peak)], fill=main)
        cap = round(0.08 * h)
        draw.polygon(
            [
                (lx - round(cap * half / (base - peak)), peak + cap),
                (lx + round(cap * half / (base - peak)), peak + cap),
                (lx, peak),
            ],
            fill=detail,
        )
    elif name == "stone tower":
        tw, top = round(0.04 * w), base - round(0.4 * h)
        draw.rectangle((lx - tw, top, lx + tw, base), fill=main)
        draw.polygon([(lx - tw - 2, top), (lx + tw + 2, top), (lx, top - round(0.08 * h))], fill=detail)
    elif name == "lamp post":
        pw, top = max(1, round(0.012 * w)), base - round(0.3 * h)
        draw.rectangle((lx - pw, top, lx + pw, base), fill=main)
        r = max(2, round(0.03 * w))
        draw.ellipse((lx - r, top - 2 * r, lx + r, top), fill=detail)
    else:
        raise ValueError(f"unknown landmark {name!r}")


def render_shot(story: StorySpec, shot: ShotSpec) -> Image.Image:
    """The keyframe of ``shot``: its environment, then each placed figure at its box (RGB, story size)."""
    image = Image.new("RGB", (story.width, story.height))
    draw_environment(image, story.environment(shot.environment))
    draw = ImageDraw.Draw(image)
    for placement in shot.placements:
        draw_figure(draw, story.character(placement.character), placement.box)
    return image


def reference_box(side: int, variant: int) -> Box:
    """Box of the figure in reference image ``variant`` (00 fills 80% of the height, later ones shrink a bit)."""
    h = round(side * (0.8 - 0.08 * (variant % 4)))
    w = round(0.6 * h)
    x0, y0 = (side - w) // 2, (side - h) // 2
    return (x0, y0, x0 + w, y0 + h)


def render_reference(char: CharacterSpec, side: int, variant: int = 0) -> Image.Image:
    """A character reference image: the figure alone, centred on a neutral grey (ViStoryBench ``image/<Key>/NN``)."""
    image = Image.new("RGB", (side, side), REF_BACKGROUND)
    draw_figure(ImageDraw.Draw(image), char, reference_box(side, variant))
    return image
