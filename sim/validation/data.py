"""Readers of the published measurements: tab-separated tables and the numbers in them.

The tables are kept as their sources print them (units and notes inside the cells), so
the readers take the first number of a cell rather than the whole cell. Every reader takes
the folder it reads from as an argument; none of them knows where the repository is.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from ..errors import ConfigError

__all__ = ["read_tsv", "read_rows", "first_number", "first_count", "first_int", "seq_tokens"]


def read_tsv(folder: Path, name: str) -> list[dict]:
    """Rows of the tab-separated file ``folder / name`` (a header line, then one row a line).

    Parameters
    ----------
    folder : Path
        The folder holding the file, e.g. the shared ``validation`` folder.
    name : str
        The file's name, e.g. ``"collectives.tsv"``.
    """
    path = Path(folder) / name
    try:
        with open(path, newline="") as fh:
            return list(csv.DictReader(fh, delimiter="\t"))
    except FileNotFoundError:
        raise ConfigError("published measurements not found", file=str(path)) from None


def read_rows(folder: Path, name: str) -> list[dict]:
    """Rows of a tab-separated file whose lines starting with '#' are notes (the files of
    the repository's ``experiments/validation`` folder).

    Parameters
    ----------
    folder : Path
        The folder holding the file.
    name : str
        The file's name, e.g. ``"nemo_training.tsv"``.
    """
    path = Path(folder) / name
    try:
        with open(path, newline="") as fh:
            lines = [ln for ln in fh if not ln.startswith("#")]
    except FileNotFoundError:
        raise ConfigError("published rows not found", file=str(path)) from None
    return list(csv.DictReader(lines, delimiter="\t"))


def first_number(text: str) -> float:
    """The number a cell starts with ("450.2 GB/s" -> 450.2)."""
    m = re.match(r"\s*([-+]?\d+(?:\.\d+)?)", text)
    if not m:
        raise ConfigError(f"cannot read a number from {text!r}", file="collective_sweeps.tsv")
    return float(m.group(1))


def first_count(text: str) -> float:
    """First number in ``text``, thousands separators allowed ("24,524.9 (84 ...)")."""
    m = re.search(r"\d[\d,]*(?:\.\d+)?", text)
    if not m:
        raise ConfigError(f"cannot read a number from {text!r}", file="inference.tsv")
    return float(m.group(0).replace(",", ""))


def first_int(text: str, default: int | None = None) -> int | None:
    """The whole number a cell starts with, or ``default`` ("n/r", "-")."""
    m = re.match(r"\s*(\d+)", str(text))
    return int(m.group(1)) if m else default


def seq_tokens(text: str) -> int:
    """'8192' or '128K' (x 1024) as tokens."""
    t = text.strip().upper()
    return int(t[:-1]) * 1024 if t.endswith("K") else int(t)
