"""NCCL collectives against published measurements: 8-GPU NVSwitch nodes.

The DGX H100 and B200 all-reduce sweeps of ``collective_sweeps.tsv`` (busbw per message
size) and the GTC25 peak busbw bars of ``collectives.tsv`` are predicted on the catalog's
nodes with the library's collective model; no constant is fitted per case. PCIe systems
are not modelled.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from ..collectives import collective_time
from ..fabric import nvswitch_node
from .data import first_number, read_rows, read_tsv

__all__ = ["collective_cases", "multinode_cases", "summarize_errors"]


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


# ------------------------------------------------------------- nccl_multinode.tsv
# Sweeps whose transport the model does not have (AWS EFA's SRD, GCP's GPUDirect-TCPX/O)
# or whose system it does not build (GB200 racks of 4-GPU trays joined by MNNVL)
_NOT_MODELLED = {"efa": "AWS EFA (SRD transport) is not modelled",
                 "tcpxo": "GPUDirect-TCPXO (host TCP offload) is not modelled"}
_OPS = {"all_reduce": "all_reduce", "all_gather": "all_gather",
        "reduce_scatter": "reduce_scatter", "alltoall": "all_to_all"}


def _multinode_fabric(sw: dict):
    """The cluster a sweep ran on, rail-optimized with one NIC per GPU (the node's own
    NICs), or the reason it cannot be built."""
    from ..fabric import rail_optimized
    from .training import training_fabric

    fab, gpu, gpus = sw["fabric"], sw["gpu"], int(sw["gpus"])
    if fab in _NOT_MODELLED:
        return _NOT_MODELLED[fab]
    if gpu == "GB200":
        return "GB200 NVL72 trays with multi-node NVLink are not built here"
    servers = -(-gpus // 8)
    if fab in ("ib-ndr", "ib-hdr", "azure-ib"):
        f = training_fabric("A100" if gpu.startswith("A100") else gpu, gpus)
    else:  # RoCE: the node's 400G (A100: 200G) NICs, Tomahawk-class switches, ECMP
        node = {"H100": "DGX-H100", "H200": "HGX-H200", "B200": "DGX-B200"}.get(gpu, "DGX-A100")
        link = "eth-200g" if node == "DGX-A100" else "eth-400g"
        f = rail_optimized(node=node, servers=servers, servers_per_unit=min(servers, 32),
                           leaf="TH4", spine="TH4", link=link, routing="ecmp")
    f.collnet = "SHARP" in sw["nccl_settings"] and fab.startswith("ib")
    return f


def forced_algorithm(settings: str) -> tuple[str, str]:
    """NCCL_ALGO / NCCL_PROTO a sweep forced (fabsim's names), else auto."""
    algo = re.search(r"NCCL_ALGO=(\w+)", settings)
    proto = re.search(r"NCCL_PROTO=(\w+)", settings)
    names = {"ring": "ring", "tree": "tree", "nvls": "nvls", "nvlstree": "nvls",
             "collnet": "sharp"}
    return (names.get(algo.group(1).lower(), "auto") if algo else "auto",
            proto.group(1) if proto else "auto")


def multinode_cases(extra: Path) -> pd.DataFrame:
    """Predicted vs measured multi-node NCCL collectives of ``nccl_multinode.tsv``
    (published nccl-tests scans across 2-128 nodes): busbw at >= 1 MiB, time below, on a
    fabric built to each sweep's description, with the NCCL algorithm and protocol the
    sweep forced (else ``auto``). No constant is set from these rows.

    Returns
    -------
    pandas.DataFrame
        One row per sweep and size: case, fabric, nodes, bytes, metric, measured,
        predicted, error_pct, algorithm, status.
    """
    rows = []
    fabrics: dict = {}
    for r in read_rows(extra, "nccl_multinode.tsv"):
        sid = r["sweep_id"]
        if sid not in fabrics:
            fabrics[sid] = _multinode_fabric(r)
        f = fabrics[sid]
        n, gpus = int(r["size_bytes"]), int(r["gpus"])
        base = {"case": sid, "fabric": r["fabric"], "gpu": r["gpu"], "nodes": int(r["nodes"]),
                "bytes": n, "op": r["collective"]}
        if isinstance(f, str):
            rows.append({**base, "status": f"not modelled: {f}"})
            continue
        algo, proto = forced_algorithm(r["nccl_settings"])
        res = collective_time(f, _OPS[r["collective"]], gpus, n, algo, protocol=proto)
        big = n >= 2**20
        meas = float(r["busbw_GBps"]) if big else float(r["time_us"])
        pred = res.busbw_Bps / 1e9 if big else res.time_s * 1e6
        if meas <= 0:
            continue
        rows.append({**base, "status": "ok", "metric": "busbw_GBps" if big else "time_us",
                     "measured": meas, "predicted": pred, "error_pct": (pred / meas - 1) * 100,
                     "algorithm": f"{res.algorithm}/{res.protocol}"})
    return pd.DataFrame(rows)
