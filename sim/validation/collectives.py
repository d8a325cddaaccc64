"""NCCL collectives against published measurements: 8-GPU NVSwitch nodes.

The DGX H100 and B200 all-reduce sweeps of ``collective_sweeps.tsv`` (busbw per message
size) and the GTC25 peak busbw bars of ``collectives.tsv`` are predicted on the catalog's
nodes with the library's collective model; no constant is fitted per case. PCIe systems
are not modelled.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..collectives import collective_time
from ..fabric import nvswitch_node
from .data import first_number, read_tsv

__all__ = ["collective_cases", "summarize_errors"]


def _peak(fabric, op: str, algorithm: str) -> tuple[float, int]:
    """Highest predicted busbw (GB/s) over 1 MiB .. 16 GiB, and the size where it is."""
    best = (0.0, 0)
    n = 2**20
    while n <= 2**34:
        r = collective_time(fabric, op, fabric.n_accelerators, n, algorithm)
        best = max(best, (r.busbw_Bps / 1e9, n))
        n *= 2
    return best


def _sweep_rows(shared: Path) -> list[dict]:
    """The 8-GPU all-reduce sweeps, one row per message size (busbw)."""
    rows = []
    nodes = {"DGXH100": "DGX-H100", "B200": "DGX-B200"}
    fabrics = {k: nvswitch_node(v) for k, v in nodes.items()}
    for r in read_tsv(shared, "collective_sweeps.tsv"):
        sweep = r["sweep_id"]
        key = "DGXH100" if sweep.startswith("DGXH100") else "B200"
        n = int(r["size_bytes"])
        meas = first_number(r["busbw_GBps"])
        if meas <= 0:
            continue  # 8-byte rows print busbw 0.00: compare times there instead
        res = collective_time(fabrics[key], "all_reduce", 8, n)
        rows.append({"case": sweep, "bytes": n, "metric": "busbw_GBps", "measured": meas,
                     "predicted": res.busbw_Bps / 1e9,
                     "algorithm": f"{res.algorithm}/{res.protocol}"})
    return rows


def _gtc25_rows(shared: Path) -> list[dict]:
    """The GTC25 8-GPU all-reduce and all-to-all peaks (busbw, peak of the sweep)."""
    rows = []
    coll = {r["case_id"]: r for r in read_tsv(shared, "collectives.tsv")}
    # GTC25 slide 12: PCIe Gen6 | NVLink3 A100 | NVLink4 H100 | NVLink4+SHARP H100 |
    # NVLink5 B200 | NVLink5+SHARP B200 (busbw, peak of sweep); PCIe is not modelled.
    ar = [first_number(x) for x in coll["COLL-GTC25-AR-8GPU"]["value"].split("|")]
    for label, node, algo, meas in (("A100 NVLink3 ring", "DGX-A100", "ring", ar[1]),
                                    ("H100 NVLink4 ring", "DGX-H100", "ring", ar[2]),
                                    ("H100 NVLink4 NVLS", "DGX-H100", "nvls", ar[3]),
                                    ("B200 NVLink5 ring", "DGX-B200", "ring", ar[4]),
                                    ("B200 NVLink5 NVLS", "DGX-B200", "nvls", ar[5])):
        pred, at = _peak(nvswitch_node(node), "all_reduce", algo)
        rows.append({"case": f"GTC25 all-reduce {label}", "bytes": at,
                     "metric": "peak_busbw_GBps", "measured": meas, "predicted": pred,
                     "algorithm": algo})
    # slide 13: PCIe Gen5 2x4 | PCIe Gen6 2x4 | NVLink3 A100 | NVLink4 H100 | NVLink5 B200
    a2a = [first_number(x) for x in coll["COLL-GTC25-A2A-8GPU"]["value"].split("|")]
    for label, node, meas in (("A100 NVLink3", "DGX-A100", a2a[2]),
                              ("H100 NVLink4", "DGX-H100", a2a[3]),
                              ("B200 NVLink5", "DGX-B200", a2a[4])):
        pred, at = _peak(nvswitch_node(node), "all_to_all", "direct")
        rows.append({"case": f"GTC25 all-to-all {label}", "bytes": at,
                     "metric": "peak_busbw_GBps", "measured": meas, "predicted": pred,
                     "algorithm": "direct"})
    return rows


def collective_cases(shared: Path) -> pd.DataFrame:
    """Predicted vs measured NCCL collectives: the DGX H100 and B200 8-GPU all-reduce
    sweeps (busbw per size) and the GTC25 8-GPU all-reduce and all-to-all peaks.

    Parameters
    ----------
    shared : Path
        The folder holding ``collective_sweeps.tsv`` and ``collectives.tsv``.

    Returns
    -------
    pandas.DataFrame
        One row per case and size: case, bytes, metric, measured and predicted (GB/s),
        algorithm, error_pct (%).
    """
    df = pd.DataFrame(_sweep_rows(shared) + _gtc25_rows(shared))
    df["error_pct"] = (df["predicted"] / df["measured"] - 1) * 100
    return df


def summarize_errors(df: pd.DataFrame) -> pd.DataFrame:
    """Median and max |error| per case family and size band (>= 1 MiB or below)."""
    d = df.copy()
    d["family"] = d["case"].str.replace(r" (A100|H100|B200).*", "", regex=True)
    d["band"] = ["large (>= 1 MiB)" if b >= 2**20 else "small (< 1 MiB)" for b in d["bytes"]]
    d["abs_err"] = d["error_pct"].abs()
    return d.groupby(["family", "band"])["abs_err"].agg(["count", "median", "max"]).round(1)
