"""Predicted NCCL collectives against published measurements (shared/validation)."""

from __future__ import annotations

import pytest

from sim.validation import collective_cases


@pytest.fixture(scope="module")
def df(shared_dir):
    return collective_cases(shared_dir)


def test_dgx_h100_all_reduce_sweep(df):
    """Issue target: busbw error <= 10% for sizes >= 1 MiB, <= 30% below."""
    d = df[df["case"].str.startswith("DGXH100")]
    assert len(d) >= 14
    big = d[d["bytes"] >= 2**20]
    small = d[d["bytes"] < 2**20]
    assert big["error_pct"].abs().max() <= 10.0, big[["bytes", "error_pct"]]
    assert small["error_pct"].abs().max() <= 30.0, small[["bytes", "error_pct"]]


def test_gtc25_all_reduce_peaks(df):
    d = df[df["case"].str.startswith("GTC25 all-reduce")]
    assert len(d) == 5
    assert d["error_pct"].abs().max() <= 10.0, d[["case", "error_pct"]]


def test_gtc25_all_to_all_peaks(df):
    """Issue target 10%. NVLink's p2p_efficiency was derived from the H100 bar alone (so
    that row is in-sample); A100 and B200 are out of sample and must land within 5%."""
    d = df[df["case"].str.startswith("GTC25 all-to-all")]
    assert len(d) == 3
    assert d["error_pct"].abs().max() <= 10.0, d[["case", "error_pct"]]
    oos = d[~d["case"].str.contains("H100")]
    assert len(oos) == 2 and oos["error_pct"].abs().max() <= 5.0, oos


def test_four_h100_all_to_all_out_of_sample():
    """nccl-tests alltoall_perf on 4x H100 80GB HBM3 in one node (NVIDIA/nccl issue 2169,
    NCCL_ALGO=Ring, NCCL_PROTO=Simple): busbw 334.90 GB/s at 500 MB, not used to derive
    any constant."""
    from sim.collectives import collective_time
    from sim.fabric import nvswitch_node

    r = collective_time(nvswitch_node("DGX-H100"), "all_to_all", 4, 500e6)
    assert r.algorithm == "direct"
    assert abs(r.busbw_Bps / 334.90e9 - 1) <= 0.10


def test_b200_large_messages_out_of_sample(df):
    """B200 constants were not tuned on this sweep (torch all_reduce_bench on AWS p6):
    from 256 MiB up, where framework overhead per call no longer matters."""
    d = df[df["case"].str.startswith("B200") & (df["bytes"] >= 2**28)]
    assert len(d) >= 6
    assert d["error_pct"].abs().max() <= 12.0, d[["bytes", "error_pct"]]


# ------------------------------------------------------------- multi-node scans
def test_multinode_rows_are_consistent(extra_dir):
    """Every copied row of nccl_multinode.tsv: algbw = size / time and busbw = algbw x
    the nccl-tests bus factor of its rank count (where both are printed above 1 GB/s)."""
    from sim.collectives.algorithms import bus_factor
    from sim.validation import read_rows

    ops = {"all_reduce": "all_reduce", "all_gather": "all_gather", "alltoall": "all_to_all",
           "reduce_scatter": "reduce_scatter"}
    rows = read_rows(extra_dir, "nccl_multinode.tsv")
    assert len({r["sweep_id"] for r in rows}) >= 20 and len(rows) >= 300
    for r in rows:
        n, t, alg, bus = (float(r[k]) for k in ("size_bytes", "time_us", "algbw_GBps",
                                                "busbw_GBps"))
        assert int(r["nodes"]) >= 2 and r["source"], r["sweep_id"]
        if alg >= 1.0:
            assert n / (t * 1e3) == pytest.approx(alg, rel=0.02), (r["sweep_id"], n)
            assert bus == pytest.approx(alg * bus_factor(ops[r["collective"]], int(r["gpus"])),
                                        rel=0.01), (r["sweep_id"], n)


def test_multinode_forced_algorithms_and_unmodelled_transports(extra_dir):
    from sim.validation import multinode_cases
    from sim.validation.collectives import forced_algorithm

    assert forced_algorithm("NCCL_ALGO=Ring NCCL_PROTO=LL128 NCCL_NVLS_ENABLE=0") == ("ring", "LL128")
    assert forced_algorithm("defaults") == ("auto", "auto")
    d = multinode_cases(extra_dir)
    bad = d[d["status"] != "ok"].groupby("case")["status"].first()
    assert all(("EFA" in s) for c, s in bad.items() if "EFA" in c)
    assert all(("TCPXO" in s) for c, s in bad.items() if "TCPXO" in c)
    ok = d[d["status"] == "ok"]
    ring = ok[ok["case"] == "NCCLTESTS-ISSUE322-H100-ROCE-128N-AR"]
    assert set(ring["algorithm"]) == {"ring/LL128"}  # as the sweep forced


def test_multinode_errors_today(extra_dir):
    """Where the model stands on the multi-node scans (none set a constant): large
    messages on a forced 2-node ring within 12% from 64 MiB up, but the median busbw at
    >= 1 MiB is too fast by ~24% (mid sizes: the measured latency floor is several times
    NCCL's tuner estimate) and small messages are predicted too fast (~-31% in time, with
    NCCL's own LL cap and proxy overhead across nodes).
    Bounds at today's figures, so that a regression shows."""
    from sim.validation import multinode_cases

    d = multinode_cases(extra_dir)
    ok = d[d["status"] == "ok"]
    ring = ok[(ok["case"] == "NCCLTESTS-ISSUE309-H100-IBNDR-2N-AR-RING") &
              (ok["bytes"] >= 64 * 2**20)]
    assert len(ring) >= 8 and ring["error_pct"].abs().max() <= 12.0
    big = ok[ok["metric"] == "busbw_GBps"]["error_pct"]
    small = ok[ok["metric"] == "time_us"]["error_pct"]
    assert len(big) >= 150 and big.abs().median() <= 25.0
    assert len(small) >= 60 and small.abs().median() <= 32.0
