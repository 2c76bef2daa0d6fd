"""The machinery behind the config schema: typed fields, value checks and the strict object reader.

Every schema dataclass declares its keys with :func:`val`, :func:`sub` and :func:`opt_sub`; the reader
walks those declarations, so the key names, defaults, rules, secrecy and unknown-key detection all
come from one place. Errors are collected (never raised one by one) so a user sees every mistake in
one run, each named by the full path as written in the file.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

PathPart = str | int
Render = Callable[[tuple[PathPart, ...]], str]
Check = Callable[[Any, "Ctx"], Any]
T = TypeVar("T")

_E164 = re.compile(r"^\+[1-9]\d{1,14}$")
# A subset of what the outbound guard accepts, so a valid config never trips it at dial time.
_NUMBER_PATTERN = re.compile(r"^(\*|\+[1-9]\d{0,14}\*?)$")


class ConfigError(Exception):
    """The configuration is unusable; ``errors`` lists every problem found, one message each."""

    def __init__(self, errors: Sequence[str]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))


class Invalid(Exception):
    """A value broke its rule; the message is phrased to follow '<path>: '."""


def join_path(prefix: tuple[PathPart, ...], path: tuple[PathPart, ...]) -> str:
    out = ""
    for part in (*prefix, *path):
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


@dataclass(slots=True)
class Ctx:
    """Where a value sits (for messages) and where errors go."""

    render: Render
    errors: list[str]
    failed: set[tuple[PathPart, ...]]
    path: tuple[PathPart, ...] = ()
    source: str = ""  # " (from ENV_NAME)" when the value came from the environment

    def child(self, part: PathPart) -> Ctx:
        return Ctx(self.render, self.errors, self.failed, (*self.path, part))

    def where(self) -> str:
        return self.render(self.path) + self.source

    def where_key(self, key: str) -> str:
        """The path of the object holding ``key``, as the file that supplied ``key`` spells it."""
        full = self.render((*self.path, key))
        return full[: -len(key) - 1] if full.endswith("." + key) else ""

    def error(self, message: str) -> None:
        self.failed.add(self.path)
        where = self.where()
        self.errors.append(f"{where}: {message}" if where else message)


# -- describing values without leaking them ------------------------------------------------------


def describe(value: Any, *, secret: bool = False) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "a list"
    if secret:
        return (
            "a string"
            if isinstance(value, str)
            else ("a number" if isinstance(value, int | float) else "a value")
        )
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# -- checks --------------------------------------------------------------------------------------


def boolean() -> Check:
    def check(value: Any, ctx: Ctx) -> bool:
        if not isinstance(value, bool):
            raise Invalid(f"expected true or false, got {describe(value)}")
        return value

    return check


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return None


def integer(*, minimum: int | None = None, maximum: int | None = None, label: str | None = None) -> Check:
    if label is None:
        if minimum is not None and maximum is not None:
            label = f"an integer {minimum}..{maximum}"
        elif minimum == 1:
            label = "an integer > 0"
        elif minimum is not None:
            label = f"an integer >= {minimum}"
        else:
            label = "an integer"

    def check(value: Any, ctx: Ctx) -> int:
        number = _as_int(value)
        if (
            number is None
            or (minimum is not None and number < minimum)
            or (maximum is not None and number > maximum)
        ):
            raise Invalid(f"expected {label}, got {describe(value)}")
        return number

    return check


def port() -> Check:
    return integer(minimum=0, maximum=65535, label="a port number 0..65535 (0 = any free port)")


def number(*, minimum: float, maximum: float) -> Check:
    def check(value: Any, ctx: Ctx) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise Invalid(f"expected a number {minimum:g}..{maximum:g}, got {describe(value)}")
        if not minimum <= value <= maximum:
            raise Invalid(f"expected a number {minimum:g}..{maximum:g}, got {describe(value)}")
        return float(value)

    return check


def string(*, min_len: int = 0, secret: bool = False) -> Check:
    def check(value: Any, ctx: Ctx) -> str:
        if not isinstance(value, str):
            raise Invalid(f"expected a string, got {describe(value, secret=secret)}")
        if len(value) < min_len:
            raise Invalid("must not be empty")
        return value

    return check


def enum(*choices: str) -> Check:
    listed = ", ".join(repr(c) for c in choices)

    def check(value: Any, ctx: Ctx) -> str:
        if not isinstance(value, str) or value not in choices:
            raise Invalid(f"expected one of {listed}, got {describe(value)}")
        return value

    return check


def e164() -> Check:
    def check(value: Any, ctx: Ctx) -> str:
        if not isinstance(value, str) or not _E164.match(value):
            raise Invalid(f"expected an E.164 phone number like +15551234567, got {describe(value)}")
        return value

    return check


def time_zone() -> Check:
    def check(value: Any, ctx: Ctx) -> str:
        if isinstance(value, str) and value:
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError):
                pass
            else:
                return value
        raise Invalid(f"expected an IANA time zone name like 'America/New_York', got {describe(value)}")

    return check


def number_pattern() -> Check:
    def check(value: Any, ctx: Ctx) -> str:
        if not isinstance(value, str) or not _NUMBER_PATTERN.match(value):
            raise Invalid(
                f"expected an E.164 number or prefix ending in '*' (e.g. +1555*), got {describe(value)}"
            )
        return value

    return check


def url() -> Check:
    def check(value: Any, ctx: Ctx) -> str:
        try:
            parts = urlsplit(value) if isinstance(value, str) else None
            ok = parts is not None and parts.scheme in ("http", "https") and bool(parts.hostname)
        except ValueError:
            ok = False
        if not ok:
            # A URL may carry user:password@; never echo one back.
            shown = "a URL with credentials" if isinstance(value, str) and "@" in value else describe(value)
            raise Invalid(f"expected an http(s) URL with a host, got {shown}")
        return str(value)

    return check


def url_path() -> Check:
    """A webhook/WebSocket path: absolute, and a trailing slash is normalised away."""

    def check(value: Any, ctx: Ctx) -> str:
        if not isinstance(value, str) or not value.startswith("/") or any(c in value for c in "?# "):
            raise Invalid(f"expected a URL path starting with '/', got {describe(value)}")
        return value.rstrip("/") or "/"

    return check


def expand_home(text: str, home: str | None) -> Path:
    if home and (text == "~" or text.startswith("~/")):
        return Path(home + text[1:])
    return Path(text).expanduser()


def file_path(*, must_exist: bool = False) -> Check:
    def check(value: Any, ctx: Ctx) -> Path:
        if not isinstance(value, str) or not value:
            raise Invalid(f"expected a file path, got {describe(value)}")
        path = Path(value).expanduser()
        if must_exist and not path.is_file():
            raise Invalid(f"file {str(path)!r} does not exist")
        return path

    return check


def list_of(item: Check) -> Check:
    def check(value: Any, ctx: Ctx) -> tuple[Any, ...]:
        if not isinstance(value, list | tuple):
            raise Invalid(f"expected a list, got {describe(value)}")
        out = []
        for index, element in enumerate(value):
            sub = ctx.child(index)
            try:
                out.append(item(element, sub))
            except Invalid as err:
                sub.error(str(err))
        return tuple(out)

    return check


def objects_of(cls: type[Any], *, non_empty: bool = False) -> Check:
    def check(value: Any, ctx: Ctx) -> tuple[Any, ...]:
        if not isinstance(value, list | tuple):
            raise Invalid(f"expected a list of objects, got {describe(value)}")
        if non_empty and not value:
            raise Invalid("must list at least one entry")
        return tuple(read_object(cls, element, ctx.child(index)) for index, element in enumerate(value))

    return check


# -- field declarations --------------------------------------------------------------------------


def val(default: Any, check: Check, *, key: str | None = None, secret: bool = False) -> Any:
    meta = {"check": check, "key": key, "secret": secret}
    if isinstance(default, tuple | list):
        return field(default=tuple(default), repr=not secret, metadata=meta)
    return field(default=default, repr=not secret, metadata=meta)


def required(check: Check, *, key: str | None = None) -> Any:
    return field(metadata={"check": check, "key": key, "secret": False})


def sub(cls: type[Any], *, key: str | None = None) -> Any:
    return field(default_factory=cls, metadata={"nested": cls, "key": key})


def opt_sub(cls: type[Any], *, key: str | None = None) -> Any:
    return field(default=None, metadata={"nested": cls, "key": key, "optional": True})


def internal(default_factory: Callable[[], Any]) -> Any:
    """A field computed by the loader, not a config key."""
    return field(default_factory=default_factory, metadata={"internal": True})


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def key_of(f: dataclasses.Field[Any]) -> str:
    return str(f.metadata.get("key") or camel(f.name))


def config_fields(cls: type[Any]) -> list[dataclasses.Field[Any]]:
    return [f for f in dataclasses.fields(cls) if not f.metadata.get("internal")]


def field_named(cls: type[Any], name: str) -> dataclasses.Field[Any]:
    return next(f for f in dataclasses.fields(cls) if f.name == name)


# -- the strict reader ---------------------------------------------------------------------------


def unknown_key_message(key: str, known: Sequence[str], hints: Mapping[str, str] | None = None) -> str:
    text = f"unknown key {key!r}"
    if hints and key in hints:
        return f"{text} ({hints[key]})"
    match = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if not match:
        lowered = {k.lower(): k for k in known}
        match = [lowered[key.lower()]] if key.lower() in lowered else []
    return f"{text} (did you mean {match[0]!r}?)" if match else text


def read_fields(
    cls: type[Any], raw: Any, ctx: Ctx, *, hints: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Every declared field of ``cls`` read from ``raw`` (defaults where absent or invalid)."""
    fields = config_fields(cls)
    if not isinstance(raw, Mapping):
        ctx.error(f"expected an object, got {describe(raw)}")
        raw = {}
    by_key = {key_of(f): f for f in fields}
    for key in raw:
        if key not in by_key:
            where = ctx.where_key(str(key))
            message = unknown_key_message(str(key), list(by_key), hints)
            ctx.errors.append(f"{where}: {message}" if where else message.replace("key", "top-level key", 1))
    values: dict[str, Any] = {}
    for key, f in by_key.items():
        sub_ctx = ctx.child(key)
        present = key in raw
        value = raw.get(key)
        nested = f.metadata.get("nested")
        if nested is not None:
            if not present or (value is None and f.metadata.get("optional")):
                values[f.name] = None if f.metadata.get("optional") else nested()
            else:
                values[f.name] = read_object(nested, value, sub_ctx)
            continue
        no_default = f.default is dataclasses.MISSING
        if not present or (value is None and f.default is None):
            if no_default:
                sub_ctx.failed.add(sub_ctx.path)
                ctx.errors.append(f"{sub_ctx.where()} is required")
            values[f.name] = None if no_default else f.default
            continue
        try:
            values[f.name] = f.metadata["check"](value, sub_ctx)
        except Invalid as err:
            sub_ctx.error(str(err))
            values[f.name] = None if no_default else f.default
    return values


def read_object(cls: type[T], raw: Any, ctx: Ctx) -> T:
    # A required key that is missing or invalid is None here; the load then fails, so such an
    # instance is only used to keep walking and collect the remaining errors.
    return cls(**read_fields(cls, raw, ctx))
