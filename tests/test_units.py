"""Tests of sim.units.parse: quantities with units into exact SI floats, and bad quantities.

Expected values are closed forms (1 byte = 8 bits, G = 1e9, Gi = 2**30, ...), written so that
the exact-fraction arithmetic of the parser can be checked with ``==``.
"""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.errors import ConfigError, SimError
from sim.units import KINDS, format_si, parse, parse_bandwidth, parse_bytes, parse_time

DEC = {"k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
BIN = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50}


# ----------------------------------------------------------------------------- values
@pytest.mark.parametrize(
    ("text", "kind", "expected"),
    [
        # bits vs bytes: the factor-of-8 trap
        ("400 Gb/s", "bandwidth", 50e9),
        ("400 GB/s", "bandwidth", 400e9),
        ("400 Gbps", "bandwidth", 50e9),
        ("800 Gb/s", "bandwidth", 100e9),
        ("3.35 TB/s", "bandwidth", 3.35e12),
        ("1 GiB/s", "bandwidth", 2.0**30),
        ("8 Gib/s", "bandwidth", 2.0**30),
        # sizes, decimal vs binary
        ("80 GiB", "bytes", 80 * 2**30),
        ("80 GB", "bytes", 80e9),
        ("141 GB", "bytes", 141e9),
        ("8 Gb", "bytes", 1e9),
        ("1 KiB", "bytes", 1024.0),
        ("1 kB", "bytes", 1000.0),
        ("1 KB", "bytes", 1000.0),
        # times
        ("250 ns", "time", 250e-9),
        ("1.5 us", "time", 1.5e-6),
        ("1.5 µs", "time", 1.5e-6),
        ("2 ms", "time", 2e-3),
        ("10 ps", "time", 10e-12),
        ("3 s", "time", 3.0),
        ("2 min", "time", 120.0),
        ("1 h", "time", 3600.0),
        # compute
        ("989 TFLOP/s", "flop_rate", 989e12),
        ("1979 TFLOPS", "flop_rate", 1979e12),
        ("624 TOP/s", "flop_rate", 624e12),
        ("3.1 PFLOP", "flops", 3.1e15),
        # power and energy
        ("700 W", "power", 700.0),
        ("1.2 kW", "power", 1200.0),
        ("2.5 kW", "power", 2500.0),
        ("1 kWh", "energy", 3.6e6),
        ("5 J", "energy", 5.0),
        # length and money
        ("2 km", "length", 2000.0),
        ("3 m", "length", 3.0),
        ("50 cm", "length", 0.5),
        ("30000 USD", "money", 30000.0),
        ("30,000 USD", "money", 30000.0),
        ("30_000 $", "money", 30000.0),
        # number spellings
        ("1e3 W", "power", 1000.0),
        ("1.5E9 B/s", "bandwidth", 1.5e9),
        (".5 kW", "power", 500.0),
        ("  400Gb/s  ", "bandwidth", 50e9),
    ],
)
def test_parse_exact_values(text, kind, expected):
    got = parse(text, kind)
    assert isinstance(got, float)
    assert got == expected


def test_gb_vs_gB_is_a_factor_of_8():
    assert parse("400 GB/s", "bandwidth") == 8 * parse("400 Gb/s", "bandwidth")
    assert parse("400 Gb/s", "bandwidth") == 50e9


def test_decimal_time_is_exact_not_float_product():
    # 250 * 1e-9 is 2.5000000000000004e-07 in binary floating point; parse uses fractions
    assert parse("250 ns", "time") == 2.5e-7
    assert parse("250 ns", "time") == float(Fraction(250, 10**9))
    assert parse("0.1 s", "time") == 0.1
    assert parse("100 ms", "time") == 0.1


def test_wrappers_match_parse():
    assert parse_bandwidth("400 Gb/s") == parse("400 Gb/s", "bandwidth") == 5e10
    assert parse_bytes("80 GiB") == 85899345920.0
    assert parse_time("1.5 us") == 1.5e-6
    with pytest.raises(ConfigError):
        parse_bandwidth("80 GB")


# ------------------------------------------------------------------------- properties
@settings(max_examples=150, deadline=None)
@given(n=st.integers(min_value=1, max_value=10**15), prefix=st.sampled_from(sorted(DEC)))
def test_bits_and_bytes_decimal_prefixes(n, prefix):
    bits = parse(f"{n} {prefix}b/s", "bandwidth")
    byts = parse(f"{n} {prefix}B/s", "bandwidth")
    assert bits * 8 == byts
    assert byts == float(n * 10 ** DEC[prefix])
    assert bits == float(Fraction(n * 10 ** DEC[prefix], 8))
    # the same relation for sizes, and for the "bps" spelling
    assert parse(f"{n} {prefix}b", "bytes") * 8 == parse(f"{n} {prefix}B", "bytes") == byts
    assert parse(f"{n} {prefix}bps", "bandwidth") == bits


