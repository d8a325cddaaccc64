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
