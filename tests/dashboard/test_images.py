"""Images are served only from inside the run roots, downscaled, as JPEG bytes (dashboard.images)."""

from __future__ import annotations

import io
import os

import pytest
from PIL import Image

from dashboard import images
from tests.dashboard.fixtures import write_png


@pytest.fixture
def layout(tmp_path):
    root = tmp_path / "runs"
    inside = root / "a" / "shot_01.png"
    write_png(inside, (200, 10, 10), 1, size=(800, 400))
    outside = tmp_path / "secret.png"
    write_png(outside, (0, 0, 0), 1)
    return root, inside, outside


def test_inside_is_served_downscaled_keeping_aspect(layout):
    root, inside, _ = layout
    data = images.thumbnail((str(root),), str(inside), 200)
    assert data[:3] == b"\xff\xd8\xff"  # JPEG
    with Image.open(io.BytesIO(data)) as im:
        assert im.size == (200, 100)
        r, g, b = im.convert("RGB").getpixel((150, 50))
        assert r > 150 and g < 60 and b < 60  # the colour survived


@pytest.mark.parametrize("how", ["dotdot", "absolute", "symlink", "root_itself", "missing"])
def test_paths_outside_the_roots_are_rejected(layout, how):
    root, _, outside = layout
    if how == "dotdot":
        path = str(root / "a" / ".." / ".." / "secret.png")
    elif how == "absolute":
        path = str(outside)
    elif how == "symlink":
        link = root / "a" / "link.png"
        os.symlink(outside, link)
        path = str(link)
    elif how == "root_itself":
        path = str(root)
    else:
        path = str(root / "a" / "nope.png")
    with pytest.raises(images.ImageAccessError):
        images.thumbnail((str(root),), path)


def test_a_sibling_with_the_root_as_prefix_is_outside(tmp_path):
    root = tmp_path / "runs"
    evil = tmp_path / "runs_evil" / "x.png"
    write_png(evil, (1, 1, 1), 1)
    root.mkdir()
    with pytest.raises(images.ImageAccessError):
        images.resolve_within((str(root),), evil)


def test_overwritten_image_is_reread(layout):
    root, inside, _ = layout
    first = images.thumbnail((str(root),), str(inside), 64)
    write_png(inside, (10, 10, 200), 1, size=(800, 400))
    st = os.stat(inside)
    os.utime(inside, ns=(st.st_atime_ns, st.st_mtime_ns + 10_000_000))
    second = images.thumbnail((str(root),), str(inside), 64)
    assert first != second


def test_unreadable_image_is_an_access_error(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(images.ImageAccessError, match="unreadable"):
        images.thumbnail((str(tmp_path),), str(bad))


def test_degrade_is_seeded_and_visibly_different(layout):
    root, inside, _ = layout
    data = images.thumbnail((str(root),), str(inside), 128)
    a, b, c = images.degrade(data, 1), images.degrade(data, 1), images.degrade(data, 2)
    assert a == b and a != c
    import numpy as np

    orig = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=float)
    deg = np.asarray(Image.open(io.BytesIO(a)).convert("RGB"), dtype=float)
    assert np.abs(orig - deg).mean() > 10  # not a subtle change


def test_thumbnails_in_parallel_keep_order_and_return_errors(layout):
    root, inside, outside = layout
    others = []
    for i in range(5):
        p = root / "b" / f"shot_{i:02d}.png"
        write_png(p, (10 * i, 100, 100), i, size=(300, 200))
        others.append(str(p))
    paths = [others[0], str(outside), *others[1:], str(inside)]
    got = images.thumbnails((str(root),), paths, 64)
    assert isinstance(got[1], images.ImageAccessError)
    expected = [images.encode_thumbnail(p, 64) for p in [others[0], *others[1:], str(inside)]]
    assert [g for i, g in enumerate(got) if i != 1] == expected
