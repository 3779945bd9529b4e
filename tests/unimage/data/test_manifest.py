"""Manifests: the three sample kinds round-trip through JSONL and parquet; bad records are skipped and counted."""

from __future__ import annotations

import io
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests._helpers.data import SMALL
from unimage.data.manifest import (
    InterleavedSample,
    Manifest,
    PairSample,
    SkipCounter,
    TextSample,
    read_records,
    write_manifest,
)


def _rows(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def _same_image(a: Image.Image, b: Image.Image) -> bool:
    return a.size == b.size and bool((np.asarray(a) == np.asarray(b)).all())


def test_generated_manifests_load_every_kind(small_set):
    inter = list(Manifest(small_set / "train/interleaved.jsonl"))
    text = list(Manifest(small_set / "train/text.jsonl"))
    pairs = list(Manifest(small_set / "train/pairs.jsonl"))
    assert (len(inter), len(text), len(pairs)) == (SMALL.train_stories, SMALL.text_stories, SMALL.pairs)
    assert all(isinstance(s, InterleavedSample) for s in inter)
    assert all(isinstance(s, TextSample) for s in text)
    assert all(isinstance(s, PairSample) for s in pairs)
    for s in inter:
        assert len(s.images) == len(s.structure.shots)
        assert all(im.mode == "RGB" and im.size == (SMALL.image_size, SMALL.image_size) for im in s.images)
    assert all(p.structure is not None and len(p.structure.shots) == 1 for p in pairs)


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_round_trip(small_set, tmp_path, suffix):
    root = small_set / "train"
    for name in ("interleaved", "text", "pairs"):
        rows = _rows(root / f"{name}.jsonl")
        out = tmp_path / f"{name}{suffix}"
        assert write_manifest(out, rows) == len(rows)
        assert [r.data for r in read_records(out)] == rows
        original, copy = list(Manifest(root / f"{name}.jsonl")), list(Manifest(out, root=root))
        assert len(original) == len(copy) == len(rows)
        for a, b in zip(original, copy):
            assert type(a) is type(b) and a.id == b.id
            if isinstance(a, InterleavedSample):
                assert a.script == b.script and a.structure == b.structure
                assert all(_same_image(x, y) for x, y in zip(a.images, b.images))
            elif isinstance(a, TextSample):
                assert a.script == b.script and a.structure == b.structure
            else:
                assert a.text == b.text and _same_image(a.image, b.image)


def test_parquet_with_embedded_image_bytes(small_set, tmp_path):
    """Hugging Face `datasets` style: the image column holds {'bytes', 'path'}."""
    rows = _rows(small_set / "train/pairs.jsonl")
    embedded = [
        r | {"image": {"bytes": (small_set / "train" / r["image"]).read_bytes(), "path": r["image"]}} for r in rows
    ]
    write_manifest(tmp_path / "pairs.parquet", embedded)
    got = list(Manifest(tmp_path / "pairs.parquet"))  # no image files beside it: bytes only
    want = list(Manifest(small_set / "train/pairs.jsonl"))
    assert len(got) == len(want) and all(_same_image(a.image, b.image) for a, b in zip(got, want))


@pytest.fixture
def broken(small_set, tmp_path) -> Path:
    """A copy of the training set with one bad record of each kind appended, plus damaged files."""
    root = tmp_path / "train"
    shutil.copytree(small_set / "train", root)
    inter = _rows(root / "interleaved.jsonl")
    good = inter[0]
    # corrupt image: a truncated PNG
    png = root / good["images"][0]
    (root / "images/truncated.png").write_bytes(png.read_bytes()[: len(png.read_bytes()) // 2])
    # not an image at all
    (root / "images/garbage.png").write_bytes(b"this is not a png")
    bad_inter = [
        good | {"id": "missing-file", "images": [*good["images"][:-1], "images/nope.png"]},
        good | {"id": "truncated", "images": ["images/truncated.png", *good["images"][1:]]},
        good | {"id": "garbage", "images": ["images/garbage.png", *good["images"][1:]]},
        good | {"id": "bad-script", "script": good["script"].replace("<Frame2>:", "<Frame7>:")},
        good | {"id": "too-few-images", "images": good["images"][:-1]},
        good | {"id": "images-not-a-list", "images": "images/x.png"},
        good | {"id": "undefined-mention", "script": good["script"].replace("<Character1>", "<Character9>", 2)},
    ]
    lines = [json.dumps(r) for r in inter[:2]]
    lines.insert(1, '{"kind": "interleaved", "id": "cut-off-json", "script": "<User>')
    lines.insert(2, "[1, 2, 3]")
    lines += [json.dumps(r) for r in bad_inter]
    (root / "interleaved.jsonl").write_text("\n".join(lines) + "\n\n")
    text = _rows(root / "text.jsonl")
    bad_text = [
        {"kind": "text", "id": "no-script"},
        {"kind": "text", "id": "empty", "script": "   "},
        {"kind": "text", "id": "prose", "script": "Once upon a time there was no tag at all."},
        {"kind": "poem", "id": "unknown-kind", "script": text[0]["script"]},
        {"kind": "text", "script": text[0]["script"]},  # no id
    ]
    (root / "text.jsonl").write_text("".join(json.dumps(r) + "\n" for r in text[:3] + bad_text))
    pairs = _rows(root / "pairs.jsonl")
    bad_pairs = [
        pairs[0] | {"id": "pair-missing", "image": "images/pairs/none.png"},
        pairs[0] | {"id": "pair-garbage", "image": "images/garbage.png"},
        pairs[0] | {"id": "pair-no-image-field"} | {"image": None},
        pairs[0] | {"id": "pair-two-frames", "text": pairs[0]["text"] + "<Frame2>: another frame.\n"},
        pairs[0] | {"id": "plain-caption", "text": "A red figure in a meadow."},  # plain captions are fine
    ]
    (root / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in pairs[:2] + bad_pairs))
    return root


def test_bad_records_are_skipped_with_counted_reasons(broken, caplog):
    counter = SkipCounter()
    with caplog.at_level(logging.WARNING, logger="unimage.data.manifest"):
        inter = list(Manifest(broken / "interleaved.jsonl", counter=counter))
    assert [s.id for s in inter] == ["train-00000", "train-00001"]
    assert counter.as_dict()["reasons"] == {
        "malformed_record": 3,  # cut-off JSON, a JSON list, images not a list
        "missing_image": 1,
        "unreadable_image": 2,  # truncated PNG, not a PNG
        "malformed_script": 2,  # index-order, undefined mention
        "image_count_mismatch": 1,
    }
    assert counter.kept == 2 and counter.seen == 11
    # every skip is logged with its location and reason
    skipped_logs = [r.getMessage() for r in caplog.records if "skipped record" in r.getMessage()]
    assert len(skipped_logs) == 9
    assert any("interleaved.jsonl:2 [malformed_record] invalid JSON" in m for m in skipped_logs)
    assert any("[missing_image]" in m and "nope.png does not exist" in m for m in skipped_logs)
    assert any("[malformed_script]" in m and "index-order" in m for m in skipped_logs)

    text = list(Manifest(broken / "text.jsonl", counter=counter))
    assert len(text) == 3
    pairs = list(Manifest(broken / "pairs.jsonl", counter=counter))
    assert [p.id for p in pairs] == ["pair-00000", "pair-00001", "plain-caption"]
    assert pairs[-1].structure is None
    reasons = counter.as_dict()["reasons"]
    assert reasons["malformed_record"] == 3 + 4 + 1  # + no-script, empty, unknown kind, no id; + image None
    assert reasons["malformed_script"] == 2 + 1 + 1  # + prose; + two frames in a caption
    assert reasons["missing_image"] == 2 and reasons["unreadable_image"] == 3
    assert counter.kept == 2 + 3 + 3 and counter.skipped == 9 + 5 + 4
    assert "skipped 18" in counter.summary()


def test_load_is_map_style_and_never_raises(broken):
    m = Manifest(broken / "interleaved.jsonl")
    assert len(m) == 11
    results = [m.load(i) for i in range(len(m))]
    assert sum(r is not None for r in results) == 2
    assert m.skips.skipped == 9
    m.load(1)  # the same bad record again counts again (one count per epoch)
    assert m.skips.counts["malformed_record"] == 4


def test_tolerated_problem_codes_and_default_kind(small_set, tmp_path):
    rows = _rows(small_set / "train/text.jsonl")
    noisy = [{"id": r["id"], "script": r["script"].replace("<Character1>:", "<character 1>:", 1)} for r in rows]
    write_manifest(tmp_path / "t.jsonl", noisy)
    strict = Manifest(tmp_path / "t.jsonl", kind="text")
    assert list(strict) == [] and strict.skips.counts["malformed_script"] == len(rows)
    lenient = Manifest(tmp_path / "t.jsonl", kind="text", tolerate={"noncanonical-tag"})
    assert [s.id for s in lenient] == [r["id"] for r in rows]
    missing_kind = Manifest(tmp_path / "t.jsonl")
    assert list(missing_kind) == [] and missing_kind.skips.counts["malformed_record"] == len(rows)


def test_skip_counter_merge_and_validation():
    a, b = SkipCounter(max_examples=2), SkipCounter()
    for i in range(3):
        a.skip("missing_image", f"m:{i}", "gone")
    b.skip("malformed_script", "m:9", "bad")
    b.keep()
    a.merge(b)
    assert a.as_dict() == {
        "seen": 5,
        "kept": 1,
        "skipped": 4,
        "reasons": {"malformed_script": 1, "missing_image": 3},
        "examples": {"malformed_script": ["m:9: bad"], "missing_image": ["m:0: gone", "m:1: gone"]},
    }
    with pytest.raises(ValueError, match="unknown skip reason"):
        a.skip("cosmic_rays", "x", "y")


def test_manifest_level_errors_are_raised(tmp_path):
    with pytest.raises(ValueError, match=r"\.jsonl or \.parquet"):
        read_records(tmp_path / "m.csv")
    with pytest.raises(FileNotFoundError):
        Manifest(tmp_path / "absent.jsonl")
    with pytest.raises(ValueError, match="kind must be one of"):
        Manifest(tmp_path / "absent.jsonl", kind="video")


def test_decoded_image_is_complete(tmp_path):
    """An image that opens lazily but fails on decode (truncated data) is caught at load time."""
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (1, 2, 3)).save(buf, format="PNG")
    (tmp_path / "t.png").write_bytes(buf.getvalue()[:-30])
    write_manifest(tmp_path / "p.jsonl", [{"kind": "pair", "id": "x", "text": "caption", "image": "t.png"}])
    m = Manifest(tmp_path / "p.jsonl")
    assert list(m) == [] and m.skips.counts["unreadable_image"] == 1


def test_manifest_pickles_for_dataloader_workers(small_set):
    """DataLoader workers receive a pickled copy; each counts its own skips, merged afterwards."""
    import pickle

    m = Manifest(small_set / "train/interleaved.jsonl")
    copy = pickle.loads(pickle.dumps(m))
    assert len(copy) == len(m)
    a, b = copy.load(0), m.load(0)
    assert isinstance(a, InterleavedSample) and isinstance(b, InterleavedSample)
    assert a.script == b.script and all(_same_image(x, y) for x, y in zip(a.images, b.images))
    m.skips.merge(copy.skips)
    assert m.skips.kept == 2
