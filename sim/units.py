"""Physical quantities written with units, turned into SI floats.

This is the only module that knows that a byte has 8 bits or that giga is 1e9. Inside the
engine everything is SI: seconds, bytes, bytes/s, FLOP, FLOP/s, watts, metres, USD.
Spec files write quantities as strings such as ``"400 Gb/s"``, ``"3.35 TB/s"``,
``"80 GiB"``, ``"700 W"``, ``"1.5 us"``; a bare number where a unit is expected is an error,
because the Gb/s versus GB/s confusion (a factor of 8) is the classic bug of this field.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction as F

from .errors import ConfigError

__all__ = ["parse", "parse_bandwidth", "parse_bytes", "parse_time", "format_si", "KINDS"]

# Factors are exact fractions so that "250 ns" is exactly 250/1e9 s, not 2.5000000000000004e-07.
_DEC = {"k": F(10**3), "K": F(10**3), "M": F(10**6), "G": F(10**9), "T": F(10**12),
        "P": F(10**15), "E": F(10**18)}
_BIN = {"Ki": F(2**10), "Mi": F(2**20), "Gi": F(2**30), "Ti": F(2**40), "Pi": F(2**50)}

# unit symbol (without prefix) -> (kind, factor to SI)
_BASE = {
    "b/s": ("bandwidth", F(1, 8)),  # bits per second -> bytes per second
    "bps": ("bandwidth", F(1, 8)),
    "B/s": ("bandwidth", F(1)),
    "B": ("bytes", F(1)),
    "b": ("bytes", F(1, 8)),
    "FLOP/s": ("flop_rate", F(1)),
    "FLOPS": ("flop_rate", F(1)),
    "OP/s": ("flop_rate", F(1)),
    "FLOP": ("flops", F(1)),
    "W": ("power", F(1)),
    "J": ("energy", F(1)),
    "Wh": ("energy", F(3600)),
    "m": ("length", F(1)),
    "USD": ("money", F(1)),
    "$": ("money", F(1)),
}
_TIME = {
    "s": F(1),
    "ms": F(1, 10**3),
    "us": F(1, 10**6),
    "µs": F(1, 10**6),
    "ns": F(1, 10**9),
    "ps": F(1, 10**12),
    "min": F(60),
    "h": F(3600),
    "d": F(86400),  # days (weeks-long goodput runs)
    "days": F(86400),
}
_LENGTH = {"mm": F(1, 10**3), "cm": F(1, 10**2), "km": F(10**3)}

KINDS = (
    "bandwidth",
    "bytes",
    "time",
    "flop_rate",
    "flops",
    "power",
    "energy",
    "length",
    "money",
)

_NUM = re.compile(r"^\s*([-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)\s*(.*?)\s*$")


def _unit_factor(unit: str) -> tuple[str, F] | None:
    """Return (kind, factor to SI) for a unit symbol, or None if unknown."""
    if unit in _TIME:
        return "time", _TIME[unit]
    if unit in _LENGTH:
        return "length", _LENGTH[unit]
    if unit in _BASE:
        return _BASE[unit]
    for prefix, mult in _BIN.items():
        if unit.startswith(prefix) and unit[len(prefix) :] in ("B", "B/s", "b/s", "b"):
            kind, f = _BASE[unit[len(prefix) :]]
            return kind, f * mult
    if unit and unit[0] in _DEC:
        rest = unit[1:]
        if rest in _BASE:
            kind, f = _BASE[rest]
            if kind == "money":
                return None
            return kind, f * _DEC[unit[0]]
    return None


def parse(value: object, kind: str, *, field: str | None = None, file: str | None = None,
          allow_zero: bool = False, allow_negative: bool = False) -> float:
    """Parse a quantity with a unit into an SI float.

    Parameters
    ----------
    value : str
        A number followed by a unit, e.g. ``"400 Gb/s"`` or ``"80 GiB"``.
    kind : str
        The expected kind of quantity, one of :data:`KINDS`.
    field, file : str, optional
        Where the value came from, for the error message.
    allow_zero, allow_negative : bool
        Whether zero or negative values are acceptable (default: only positive).

    Returns
    -------
    float
        The value in SI units (bytes/s, bytes, seconds, FLOP/s, FLOP, W, J, m, USD).

    Raises
    ------
    ConfigError
        If the value is a bare number, has an unknown unit, a unit of another kind, or is
        zero or negative where that is not allowed.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown quantity kind {kind!r}")
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ConfigError(f"expected a {kind} with a unit, got {value!r}", file=file, field=field)
    if isinstance(value, (int, float)):
        raise ConfigError(
            f"bare number {value!r} has no unit; write it with a unit, e.g. "
            f"{_EXAMPLE[kind]!r}",
            file=file,
            field=field,
        )
    m = _NUM.match(value.replace("_", "").replace(",", ""))
    if not m:
        raise ConfigError(f"cannot read {value!r} as a {kind} (expected e.g. {_EXAMPLE[kind]!r})",
                          file=file, field=field)
    number, unit = m.group(1), m.group(2)
    if not unit:
        raise ConfigError(
            f"{value!r} has no unit; expected a {kind} such as {_EXAMPLE[kind]!r}",
            file=file,
            field=field,
        )
    found = _unit_factor(unit)
    if found is None:
        raise ConfigError(f"unknown unit {unit!r} in {value!r} (expected a {kind} such as "
                          f"{_EXAMPLE[kind]!r})", file=file, field=field)
    got_kind, factor = found
    if got_kind != kind:
        raise ConfigError(f"{value!r} is a {got_kind}, expected a {kind} such as "
                          f"{_EXAMPLE[kind]!r}", file=file, field=field)
    try:
        out = float(F(number) * factor)
    except OverflowError:
        raise ConfigError(f"{value!r} is too large to represent", file=file,
                          field=field) from None
    if not math.isfinite(out):
        raise ConfigError(f"{value!r} is not finite", file=file, field=field)
    if out < 0 and not allow_negative:
        raise ConfigError(f"{value!r} must not be negative", file=file, field=field)
    if out == 0 and not allow_zero:
        raise ConfigError(f"{value!r} must be greater than zero", file=file, field=field)
    return out


