"""Hold a value parsed from YAML against a type hint; a mismatch names its dotted path and the nearest valid key.

The schema of a sweep file is a tree of dataclasses (`ablations.schema`) whose leaves are plain type hints (``int``,
``str | None``, ``Literal[...]``, ``list[...]``, ``tuple[...]``); the ``train`` section adds the options of the
``unimage fit`` parser (`ablations.schema_fit`). :func:`check` walks a value and that tree together, so every typo
and every wrong type fails when the sweep is loaded, with a message such as::

    sweep smoke.yaml: base.train.model: unknown key 'icl_step' (did you mean 'icl_steps'?)
    sweep smoke.yaml: arms.no_id.overrides: unknown key 'train.model.id_prompt' (did you mean 'train.model.id_prompting'?)
    sweep smoke.yaml: base.generate.sampling.num_timesteps: expected int, got '10' (str)

Only the shape and the types are checked here; values that are well typed but out of range are refused by the
dataclasses themselves (``SynthStoryConfig``, ``SamplingConfig``) and by the semantic checks of `ablations.config`.
A class that is not a dataclass (a Lightning logger, a ``timedelta``) accepts anything here: the parser that owns it
checks it.
"""

from __future__ import annotations

import dataclasses
import difflib
import pathlib
import types
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, Union

__all__ = ["At", "Key", "SweepError", "check", "check_dotted", "closest", "record_of"]


class SweepError(ValueError):
    """A sweep file is malformed; the message names the file and the key."""


@dataclass(frozen=True)
class Key:
    """One key of a mapping: its type hint, and whether it must be given (a non-empty value)."""

    hint: Any
    required: bool = False


#: A mapping's keys by name, or a function that builds them on first use (the ``unimage fit`` options).
Fields = Mapping[str, Key]


def closest(name: str, options: Iterable[str]) -> str | None:
    """The option nearest to ``name`` (``difflib.get_close_matches``, cutoff 0.6), or None."""
    found = difflib.get_close_matches(name, sorted(options), n=1, cutoff=0.6)
    return found[0] if found else None


@dataclass(frozen=True)
class At:
    """Where a value sits: the file, its dotted location in the file, and (inside one dotted override) its key.

    ``base.train.model`` is a location; in ``arms.a.overrides: {train.model.lr: 1}`` the location is
    ``arms.a.overrides`` and the key ``train.model.lr``, so a message quotes the key as the user wrote it.
    """

    where: str
    path: str = ""
    key: str | None = None

    def child(self, name: str) -> At:
        """The location of ``name`` inside this one."""
        if self.key is None:
            return At(self.where, f"{self.path}.{name}" if self.path else name)
        return At(self.where, self.path, f"{self.key}.{name}" if self.key else name)

    def fail(self, message: str) -> NoReturn:
        """Raise :class:`SweepError` about the value here."""
        spot = self.path if self.key is None else f"{self.path}: {self.key}" if self.key else self.path
        raise SweepError(f"{self.where}: {spot}: {message}" if spot else f"{self.where}: {message}")

    def unknown(self, name: str, options: Iterable[str]) -> NoReturn:
        """Raise about a key that is not one of ``options``, with the nearest valid key when there is one."""
        options = list(options)
        prefix = "" if self.key is None else f"{self.key}." if self.key else ""
        near = closest(name, options)
        hint = f" (did you mean '{prefix}{near}'?)" if near else f"; allowed: {sorted(options)}"
        message = f"unknown key '{prefix}{name}'{hint}"
        raise SweepError(f"{self.where}: {self.path}: {message}" if self.path else f"{self.where}: {message}")


class _WithExtra(Mapping[str, Key]):
    """A dataclass's own keys plus the ones ``extra`` returns, built only when a key beyond the own ones is asked for
    (``train.config`` is checked without importing Lightning; ``train.model`` needs the fit parser)."""

    def __init__(self, own: dict[str, Key], extra: Callable[[], Fields]) -> None:
        self.own, self._extra = own, extra

    def _all(self) -> Fields:
        return {**self._extra(), **self.own}

    def __getitem__(self, name: str) -> Key:
        return self.own[name] if name in self.own else self._all()[name]

    def __contains__(self, name: object) -> bool:
        return name in self.own or name in self._all()

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())


def _required(fields: Fields) -> list[str]:
    own = fields.own if isinstance(fields, _WithExtra) else fields
    return [k for k, key in own.items() if key.required]


