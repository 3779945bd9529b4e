"""``per_story.json`` (`formats.perstory`): known-answer values, the file round trip, and clear errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from formats.perstory import ColumnParts, read_per_story, write_per_story


def test_values_known_answers() -> None:
    mean = ColumnParts(100.0, ("self_csd",), {"01": ((0.2, 1.0),), "02": ((0.4, 1.0),), "03": ((0.0, 0.0),)})
    assert mean.value() == pytest.approx(30.0)  # story 03 has no value and is skipped
    assert mean.value(["02", "02", "01"]) == pytest.approx(100 * (0.4 + 0.4 + 0.2) / 3)  # repeats count
    assert math.isnan(mean.value(["03"]))
    # pooled characters: (Σ over the story's characters, n characters) → the mean over all characters of the split
    pooled = ColumnParts(100.0, ("self",), {"01": ((1.5, 3.0),), "02": ((0.2, 1.0),)})
    assert pooled.value() == pytest.approx(100 * 1.7 / 4)
    # Alignment: 25 × the mean of four sub-score means; NaN when a sub-score has no value
    align = ColumnParts(
        25.0, ("a", "b", "c", "d"), {"01": ((4.0, 1.0), (2.0, 1.0), (3.0, 1.0), (1.0, 1.0)), "02": ((2.0, 1.0),) * 4}
    )
    assert align.component_ratios() == [3.0, 2.0, 2.5, 1.5]
    assert align.value() == 25.0 * (3.0 + 2.0 + 2.5 + 1.5) / 4
    partial = ColumnParts(25.0, ("a", "b"), {"01": ((4.0, 1.0), (0.0, 0.0))})
    assert math.isnan(partial.value())


def test_round_trip_and_errors(tmp_path: Path) -> None:
    cols = {
        "csd_self": ColumnParts(100.0, ("self_csd",), {"01": ((0.25, 1.0),), "02": ((0.5, 1.0),)}),
        "occm": ColumnParts(1.0, ("occm",), {"02": ((88.0, 1.0),)}),
    }
    path = write_per_story(tmp_path, "B", cols)
    assert path == tmp_path / "per_story.json"
    back = read_per_story(tmp_path)
    assert back is not None and back.era == "B" and back.columns == cols
    assert list(back.columns["csd_self"].stories) == ["01", "02"]  # story order kept
    assert read_per_story(tmp_path / "elsewhere") is None
    with pytest.raises(ValueError, match=r"2 \(num, den\) pairs for 1 components"):
        ColumnParts(1.0, ("x",), {"01": ((1.0, 1.0), (1.0, 1.0))})
    data = json.loads(path.read_text())
    data["columns"]["occm"]["stories"]["02"] = [[1.0]]
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"per_story\.json: column 'occm': malformed column"):
        read_per_story(tmp_path)
    path.write_text(json.dumps({"format": 99, "columns": {}}))
    with pytest.raises(ValueError, match="format 99"):
        read_per_story(tmp_path)
    path.write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_per_story(tmp_path)