_EXAMPLE = {
    "bandwidth": "400 Gb/s",
    "bytes": "80 GiB",
    "time": "1.5 us",
    "flop_rate": "989 TFLOP/s",
    "flops": "3.1 PFLOP",
    "power": "700 W",
    "energy": "1 kWh",
    "length": "3 m",
    "money": "30000 USD",
}


def parse_bandwidth(value: object, **kw) -> float:
    """Parse a bandwidth into bytes per second (``"400 Gb/s"`` -> 5e10)."""
    return parse(value, "bandwidth", **kw)


def parse_bytes(value: object, **kw) -> float:
    """Parse a size into bytes (``"80 GiB"`` -> 85899345920.0)."""
    return parse(value, "bytes", **kw)


def parse_time(value: object, **kw) -> float:
    """Parse a duration into seconds (``"1.5 us"`` -> 1.5e-6)."""
    return parse(value, "time", **kw)


def format_si(value: float, kind: str, digits: int = 3) -> str:
    """Format an SI float for people: bytes/s as Gb/s or GB/s, bytes as GB, s as us.

    Bandwidth is shown in Gb/s below 1 Tb/s (network convention) and in GB/s above; sizes
    in decimal units; times in the largest unit that keeps the number >= 1.
    """
    if kind == "bandwidth":
        bits = value * 8
        if bits < 1e12:
            return f"{bits / 1e9:.{digits}g} Gb/s"
        return f"{value / 1e12:.{digits}g} TB/s" if value >= 1e12 else f"{value / 1e9:.{digits}g} GB/s"
    if kind == "bytes":
        for p, f in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
            if abs(value) >= f:
                return f"{value / f:.{digits}g} {p}B"
        return f"{value:.{digits}g} B"
    if kind == "time":
        for u, f in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6), ("ns", 1e-9)):
            if abs(value) >= f:
                return f"{value / f:.{digits}g} {u}"
        return f"{value / 1e-12:.{digits}g} ps"
    if kind == "power":
        return f"{value / 1e3:.{digits}g} kW" if value >= 1e3 else f"{value:.{digits}g} W"
    if kind == "flop_rate":
        return f"{value / 1e12:.{digits}g} TFLOP/s"
    if kind == "money":
        return f"${value:,.0f}"
    return f"{value:.{digits}g}"
