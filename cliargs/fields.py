"""Command-line options generated from a dataclass or a function: one option per field (or parameter).

Why: a CLI that restates a config dataclass by hand (flag, type, default copied into the help text) drifts from it.
Here the declaration is the only source: the option's type and choices come from the annotation, its help from the
entry in the docstring (``Attributes:`` of a dataclass, ``Args:`` of a function; parsed with ``docstring_parser``,
the parser jsonargparse uses for ``unimage fit --help``), and the default shown in the help from the declared one.

Options are plain ``argparse`` (not jsonargparse) so that they keep their established spellings under the
argparse dispatcher of ``unimage``: ``--cfg-interval LOW HIGH`` rather than ``--cfg_interval [LOW,HIGH]``,
``--no-cache`` for a bool, an old short name (``--steps``) beside the field's own (``--num-timesteps``).

A field that is not given on the command line is absent from the namespace (``argparse.SUPPRESS``), so
:func:`given_values` returns only what the user typed and the declaration keeps its defaults. Read the values with
:func:`given_values` only: the namespace attribute is qualified by the owner (``SamplingConfig.seed``).
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Union

import docstring_parser

__all__ = ["add_dataclass_arguments", "add_function_arguments", "field_docs", "flag_of", "given_values"]

_METAVARS: dict[type, str] = {int: "INT", float: "FLOAT", str: "TEXT", Path: "PATH"}
_REQUIRED = dataclasses.MISSING


@dataclasses.dataclass(frozen=True)
class _Spec:
    """One field or parameter: its name, resolved annotation, default (``_REQUIRED`` when none) and docstring entry."""

    name: str
    hint: Any
    default: Any
    doc: str


def flag_of(name: str) -> str:
    """The option string of a field: ``num_timesteps`` -> ``--num-timesteps``."""
    return "--" + name.replace("_", "-")


def field_docs(obj: Callable[..., Any]) -> dict[str, str]:
    """Name -> its docstring entry on one line: a dataclass's ``Attributes:``, a function's ``Args:``."""
    kind = "attribute" if isinstance(obj, type) else "param"
    parsed = docstring_parser.parse(obj.__doc__ or "")
    return {p.arg_name: " ".join((p.description or "").split()) for p in parsed.params if p.args[0] == kind}


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
    return _add(parser, cls, _specs(cls), only, skip, aliases or {}, options or {})


def add_function_arguments(
    parser: argparse._ActionsContainer,
    func: Callable[..., Any],
    *,
    only: Iterable[str],
    aliases: Mapping[str, Sequence[str]] | None = None,
    options: Mapping[str, Mapping[str, Any]] | None = None,
) -> tuple[str, ...]:
    """Add one option per parameter named in ``only`` of ``func`` (help from its docstring's ``Args:``).

    A parameter without a default is a required option. Same ``aliases``/``options`` as
    :func:`add_dataclass_arguments`; the parameters not in ``only`` are the caller's to pass.

    Raises:
        ValueError: An unknown or undocumented parameter in ``only``.
        TypeError: A parameter type with no command-line form.
    """
    return _add(parser, func, _specs(func), list(only), (), aliases or {}, options or {})


def given_values(args: argparse.Namespace, obj: Callable[..., Any]) -> dict[str, Any]:
    """The fields (parameters) of ``obj`` that were given on the command line, as declared: lists become tuples."""
    out = {}
    for spec in _specs(obj, docs=False).values():
        if hasattr(args, _dest(obj, spec.name)):
            value = getattr(args, _dest(obj, spec.name))
            is_tuple = typing.get_origin(_strip_optional(spec.hint)) is tuple
            out[spec.name] = tuple(value) if is_tuple and isinstance(value, list) else value
    return out


########################################################################################################################
# declarations -> specs -> options
########################################################################################################################


def _dest(obj: Callable[..., Any], name: str) -> str:
    """Namespace attribute of a generated option, qualified by its owner: a function's ``device`` parameter and a
    hand-written ``--device`` of the same command never meet."""
    return f"{obj.__qualname__}.{name}"


def _specs(obj: Callable[..., Any], docs: bool = True) -> dict[str, _Spec]:
    hints = typing.get_type_hints(obj)
    text = field_docs(obj) if docs else {}
    if isinstance(obj, type):
        return {
            f.name: _Spec(f.name, hints[f.name], _field_default(f), text.get(f.name, ""))
            for f in dataclasses.fields(obj)
        }
    out = {}
    for p in inspect.signature(obj).parameters.values():
        default = _REQUIRED if p.default is inspect.Parameter.empty else p.default
        out[p.name] = _Spec(p.name, hints.get(p.name, Any), default, text.get(p.name, ""))
    return out


def _add(
    parser: argparse._ActionsContainer,
    obj: Callable[..., Any],
    specs: Mapping[str, _Spec],
    only: Iterable[str] | None,
    skip: Iterable[str],
    aliases: Mapping[str, Sequence[str]],
    options: Mapping[str, Mapping[str, Any]],
) -> tuple[str, ...]:
    owner, skipped = obj.__name__, set(skip)
    names = list(only) if only is not None else list(specs)
    unknown = sorted({*names, *skipped, *aliases, *options} - set(specs))
    if unknown:
        raise ValueError(f"{owner} has no field(s) {unknown}; fields: {sorted(specs)}")
    names = [n for n in names if n not in skipped]
    undocumented = [n for n in names if not specs[n].doc]
    if undocumented:  # every option must say what it does
        raise ValueError(
            f"{owner}: no docstring entry for {undocumented} (Attributes: of a dataclass, Args: of a function)"
        )
    added = []
    for name in names:
        spec, given = specs[name], options.get(name, {})
        kwargs = {**_kwargs_for(f"{owner}.{name}", spec.hint), **given}
        if "choices" in given and "metavar" not in given:
            kwargs.pop("metavar", None)  # let argparse show the given choices as {a,b}
        kwargs.setdefault("help", _help(spec, kwargs))
        if spec.default is _REQUIRED:
            kwargs["required"] = True
        flags = (flag_of(name), *aliases.get(name, ()))
        parser.add_argument(*flags, dest=_dest(obj, name), default=argparse.SUPPRESS, **kwargs)
        added.append(name)
    return tuple(added)


def _help(spec: _Spec, kwargs: Mapping[str, Any]) -> str:
    text = spec.doc
    if "choices" in kwargs and "metavar" in kwargs:  # argparse shows {a,b} only where no metavar replaces it
        text += f" Choices: {', '.join(map(str, kwargs['choices']))}."
    # None / () mean "not set": the docstring says what happens then.
    if spec.default is not _REQUIRED and spec.default is not None and spec.default != ():
        text += f" (default: {_shown(spec.default)})"
    return text.replace("%", "%%")  # argparse %-formats help strings: a literal % is not a placeholder


def _field_default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return _REQUIRED


def _shown(value: Any) -> str:
    """A default as one would type it: ``0.4 1.0`` for a tuple."""
    if isinstance(value, (tuple, list)):
        return " ".join(str(v) for v in value)
    return str(value)


def _strip_optional(hint: Any) -> Any:
    """``X | None`` -> ``X`` (a value that may be None is given as its X); ``str | Path`` -> ``Path``."""
    if typing.get_origin(hint) in (Union, types.UnionType):
        rest = {a for a in typing.get_args(hint) if a is not type(None)}
        if rest == {str, Path}:
            return Path
        if len(rest) == 1:
            return rest.pop()
    return hint


def _scalar(owner: str, hint: Any) -> dict[str, Any]:
    """``type``/``choices``/``metavar`` of one value of type ``hint``."""
    if typing.get_origin(hint) is Literal:
        values = typing.get_args(hint)
        return {"type": type(values[0]), "choices": values}
    if hint in _METAVARS:
        return {"type": hint, "metavar": _METAVARS[hint]}
    raise TypeError(f"{owner}: no command-line form for {hint!r}; pass one through `options`")


def _kwargs_for(owner: str, hint: Any) -> dict[str, Any]:
    """``add_argument`` keywords of a field from its annotation."""
    hint = _strip_optional(hint)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is bool:
        return {"action": argparse.BooleanOptionalAction}
    if origin in (list, Sequence) or (origin is tuple and len(args) == 2 and args[1] is Ellipsis):
        # `extend` + nargs="+": `--x a b` and the repeated `--x a --x b` both give (a, b).
        return {"action": "extend", "nargs": "+", **_scalar(owner, args[0])}
    if origin is tuple:
        if not args or any(a != args[0] for a in args):
            raise TypeError(f"{owner}: a tuple option needs one element type, got {hint!r}")
        one = _scalar(owner, args[0])
        if "metavar" in one:
            one["metavar"] = (one["metavar"],) * len(args)
        return {"nargs": len(args), **one}
    return _scalar(owner, hint)
