"""TOML configuration validated into typed dataclasses.

A dataclass field may carry ``metadata={"check": fn, "doc": text}``; ``fn(value)`` returns an
error message or None. Every problem becomes a :class:`ConfigError` naming the file and the
dotted key (``instruments[1].baud``), so a technician can find it without reading code.
Unknown keys are errors too (with a did-you-mean), since a typo silently ignored is worse.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import math
import tomllib
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

T = TypeVar("T")


class ConfigError(Exception):
    """A configuration problem, located by file and key."""

    def __init__(self, file: str | Path, key: str | None, problem: str) -> None:
        self.file, self.key, self.problem = str(file), key, problem
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.file}: {self.key}" if self.key else self.file
        return f"{where}: {self.problem}"


def check(fn: Callable[[Any], str | None], doc: str = "") -> dict[str, Any]:
    """Field metadata attaching a validator."""
    return {"check": fn, "doc": doc}


def between(lo: float, hi: float) -> Callable[[float], str | None]:
    return lambda v: None if lo <= v <= hi else f"must be between {lo} and {hi}, got {v}"


def positive(v: float) -> str | None:
    return None if v > 0 else f"must be greater than 0, got {v}"


def non_negative(v: float) -> str | None:
    return None if v >= 0 else f"must not be negative, got {v}"


def read_toml(path: str | Path) -> tuple[dict[str, Any], str]:
    """The parsed TOML document and the SHA-256 of its bytes (the config hash)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(path, None, f"cannot read the file: {exc.strerror or exc}") from None
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(path, None, "not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, None, f"invalid TOML: {exc}") from None
    except RecursionError:  # tomllib recurses once per nested array or inline table
        key, line = _too_deep(data.decode("utf-8"))
        where = f" (line {line})" if line else ""
        raise ConfigError(path, key, f"invalid TOML: arrays or inline tables nested more than {MAX_NESTING} "
                                     f"deep{where}") from None
    return doc, hashlib.sha256(data).hexdigest()


#: how deep arrays and inline tables may nest before a value is called too deep (tomllib itself
#: runs out of stack some hundreds of levels down; no configuration needs more than 3)
MAX_NESTING = 100


def _too_deep(text: str) -> tuple[str | None, int | None]:
    """The dotted key and 1-based line of the first value nested more than :data:`MAX_NESTING`
    deep, for the error message (a rough scan: strings and comments skipped)."""
    table, key, depth, line, i = "", None, 0, 1, 0
    arrays: dict[str, int] = {}  # [[name]] headers seen so far, for name[N]
    while i < len(text):
        c = text[i]
        if c == "\n":
            line += 1
            if depth == 0:
                key = None
        elif c == "#":
            i = text.find("\n", i)
            i = len(text) if i < 0 else i
            continue
        elif c in "\"'":
            end = text.find(c, i + 1)
            while c == '"' and end > 0 and text[end - 1] == "\\":
                end = text.find(c, end + 1)
            i = len(text) if end < 0 else end + 1
            continue
        elif c in "[{" and depth == 0 and key is None:  # a [table] or [[array.of.tables]] header
            close = text.find("\n", i)
            close = len(text) if close < 0 else close
            header = text[i:close].split("#")[0].strip()
            name = header.strip("[] \t\r")
            if header.startswith("[["):
                arrays[name] = arrays.get(name, -1) + 1
                name = f"{name}[{arrays[name]}]"
            table, i = name, close
            continue
        elif c in "[{":
            depth += 1
            if depth > MAX_NESTING:
                return (f"{table}.{key}" if table else key), line
        elif c in "]}":
            depth = max(depth - 1, 0)
        elif c == "=" and depth == 0 and key is None:
            key = text[text.rfind("\n", 0, i) + 1:i].strip()
        i += 1
    return None, None


def build(cls: type[T], raw: Any, file: str | Path, prefix: str = "") -> T:
    """An instance of dataclass ``cls`` from the TOML table ``raw``, or a :class:`ConfigError`."""
    where = prefix.rstrip(".") or None
    if not isinstance(raw, dict):
        raise ConfigError(file, where, f"must be a table, got {_kind(raw)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for key in raw:
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f"; known keys: {', '.join(fields)}"
            raise ConfigError(file, prefix + key, f"unknown key{hint}")
    values: dict[str, Any] = {}
    for name, f in fields.items():
        key = prefix + name
        if name not in raw:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(file, key, "missing required key")
            continue
        value = _convert(hints[name], raw[name], file, key)
        validator = f.metadata.get("check")
        problem = validator(value) if validator else None
        if problem:
            raise ConfigError(file, key, problem)
        values[name] = value
    obj = cls(**values)
    validate = getattr(obj, "validate", None)
    if validate:
        problems = validate()
        if problems:
            key, problem = problems[0]
            raise ConfigError(file, prefix + key, problem)
    return obj


def _kind(value: Any) -> str:
    return {dict: "a table", list: "an array", str: "a string", bool: "a boolean", int: "an integer",
            float: "a number"}.get(type(value), type(value).__name__)


def _convert(tp: Any, value: Any, file: str | Path, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:  # X | None: X's own error, which names the key inside a table
            return _convert(options[0], value, file, key)
        errors = []
        for option in options:
            try:
                return _convert(option, value, file, key)
            except ConfigError as exc:
                errors.append(exc.problem)
        raise ConfigError(file, key, " or ".join(errors))
    if origin is Literal:
        if value in args and type(value) in {type(a) for a in args}:
            return value
        raise ConfigError(file, key, f"must be one of {', '.join(repr(a) for a in args)}, got {value!r}")
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(file, key, f"must be an array, got {_kind(value)}")
        return [_convert(args[0], v, file, f"{key}[{i}]") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(tp):
        return build(tp, value, file, key + ".")
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            if not math.isfinite(value):  # TOML's nan and inf: every threshold or length must be a number
                raise ConfigError(file, key, f"must be a finite number, got {value!r}")
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    else:  # pragma: no cover - a schema bug, not a user error
        raise TypeError(f"unsupported config type {tp!r} for {key}")
    names = {bool: "a boolean (true/false)", int: "an integer", float: "a number", str: "a string"}
    raise ConfigError(file, key, f"must be {names[tp]}, got {_kind(value)} {value!r}")
