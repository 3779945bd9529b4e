"""Command-line options generated from a dataclass: one option per field, help from the class docstring.

Why: a CLI that restates a config dataclass by hand (flag, type, default copied into the help text) drifts from it.
Here the dataclass is the only source: the option's type and choices come from the field's annotation, its help
from the field's line in the class docstring's ``Attributes:`` section (parsed with ``docstring_parser``, the parser
jsonargparse uses for ``unimage fit --help``), and the default shown in the help from the field's default.

Options are plain ``argparse`` (not jsonargparse) so that they keep their established spellings under the
argparse dispatcher of ``unimage``: ``--cfg-interval LOW HIGH`` rather than ``--cfg_interval [LOW,HIGH]``,
``--no-cache`` for a bool, an old short name (``--steps``) beside the field's own (``--num-timesteps``).

A field that is not given on the command line is absent from the namespace (``argparse.SUPPRESS``), so
:func:`given_values` returns only what the user typed and the dataclass keeps the defaults.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Union

import docstring_parser

__all__ = ["add_dataclass_arguments", "field_docs", "flag_of", "given_values"]

_METAVARS: dict[type, str] = {int: "INT", float: "FLOAT", str: "TEXT", Path: "PATH"}


def flag_of(name: str) -> str:
    """The option string of a field: ``num_timesteps`` -> ``--num-timesteps``."""
    return "--" + name.replace("_", "-")


def field_docs(cls: type) -> dict[str, str]:
    """Field name -> its description in the ``Attributes:`` section of ``cls``'s docstring, on one line.

    Raises:
        ValueError: A field of ``cls`` has no entry (every option must say what it does).
    """
    parsed = docstring_parser.parse(cls.__doc__ or "")
    docs = {p.arg_name: " ".join((p.description or "").split()) for p in parsed.params if p.args[0] == "attribute"}
    missing = [f.name for f in dataclasses.fields(cls) if not docs.get(f.name)]
    if missing:
        raise ValueError(f"{cls.__name__}: no line in the docstring's Attributes section for {missing}")
    return docs


def add_dataclass_arguments(
    parser: argparse._ActionsContainer,
    cls: type,
    *,
    only: Iterable[str] | None = None,
    skip: Iterable[str] = (),
    aliases: Mapping[str, Sequence[str]] | None = None,
    options: Mapping[str, Mapping[str, Any]] | None = None,
) -> tuple[str, ...]:
    """Add one option per field of the dataclass ``cls`` to ``parser`` (or an argument group) and return their names.

    Args:
        parser: Where the options go.
        cls: A dataclass whose docstring documents every field under ``Attributes:``.
        only: The fields to add, in this order (default: all fields in declaration order).
        skip: Fields not to add.
        aliases: Field -> further option strings, e.g. ``{"num_timesteps": ["--steps"]}`` (old spellings).
        options: Field -> ``add_argument`` keywords that replace the derived ones (``choices``, ``metavar``, ...).

    Raises:
        ValueError: An unknown field name in ``only``/``skip``/``aliases``/``options``, or an undocumented field.
        TypeError: A field type with no command-line form (give it one through ``options``).
    """
    aliases, options, skipped = aliases or {}, options or {}, set(skip)
    by_name = {f.name: f for f in dataclasses.fields(cls)}
    names = list(only) if only is not None else list(by_name)
    unknown = sorted({*names, *skipped, *aliases, *options} - set(by_name))
    if unknown:
        raise ValueError(f"{cls.__name__} has no field(s) {unknown}; fields: {sorted(by_name)}")
    docs, hints = field_docs(cls), typing.get_type_hints(cls)
    added = []
    for name in (n for n in names if n not in skipped):
        kwargs = {**_kwargs_for(cls.__name__, name, hints[name]), **options.get(name, {})}
        if "choices" in options.get(name, {}) and "metavar" not in options[name]:
            kwargs.pop("metavar", None)  # let argparse show the given choices as {a,b}
        default = _default(by_name[name])
        help_text = docs[name]
        if "choices" in kwargs and "metavar" in kwargs:  # argparse shows {a,b} only where no metavar replaces it
            help_text += f" Choices: {', '.join(map(str, kwargs['choices']))}."
        if default is dataclasses.MISSING:
            kwargs["required"] = True
        elif default is not None and default != ():  # None / () mean "not set": the docstring says what happens then
            help_text += f" (default: {_shown(default)})"
        # argparse %-formats help strings: a literal % in a docstring must not be read as a placeholder.
        kwargs.setdefault("help", help_text.replace("%", "%%"))
        parser.add_argument(flag_of(name), *aliases.get(name, ()), dest=name, default=argparse.SUPPRESS, **kwargs)
        added.append(name)
    return tuple(added)


def given_values(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The fields of ``cls`` that were given on the command line, converted to the field types (lists -> tuples)."""
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        if hasattr(args, f.name):
            value = getattr(args, f.name)
            is_tuple = typing.get_origin(_strip_optional(hints[f.name])) is tuple
            out[f.name] = tuple(value) if is_tuple and isinstance(value, list) else value
    return out


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _shown(value: Any) -> str:
    """A default as one would type it: ``0.4 1.0`` for a tuple."""
    if isinstance(value, (tuple, list)):
        return " ".join(str(v) for v in value)
    return str(value)


def _strip_optional(hint: Any) -> Any:
    """``X | None`` -> ``X`` (a field that may be None is given as its X on the command line)."""
    if typing.get_origin(hint) in (Union, types.UnionType):
        rest = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return hint


def _scalar(owner: str, hint: Any) -> dict[str, Any]:
    """``type``/``choices``/``metavar`` of one value of type ``hint``."""
    if typing.get_origin(hint) is Literal:
        values = typing.get_args(hint)
        return {"type": type(values[0]), "choices": values}
    if hint in _METAVARS:
        return {"type": hint, "metavar": _METAVARS[hint]}
    raise TypeError(f"{owner}: no command-line form for {hint!r}; pass one through `options`")


def _kwargs_for(cls_name: str, name: str, hint: Any) -> dict[str, Any]:
    """``add_argument`` keywords of a field from its annotation."""
    owner = f"{cls_name}.{name}"
    hint = _strip_optional(hint)
    if hint is bool:
        return {"action": argparse.BooleanOptionalAction}
    if typing.get_origin(hint) is tuple:
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            # `extend` + nargs="+": `--x a b` and the repeated `--x a --x b` both give (a, b).
            return {"action": "extend", "nargs": "+", **_scalar(owner, args[0])}
        if not args or any(a != args[0] for a in args):
            raise TypeError(f"{owner}: a tuple option needs one element type, got {hint!r}")
        one = _scalar(owner, args[0])
        if "metavar" in one:
            one["metavar"] = (one["metavar"],) * len(args)
        return {"nargs": len(args), **one}
    return _scalar(owner, hint)