def record_of(cls: type) -> Fields:
    """The keys of a dataclass: each field's hint (or the dataclass named by its ``schema`` metadata), required when
    it has no default; plus, when the class defines ``extra_keys()``, the keys that function returns (on demand)."""
    hints = typing.get_type_hints(cls)
    out: dict[str, Key] = {}
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        schema = f.metadata.get("schema")
        if schema is not None:  # a dict stored as given, whose keys are the fields of another dataclass
            hint = Union[schema, None] if _allows_none(hint) else schema  # noqa: UP007 (a runtime union of types)
        missing = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        out[f.name] = Key(hint, required=missing)
    extra: Callable[[], Fields] | None = getattr(cls, "extra_keys", None)
    return out if extra is None else _WithExtra(out, extra)


def _allows_none(hint: Any) -> bool:
    return hint is type(None) or (_is_union(hint) and type(None) in typing.get_args(hint))


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (Union, types.UnionType)


def describe(hint: Any) -> str:
    """A short human name of a type hint (``int``, ``'full' or 'lite'``, ``a list of int``)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is type(None):
        return "null"
    if _is_union(hint) or origin is typing.Literal:
        members = args if _is_union(hint) else (hint,)
        literals = [a for m in members if typing.get_origin(m) is typing.Literal for a in typing.get_args(m)]
        named = [" or ".join(map(repr, literals)) if len(literals) <= 3 else f"one of {literals}"] if literals else []
        named += [describe(m) for m in members if typing.get_origin(m) is not typing.Literal]
        return " or ".join(dict.fromkeys(named))
    if origin in (list, tuple, Sequence, Iterable) or hint in (list, tuple):
        inner = [a for a in args if a is not Ellipsis]
        return f"a list of {describe(inner[0])}" if inner else "a list"
    if origin is dict or hint is dict or isinstance(hint, Mapping) or dataclasses.is_dataclass(hint):
        return "a mapping"
    return getattr(hint, "__name__", str(hint))


def _got(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def check(hint: Any, value: Any, at: At) -> None:
    """Raise :class:`SweepError` unless ``value`` (parsed YAML) fits ``hint``; see the module docstring.

    A dataclass hint (or a ``Mapping[str, Key]``) takes a mapping of some of its keys, all of the required ones; a
    union takes a value that fits one member (when only one member has the value's shape, that member's message is
    the one raised, so a typo inside ``PackerConfig | None`` still names the key).
    """
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any or isinstance(hint, (typing.TypeVar, str, typing.ForwardRef)):
        return
    if _is_union(hint):
        _check_union(hint, value, at)
    elif isinstance(hint, Mapping) or dataclasses.is_dataclass(hint):
        fields = hint if isinstance(hint, Mapping) else record_of(typing.cast(type, hint))
        _check_record(fields, value, at)
    elif origin is typing.Literal:
        if not any(value == a and type(value) is type(a) for a in args):
            at.fail(f"{value!r} is not one of {list(args)}" + _near(value, args))
    elif origin in (list, tuple, Sequence, Iterable) or hint in (list, tuple):
        _check_sequence(hint, value, at)
    elif origin is dict or hint is dict:
        if not isinstance(value, dict):
            at.fail(f"expected a mapping, got {_got(value)}")
        for k, v in value.items():
            check(args[1] if args else Any, v, at.child(str(k)))
    elif hint in _SCALARS and not _SCALARS[hint](value):
        at.fail(f"expected {describe(hint)}, got {_got(value)}")
    # any other class (a Lightning logger, a timedelta): its own parser checks it


_SCALARS: dict[Any, Callable[[Any], bool]] = {
    type(None): lambda v: v is None,
    bool: lambda v: isinstance(v, bool),
    int: lambda v: isinstance(v, int) and not isinstance(v, bool),
    float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    str: lambda v: isinstance(v, str),
    pathlib.Path: lambda v: isinstance(v, str),
}


def _near(value: Any, options: Iterable[Any]) -> str:
    near = closest(value, [o for o in options if isinstance(o, str)]) if isinstance(value, str) else None
    return f" (did you mean {near!r}?)" if near else ""


def _shape(hint: Any) -> type | tuple[type, ...] | None:
    """The Python type a YAML value of ``hint`` has, when it is a container (for picking a union member)."""
    origin = typing.get_origin(hint)
    if isinstance(hint, Mapping) or dataclasses.is_dataclass(hint) or origin is dict or hint is dict:
        return dict
    if origin in (list, tuple, Sequence, Iterable) or hint in (list, tuple):
        return (list, tuple)
    return None


def _check_union(hint: Any, value: Any, at: At) -> None:
    members = typing.get_args(hint)
    errors: list[SweepError] = []
    for member in members:
        try:
            check(member, value, at)
            return
        except SweepError as e:
            errors.append(e)
    shaped = [e for m, e in zip(members, errors) if (s := _shape(m)) is not None and isinstance(value, s)]
    if len(shaped) == 1:
        raise shaped[0]
    literals = [a for m in members if typing.get_origin(m) is typing.Literal for a in typing.get_args(m)]
    at.fail(f"expected {describe(hint)}, got {_got(value)}{_near(value, literals)}")


def _check_record(fields: Fields, value: Any, at: At) -> None:
    if not isinstance(value, dict):
        at.fail(f"expected a mapping with keys {sorted(fields)}, got {_got(value)}")
    for k, v in value.items():
        if not isinstance(k, str) or k not in fields:
            at.unknown(str(k), fields)
        check(fields[k].hint, v, at.child(k))
    for k in _required(fields):
        if value.get(k) in (None, ""):
            at.child(k).fail("required")


def _check_sequence(hint: Any, value: Any, at: At) -> None:
    kind, args = typing.get_origin(hint) or hint, typing.get_args(hint)
    if not isinstance(value, (list, tuple)):
        at.fail(f"expected {describe(hint)}, got {_got(value)}")
    if kind is tuple and args and args[-1] is not Ellipsis:
        if len(value) != len(args):
            at.fail(f"expected {len(args)} items, got {len(value)}: {value!r}")
        for i, (a, v) in enumerate(zip(args, value)):
            check(a, v, at.child(str(i)))
        return
    for i, v in enumerate(value):
        check(args[0] if args else Any, v, at.child(str(i)))


def check_dotted(root: Fields, dotted: str, value: Any, at: At) -> None:
    """Check one dotted override (``train.model.lr: 1``) against the keys of ``root``.

    Each component must name a key of the mapping reached so far (the nearest one is suggested with the rest of the
    dotted key), a component may not go inside a value that has no keys, and ``value`` must fit the last key.
    """
    parts = dotted.split(".")
    if not all(parts):
        at.fail(f"bad override key {dotted!r} (empty component)")
    fields: Fields = root
    for i, part in enumerate(parts):
        if part not in fields:
            rest = ".".join(parts[i + 1 :])
            near = closest(part, fields)
            full = ".".join([*parts[:i], near, *([rest] if rest else [])]) if near else None
            hint = f" (did you mean {full!r}?)" if full else f"; allowed under it: {sorted(fields)}"
            raise SweepError(f"{at.where}: {at.path}: unknown key {dotted!r}{hint}")
        hint_here = fields[part].hint
        if i == len(parts) - 1:
            check(hint_here, value, At(at.where, at.path, dotted))
            return
        nested = _record_in(hint_here)
        if nested is None:
            if _opaque(hint_here):  # e.g. trainer.logger.init_args.*: the fit parser checks it
                return
            prefix = ".".join(parts[: i + 1])
            At(at.where, at.path).fail(f"override {dotted!r}: {prefix!r} is {describe(hint_here)}, not a mapping")
        fields = nested


def _record_in(hint: Any) -> Fields | None:
    """The keys of the mapping type inside ``hint`` (a dataclass, possibly optional), or None."""
    if isinstance(hint, Mapping):
        return hint
    if dataclasses.is_dataclass(hint):
        return record_of(typing.cast(type, hint))
    if _is_union(hint):
        found = [r for a in typing.get_args(hint) if (r := _record_in(a)) is not None]
        return found[0] if len(found) == 1 else None
    return None


def _opaque(hint: Any) -> bool:
    """Whether ``hint`` may hold a mapping whose keys this module does not know (``Any``, ``dict``, a class)."""
    if _is_union(hint):
        return any(_opaque(a) for a in typing.get_args(hint))
    origin = typing.get_origin(hint)
    if hint is Any or origin is dict or hint is dict:
        return True
    return isinstance(hint, type) and hint not in _SCALARS and origin is None