@settings(max_examples=100, deadline=None)
@given(n=st.integers(min_value=1, max_value=10**9), prefix=st.sampled_from(sorted(BIN)))
def test_binary_prefixes(n, prefix):
    assert parse(f"{n} {prefix}B", "bytes") == float(n * 2 ** BIN[prefix])
    assert parse(f"{n} {prefix}b", "bytes") * 8 == parse(f"{n} {prefix}B", "bytes")
    assert parse(f"{n} {prefix}B/s", "bandwidth") == float(n * 2 ** BIN[prefix])
    # a binary prefix is always larger than the decimal one of the same letter
    dec = prefix[0] if prefix[0] != "K" else "k"
    assert parse(f"{n} {prefix}B", "bytes") > parse(f"{n} {dec}B", "bytes")


@settings(max_examples=150, deadline=None)
@given(
    whole=st.integers(min_value=0, max_value=10**6),
    frac=st.integers(min_value=0, max_value=999),
    unit=st.sampled_from([("ns", Fraction(1, 10**9)), ("us", Fraction(1, 10**6)),
                          ("ms", Fraction(1, 10**3)), ("s", Fraction(1))]),
)
def test_decimal_times_are_correctly_rounded(whole, frac, unit):
    symbol, factor = unit
    if whole == 0 and frac == 0:
        return
    text = f"{whole}.{frac:03d} {symbol}"
    assert parse(text, "time") == float(Fraction(f"{whole}.{frac:03d}") * factor)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(min_value=1, max_value=10**6),
       kind=st.sampled_from(["bandwidth", "bytes", "power", "money"]))
def test_sign_rules(n, kind):
    unit = {"bandwidth": "Gb/s", "bytes": "GB", "power": "W", "money": "USD"}[kind]
    pos = parse(f"{n} {unit}", kind)
    assert pos > 0
    assert parse(f"-{n} {unit}", kind, allow_negative=True) == -pos
    with pytest.raises(ConfigError, match="negative"):
        parse(f"-{n} {unit}", kind)


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("bare", [400, 2.5])
def test_bare_number_is_rejected(kind, bare):
    with pytest.raises(ConfigError) as ei:
        parse(bare, kind)
    msg = str(ei.value)
    assert "unit" in msg
    assert repr(bare) in msg


def test_bare_number_message_shows_a_unit_of_the_right_kind():
    with pytest.raises(ConfigError) as ei:
        parse(400, "bandwidth")
    assert "Gb/s" in str(ei.value)
    with pytest.raises(ConfigError) as ei:
        parse(80, "bytes")
    assert "GiB" in str(ei.value)
    with pytest.raises(ConfigError) as ei:
        parse(5, "time")
    assert "us" in str(ei.value)


@pytest.mark.parametrize("value", [True, False, None, [400], {"v": 1}])
def test_non_scalar_or_bool_is_rejected(value):
    with pytest.raises(ConfigError):
        parse(value, "bandwidth")


@pytest.mark.parametrize("text", ["400", "400 ", "3.35", "-1"])
def test_string_without_unit(text):
    with pytest.raises(ConfigError, match="no unit"):
        parse(text, "bandwidth")


@pytest.mark.parametrize(
    ("text", "kind", "bad_unit"),
    [
        ("400 Gbit/s", "bandwidth", "Gbit/s"),
        ("400 gb/s", "bandwidth", "gb/s"),
        ("400 Gb/sec", "bandwidth", "Gb/sec"),
        ("80 gigabytes", "bytes", "gigabytes"),
        ("1.5 usec", "time", "usec"),
        ("30 kUSD", "money", "kUSD"),
        ("2 furlongs", "length", "furlongs"),
        ("700 Watt", "power", "Watt"),
    ],
)
def test_unknown_unit(text, kind, bad_unit):
    with pytest.raises(ConfigError) as ei:
        parse(text, kind)
    msg = str(ei.value)
    assert "unknown unit" in msg
    assert repr(bad_unit) in msg


@pytest.mark.parametrize(
    ("text", "kind", "got_kind"),
    [
        ("80 GB", "bandwidth", "bytes"),
        ("400 Gb/s", "bytes", "bandwidth"),
        ("1.5 us", "power", "time"),
        ("700 W", "energy", "power"),
        ("2 m", "time", "length"),
        ("2 ms", "length", "time"),
        ("989 TFLOP/s", "flops", "flop_rate"),
        ("3 PFLOP", "flop_rate", "flops"),
        ("30000 USD", "power", "money"),
    ],
)
def test_unit_of_wrong_kind(text, kind, got_kind):
    with pytest.raises(ConfigError) as ei:
        parse(text, kind)
    msg = str(ei.value)
    assert f"is a {got_kind}" in msg
    assert f"expected a {kind}" in msg


