"""Target parameters: declared once per target, validated in one place.

A target lists what it accepts as `Param`s in ``Target.PARAMS``; the base
constructor runs `validate_params`, so every target refuses an unknown name,
a value of the wrong type and a value out of range with the same kind of
sentence -- whether the values come from the command line (text) or from
Python (typed values).  ``mico targets --json`` lists the declarations, so the
help a user reads is the code that checks them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

from .errors import ParamError


# ---- parsers: a typed value or its text -> the value; ValueError(what it must be) ---------------
def integer(v: Any) -> int:
    """An int, or text in decimal (leading zeros allowed) or with a 0x/0o/0b prefix."""
    if isinstance(v, bool):
        raise ValueError("an integer")
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    s = str(v).strip().replace("_", "")
    try:
        return int(s, 10)
    except ValueError:
        pass
    try:
        return int(s, 0)
    except ValueError:
        raise ValueError("an integer") from None


def number(v: Any) -> float:
    """A finite real number."""
    if isinstance(v, bool):
        raise ValueError("a number")
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise ValueError("a number") from None
    if not math.isfinite(f):
        raise ValueError("a finite number")
    return f


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def boolean(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    s = str(v).strip().lower()
    if s in _TRUE:
        return True
    if s in _FALSE:
        return False
    raise ValueError(f"true or false ({'/'.join(_TRUE)} or {'/'.join(_FALSE)})")


def text(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return ",".join(str(x) for x in v)
    return str(v)


_TYPE_NAMES = {integer: "int", number: "float", boolean: "bool", text: "str"}


# ---- range checks: value -> "" or why it is out of range ------------------------------------------
def between(lo: float, hi: float) -> Callable[[Any], str]:
    def check(v) -> str:
        return "" if lo <= v <= hi else f"is out of range ({lo} .. {hi})"
    return check


def at_least(lo: float) -> Callable[[Any], str]:
    def check(v) -> str:
        return "" if v >= lo else f"must be at least {lo}"
    return check


def positive(v) -> str:
    return "" if v > 0 else "must be positive"


@dataclass(frozen=True)
class Param:
    """One parameter of a target.

    ``default`` None means "not set": the target decides (and the value stays
    None in ``Target.params``).  ``in_fingerprint`` says whether the value is
    hashed into the build fingerprint as given; it is False for bounds on wall
    time (they change no number) and for values whose effect is hashed by
    content elsewhere (a core's Verilog, a board profile).
    """

    name: str
    type: Callable[[Any], Any] = text
    default: Any = None
    help: str = ""
    in_fingerprint: bool = True
    check: Callable[[Any], str] | None = None

    @property
    def type_name(self) -> str:
        return _TYPE_NAMES.get(self.type, getattr(self.type, "__name__", "value"))

    def parse(self, raw: Any, owner: str) -> Any:
        try:
            v = self.type(raw)
        except ValueError as e:
            raise ParamError(f"{owner}: parameter {self.name}={raw!r} must be {e}.") from None
        why = self.check(v) if self.check else ""
        if why:
            raise ParamError(f"{owner}: parameter {self.name}={v!r} {why}.")
        return v

    def describe(self) -> dict:
        return {"name": self.name, "type": self.type_name, "default": self.default, "help": self.help,
                "in_fingerprint": self.in_fingerprint}


def validate_params(declared: Iterable[Param], given: Mapping[str, Any], owner: str = "the target") -> dict:
    """Every declared name -> its parsed value (or its default); unknown names are refused."""
    decl = {p.name: p for p in declared}
    unknown = sorted(set(given) - set(decl))
    if unknown:
        takes = f"it takes {', '.join(sorted(decl))}" if decl else "it takes none"
        raise ParamError(f"{owner} has no parameter {unknown[0]!r}; {takes}.")
    out = {}
    for name, p in decl.items():
        raw = given.get(name)
        out[name] = p.default if raw is None else p.parse(raw, owner)
    return out


def fingerprint_params(declared: Iterable[Param], values: Mapping[str, Any]) -> dict:
    """The values that are hashed into the fingerprint as given."""
    return {p.name: values.get(p.name) for p in declared if p.in_fingerprint}


def parse_assignments(items: Iterable[str]) -> dict[str, str]:
    """``KEY=VALUE`` texts (the CLI's ``--param``) -> {KEY: VALUE}; values stay text for `validate_params`."""
    out: dict[str, str] = {}
    for it in items:
        key, eq, value = str(it).partition("=")
        key = key.strip()
        if not eq or not key:
            raise ParamError(f"{it!r} must look like KEY=VALUE.")
        if key in out:
            raise ParamError(f"parameter {key} is given twice ({key}={out[key]} and {key}={value}).")
        out[key] = value
    return out
