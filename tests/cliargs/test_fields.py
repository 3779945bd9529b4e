"""Options generated from a dataclass: help from the docstring's Attributes, types and defaults from the fields."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest

from cliargs import add_dataclass_arguments, add_function_arguments, field_docs, given_values


@dataclass(frozen=True)
class Knobs:
    """Settings of a made-up command.

    Attributes:
        steps: How many steps to take; at 100% the run
            is complete.
        shift: Timestep shift.
        mode: Which mode runs.
        out: Where results go (None = nowhere).
        interval: Guidance window.
        names: Which names to keep.
        fast: Take the fast path.
        root: The input root.
    """

    root: Path
    steps: int = 50
    shift: float = 3.0
    mode: Literal["a", "b"] = "a"
    out: Path | None = None
    interval: tuple[float, float] = (0.4, 1.0)
    names: tuple[str, ...] = ("x", "y")
    fast: bool = True


@dataclass(frozen=True)
class FewerSteps:
    """The same field with another default.

    Attributes:
        steps: How many steps to take; at 100% the run
            is complete.
    """

    steps: int = 7


def _parser(cls: type = Knobs, **kwargs) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="t")
    add_dataclass_arguments(parser, cls, **kwargs)
    return parser


def _action(parser: argparse.ArgumentParser, flag: str) -> argparse.Action:
    return next(a for a in parser._actions if flag in a.option_strings)


def test_help_is_the_docstring_line_and_the_field_default():
    doc = "How many steps to take; at 100% the run is complete."  # two docstring lines, joined
    assert field_docs(Knobs)["steps"] == doc
    parser = _parser()
    assert _action(parser, "--steps").help == f"{doc.replace('%', '%%')} (default: 50)"
    assert _action(_parser(FewerSteps), "--steps").help.endswith("(default: 7)")  # another default, another help
    assert _action(parser, "--interval").help == "Guidance window. (default: 0.4 1.0)"
    assert _action(parser, "--out").help == "Where results go (None = nowhere)."  # None: the docstring says it
    assert _action(parser, "--root").help == "The input root." and _action(parser, "--root").required
    text = " ".join(parser.format_help().split())  # argparse %-formats help: a literal % must survive
    assert "at 100% the run is complete. (default: 50)" in text


def test_types_choices_and_only_given_values():
    parser = _parser(aliases={"steps": ["--n"]})
    args = parser.parse_args(["--root", "r", "--n", "3", "--interval", "0.1", "0.9", "--no-fast", "--names", "p"])
    assert given_values(args, Knobs) == {
        "root": Path("r"),
        "steps": 3,
        "interval": (0.1, 0.9),
        "names": ("p",),
        "fast": False,
    }
    assert Knobs(**given_values(args, Knobs)).shift == 3.0  # not given: the dataclass default
    repeated = parser.parse_args(["--root", "r", "--names", "p", "--names", "q", "s"])
    assert given_values(repeated, Knobs)["names"] == ("p", "q", "s")
    assert given_values(parser.parse_args(["--root", "r", "--fast"]), Knobs)["fast"] is True
    with pytest.raises(SystemExit):
        parser.parse_args(["--root", "r", "--mode", "c"])  # Literal -> choices
    with pytest.raises(SystemExit):
        parser.parse_args(["--root", "r", "--steps", "x"])  # int
    with pytest.raises(SystemExit):
        parser.parse_args([])  # a field without a default is required


def test_only_skip_and_options():
    parser = _parser(only=["mode", "steps"], options={"mode": {"choices": ("a", "b", "c")}})
    assert [a.option_strings[0] for a in parser._actions[1:]] == ["--mode", "--steps"]
    assert given_values(parser.parse_args(["--mode", "c"]), Knobs) == {"mode": "c"}
    flags = {f for a in _parser(skip=["root"])._actions for f in a.option_strings}
    assert "--root" not in flags and "--steps" in flags


def test_bad_declarations_fail_with_the_name():
    @dataclass
    class Undocumented:
        """One field without a line.

        Attributes:
            a: Documented.
        """

        a: int = 1
        b: int = 2

    with pytest.raises(ValueError, match=r"Undocumented: no docstring entry for \['b'\]"):
        _parser(Undocumented)

    @dataclass
    class Mapping:
        """A field of a type with no command-line form.

        Attributes:
            table: A dict.
        """

        table: dict[str, int] | None = None

    with pytest.raises(TypeError, match=r"Mapping\.table: no command-line form"):
        _parser(Mapping)
    with pytest.raises(ValueError, match=r"Knobs has no field\(s\) \['stepz'\]"):
        _parser(aliases={"stepz": ["--s"]})


def render(root: str | Path, name: str, count: int = 2, *, tags: list[str] | None = None, tiles=None) -> None:
    """Render something.

    Args:
        root: Where the inputs are.
        name: What to call it.
        count: How many.
        tags: Extra tags.
        tiles: Unannotated.
    """


def test_function_parameters_become_options():
    parser = argparse.ArgumentParser()
    assert add_function_arguments(parser, render, only=["root", "name", "count"]) == ("root", "name", "count")
    assert _action(parser, "--count").help == "How many. (default: 2)"
    assert _action(parser, "--root").required and _action(parser, "--root").type is Path  # str | Path -> Path
    args = parser.parse_args(["--root", "r", "--name", "n"])
    assert given_values(args, render) == {"root": Path("r"), "name": "n"}  # count: the signature's default
    tags = argparse.ArgumentParser()
    add_function_arguments(tags, render, only=["tags"])
    assert given_values(tags.parse_args(["--tags", "a", "--tags", "b"]), render) == {"tags": ["a", "b"]}
    with pytest.raises(TypeError, match=r"render\.tiles: no command-line form for typing.Any"):
        add_function_arguments(argparse.ArgumentParser(), render, only=["tiles"])
    with pytest.raises(ValueError, match=r"render has no field\(s\) \['colour'\]"):
        add_function_arguments(argparse.ArgumentParser(), render, only=["colour"])
