"""Reading the standard output of NVIDIA's nccl-tests (``all_reduce_perf`` and friends), so
that a user can put the model next to a run on their own cluster.

The table nccl-tests prints has, per message size, ``size count type redop root`` and then
``time algbw busbw #wrong`` twice (out-of-place, in-place); older versions and some
collectives leave out ``redop`` or ``root``. The rank count is the number of ``#  Rank``
lines in the header, and the collective is named by the ``*_perf`` binary in the
``Collective test starting`` line (nccl-tests >= 2.13), else given by the caller.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..errors import ConfigError

__all__ = ["NcclTestsRun", "read_nccl_tests", "parse_nccl_tests"]

_OPS = {"all_reduce": "all_reduce", "all_gather": "all_gather",
        "reduce_scatter": "reduce_scatter", "alltoall": "all_to_all", "broadcast": "broadcast",
        "reduce": "reduce", "sendrecv": "send_recv"}
_TYPES = {"int8", "uint8", "int32", "uint32", "int64", "uint64", "half", "float", "double",
          "bfloat16", "fp8_e4m3", "fp8_e5m2", "char", "int"}


@dataclass
class NcclTestsRun:
    """One nccl-tests table.

    Attributes
    ----------
    op : str or None
        The collective (fabsim's name), if the output says.
    ranks : int or None
        Ranks counted from the ``#  Rank`` lines, if printed.
    rows : pandas.DataFrame
        size_bytes, time_us, algbw_GBps, busbw_GBps (out-of-place), one row per size.
    """

    op: str | None
    ranks: int | None
    rows: pd.DataFrame


def _row(parts: list[str]) -> tuple[int, float, float, float] | None:
    """(size, time, algbw, busbw) of a data line, or None if it is not one."""
    if len(parts) < 6 or not parts[0].isdigit():
        return None
    try:
        t = parts.index(next(p for p in parts[2:] if p in _TYPES))
    except StopIteration:
        return None
    rest = parts[t + 1:]
    # redop and root are optional: skip non-numeric tokens and a root of -1 (or a rank)
    nums = []
    for p in rest:
        if p == "N/A":  # #wrong without data checking (-c 0)
            nums.append(float("nan"))
            continue
        try:
            nums.append(float(p))
        except ValueError:
            if nums:
                break
    # with a root column the first number is it: time, algbw, busbw, #wrong follow
    if len(nums) >= 9:
        nums = nums[1:]
    if len(nums) < 3:
        return None
    return int(parts[0]), nums[0], nums[1], nums[2]


def parse_nccl_tests(text: str, file: str = "<text>") -> NcclTestsRun:
    """Parse nccl-tests output; ConfigError naming ``file`` if it holds no table."""
    op = None
    m = re.search(r"(\w+)_perf", text)
    if m and m.group(1) in _OPS:
        op = _OPS[m.group(1)]
    ranks = len(re.findall(r"^#\s+Rank\s+\d+", text, flags=re.M)) or None
    rows = []
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            continue
        r = _row(line.split())
        if r is not None:
            rows.append(r)
    if not rows:
        raise ConfigError("no nccl-tests table found (expected lines of size, count, type, "
                          "..., time, algbw, busbw)", file=file)
    df = pd.DataFrame(rows, columns=["size_bytes", "time_us", "algbw_GBps", "busbw_GBps"])
    return NcclTestsRun(op, ranks, df)


def read_nccl_tests(path: str | Path) -> NcclTestsRun:
    """:func:`parse_nccl_tests` of a file; ConfigError if it cannot be read."""
    p = Path(path)
    try:
        text = p.read_text(errors="replace")
    except OSError as e:
        raise ConfigError(f"cannot read nccl-tests output: {e.strerror}", file=str(p)) from None
    return parse_nccl_tests(text, str(p))