@pytest.mark.parametrize("text", ["", "   ", "abc", "Gb/s 400", "4 00 Gb/s x", "--4 W", "nan W",
                                  "inf W"])
def test_unreadable(text):
    with pytest.raises(ConfigError):
        parse(text, "power")


def test_zero_and_negative_defaults_and_flags():
    with pytest.raises(ConfigError, match="greater than zero"):
        parse("0 Gb/s", "bandwidth")
    with pytest.raises(ConfigError, match="greater than zero"):
        parse("-0 Gb/s", "bandwidth")
    with pytest.raises(ConfigError, match="negative"):
        parse("-400 Gb/s", "bandwidth")
    assert parse("0 Gb/s", "bandwidth", allow_zero=True) == 0.0
    assert parse("0 ns", "time", allow_zero=True) == 0.0
    assert parse("-400 Gb/s", "bandwidth", allow_negative=True) == -50e9
    # the two permissions are independent
    with pytest.raises(ConfigError, match="negative"):
        parse("-400 Gb/s", "bandwidth", allow_zero=True)
    with pytest.raises(ConfigError, match="greater than zero"):
        parse("0 Gb/s", "bandwidth", allow_negative=True)


def test_error_names_file_and_field():
    with pytest.raises(ConfigError) as ei:
        parse("x", "bandwidth", file="a.yaml", field="links.x.bandwidth")
    err = ei.value
    assert str(err).startswith("a.yaml: links.x.bandwidth: ")
    assert err.file == "a.yaml"
    assert err.field == "links.x.bandwidth"
    assert isinstance(err, SimError)

    with pytest.raises(ConfigError) as ei:
        parse(400, "bandwidth", file="b.yaml", field="params.bw")
    assert str(ei.value).startswith("b.yaml: params.bw: bare number 400")

    with pytest.raises(ConfigError) as ei:
        parse("80 GB", "bandwidth", field="links.y.bandwidth")
    assert str(ei.value).startswith("links.y.bandwidth: '80 GB' is a bytes")

    with pytest.raises(ConfigError) as ei:
        parse("0 W", "power", file="c.yaml")
    assert str(ei.value).startswith("c.yaml: '0 W' must be greater than zero")

    with pytest.raises(ConfigError) as ei:
        parse("-1 W", "power")
    assert str(ei.value) == "'-1 W' must not be negative"


def test_at_fills_only_missing_location():
    with pytest.raises(ConfigError) as ei:
        parse("1 s", "power", field="power")
    moved = ei.value.at(file="x.yaml", field="ignored")
    assert str(moved).startswith("x.yaml: power: '1 s' is a time")
    assert moved.bare == ei.value.bare


def test_unknown_kind_is_a_programming_error():
    with pytest.raises(ValueError, match="unknown quantity kind"):
        parse("400 Gb/s", "speed")


@pytest.mark.parametrize(("text", "kind"), [("1e400 B", "bytes"), ("1e400 Gb/s", "bandwidth")])
def test_overflowing_number_is_a_config_error(text, kind):
    with pytest.raises(ConfigError):
        parse(text, kind)


# ------------------------------------------------------------------------- round trip
@pytest.mark.parametrize(
    ("text", "kind", "shown"),
    [
        ("400 Gb/s", "bandwidth", "400 Gb/s"),
        ("800 Gb/s", "bandwidth", "800 Gb/s"),
        ("450 GB/s", "bandwidth", "450 GB/s"),
        ("3.35 TB/s", "bandwidth", "3.35 TB/s"),
        ("80 GB", "bytes", "80 GB"),
        ("250 ns", "time", "250 ns"),
        ("1.5 us", "time", "1.5 us"),
        ("700 W", "power", "700 W"),
        ("1.2 kW", "power", "1.2 kW"),
        ("989 TFLOP/s", "flop_rate", "989 TFLOP/s"),
    ],
)
def test_format_si_round_trip(text, kind, shown):
    v = parse(text, kind)
    assert format_si(v, kind) == shown
    assert parse(format_si(v, kind), kind) == v


def test_absent_section_reads_as_empty_node():
    """Node.sub with a {} default must give a Node (a workload without `options:`)."""
    from sim.spec import Node

    n = Node({"a": 1}, "f.yaml", "")
    sub = n.sub("options", {})
    assert isinstance(sub, Node) and sub.string("recompute", "none") == "none"
    assert sub.field("recompute") == "options.recompute"
