"""The bundled proposals build and show the figures their designs imply."""

from __future__ import annotations

from pathlib import Path

import pytest

from sim.fabric import load_topology, summarize

TOPO = Path(__file__).resolve().parents[2] / "topologies"
SMALL = ["dgx-h100-superpod-ib", "dgx-h100-superpod-roce", "dgx-h100-superpod-rail-only",
         "dgx-h100-superpod-2to1", "gb200-nvl72-xdr", "tpu-v4-pod-ocs", "mi300x-roce"]


@pytest.fixture(scope="module")
def summaries():
    return {n: summarize(load_topology(TOPO / f"{n}.yaml")) for n in SMALL}


def test_every_proposal_file_is_listed():
    assert sorted(p.stem for p in TOPO.glob("*.yaml")) == sorted(SMALL + ["llama3-16k-roce"])


def test_superpod_ib_vs_roce_vs_2to1(summaries):
    ib, roce, two = (summaries[k] for k in ("dgx-h100-superpod-ib", "dgx-h100-superpod-roce",
                                            "dgx-h100-superpod-2to1"))
    for s in (ib, roce, two):
        assert s["accelerators"] == 1024
        assert s["injection_scale_out_Bps"] == pytest.approx(50e9)
        assert s["injection_scale_up_Bps"] == pytest.approx(450e9)
    assert ib["routing"] == "adaptive" and roce["routing"] == "ecmp"
    assert ib["bisection_per_accelerator_Bps"]["scale_out"] == pytest.approx(50e9)
    assert two["bisection_per_accelerator_Bps"]["scale_out"] == pytest.approx(25e9)
    assert two["oversubscription"]["leaf"] == pytest.approx(2.0)
    assert ib["switches"]["QM9700 (spine)"] == 16 and two["switches"]["QM9700 (spine)"] == 8
    assert ib["diameter_switch_hops"] == 3


def test_rail_only_has_no_inter_rail_switch_but_pxn_reach(summaries):
    s = summaries["dgx-h100-superpod-rail-only"]
    # NVSwitch + leaf + spine + leaf on the longest (cross-rail, cross-unit) route
    assert s["diameter_switch_hops"] == 4


def test_gb200_nvl72(summaries):
    s = summaries["gb200-nvl72-xdr"]
    assert s["accelerators"] == 1008 and s["scale_up_domain_sizes"] == {"72": 14}
    assert s["injection_scale_up_Bps"] == pytest.approx(900e9)
    assert s["injection_scale_out_Bps"] == pytest.approx(100e9)  # 800 Gb/s


def test_tpu_pod(summaries):
    s = summaries["tpu-v4-pod-ocs"]
    assert s["accelerators"] == 4096
    assert s["switches"] == {"Palomar-OCS (ocs)": 48}
    assert s["ocs_slices"] == {"slice0": "16x16x16"}
    # 16x16x16 torus: 8 + 8 + 8 chip hops to the farthest chip, 2 OCS crossings per axis
    assert s["diameter_links"] - s["diameter_switch_hops"] == 24


@pytest.mark.slow
def test_llama3_16k_shape():
    s = summarize(load_topology(TOPO / "llama3-16k-roce.yaml"))
    assert s["accelerators"] == 16384
    assert s["switches"]["Minipack2 (leaf)"] == 1024  # one ToR per 16-GPU rack
    assert s["oversubscription"]["leaf"] == pytest.approx(1.0)
    assert s["oversubscription"]["spine"] == pytest.approx(7.0, rel=0.02)
    assert s["bisection_per_accelerator_Bps"]["scale_out"] == pytest.approx(50e9 / 7, rel=0.02)
    assert s["diameter_switch_hops"] == 5
