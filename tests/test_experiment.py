"""Sweeps: the study file, rows per point and seed, zip vs cross, failures as rows,
determinism across runs and worker counts, resume after a real SIGKILL, the Ray backend."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from sim.errors import ConfigError, SimError
from sim.experiment import RAY_INSTALL, TIMING_COLUMNS, load_study, points, sweep

ROOT = Path(__file__).resolve().parents[1]


def _files(tmp_path: Path) -> None:
    d = yaml.safe_load((ROOT / "topologies" / "dgx-h100-superpod-ib.yaml").read_text())
    d["params"].update({"servers": 4, "servers_per_unit": 2})
    (tmp_path / "topo.yaml").write_text(yaml.safe_dump(d))
    w = yaml.safe_load((ROOT / "workloads" / "llama3-70b-1k.yaml").read_text())
    w.update({"model": "llama3-8b", "gpus": 16})
    w["batch"].update({"global": 32, "micro": 1})
    w["parallelism"] = {"tp": 8, "pp": 1, "dp": 2}
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(w))


def _study(tmp_path: Path, axes: dict, name: str = "study.yaml", **over) -> Path:
    _files(tmp_path)
    doc = {"kind": "study", "name": "t", "topology": "topo.yaml", "workload": "train.yaml",
           "network": "analytical", "axes": axes}
    doc.update(over)
    p = tmp_path / name
    p.write_text(yaml.safe_dump(doc, sort_keys=False))
    return p


def _same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(a.drop(columns=list(TIMING_COLUMNS)).reset_index(drop=True),
                                  b.drop(columns=list(TIMING_COLUMNS)).reset_index(drop=True))


def test_rows_per_point_and_seed_with_swept_columns(tmp_path):
    p = _study(tmp_path, {"workload.batch.global": [32, 64],
                          "assumptions.prices.H100-SXM": ["20000 USD", "30000 USD"]},
               seeds=[0, 1])
    df = sweep(p, workers=1, progress=False)
    assert len(df) == 2 * 2 * 2
    assert list(df.columns[:4]) == ["point", "seed", "workload.batch.global",
                                    "assumptions.prices.H100-SXM"]
    for c in ("step_time_s", "mfu", "tokens_per_s", "usd_per_M_train_tokens",
              "capex_total_USD", "usd_per_hour", "status", "error", "wall_s", "version",
              "spec_hash"):
        assert c in df.columns
    assert (df["status"] == "ok").all()
    # a dearer GPU: same step, more capex; a bigger batch: a longer step
    cheap, dear = (df[df["assumptions.prices.H100-SXM"] == v] for v in ("20000 USD", "30000 USD"))
    assert (dear["capex_total_USD"].to_numpy() > cheap["capex_total_USD"].to_numpy()).all()
    assert list(dear["step_time_s"]) == list(cheap["step_time_s"])
    s = df[(df.seed == 0) & (df["assumptions.prices.H100-SXM"] == "20000 USD")]
    assert s["step_time_s"].iloc[1] > s["step_time_s"].iloc[0]
    assert df["spec_hash"].nunique() == 4  # training ignores the seed: one run per point


def test_zip_and_cross_counts_and_study_errors(tmp_path):
    axes = {"workload.batch.global": [32, 64, 96], "workload.parallelism.dp": [2, 2, 2]}
    assert len(points(load_study(_study(tmp_path, axes)))) == 9
    assert len(points(load_study(_study(tmp_path, axes, mode="zip")))) == 3
    bad = {"workload.batch.global": [32, 64], "workload.parallelism.dp": [2]}
    with pytest.raises(ConfigError, match=r"study\.yaml: axes: .*same number of values"):
        load_study(_study(tmp_path, bad, mode="zip"))
    with pytest.raises(ConfigError, match=r"axes\.model\.x: axis 'model\.x' must be"):
        load_study(_study(tmp_path, {"model.x": [1]}))
    with pytest.raises(ConfigError, match="no `service:` file"):
        load_study(_study(tmp_path, {"service.replicas": [1]}))
    with pytest.raises(ConfigError, match="metrics: unknown metric 'ttft_p99_s'"):
        load_study(_study(tmp_path, {}, metrics=["ttft_p99_s"]))


def test_a_group_moves_together_and_is_crossed_with_the_other_axes(tmp_path):
    axes = {"workload.batch.global": [32, 64],
            "layout": {"workload.parallelism.tp": [8, 4], "workload.parallelism.dp": [2, 4]}}
    s = load_study(_study(tmp_path, axes))
    pts = points(s)
    assert len(pts) == 2 * 2
    assert [(p["workload.batch.global"], p["workload.parallelism.tp"],
             p["workload.parallelism.dp"]) for p in pts] == \
        [(32, 8, 2), (32, 4, 4), (64, 8, 2), (64, 4, 4)]
    df = sweep(s, workers=1, progress=False)
    assert (df["status"] == "ok").all()
    assert set(zip(df["workload.parallelism.tp"], df["workload.parallelism.dp"],
                   strict=True)) == \
        {(8, 2), (4, 4)}
    # TP 4 x DP 4 halves the tensor-parallel ranks: a different step than TP 8 x DP 2
    assert df["step_time_s"].nunique() == 4
    uneven = {"layout": {"workload.parallelism.tp": [8, 4], "workload.parallelism.dp": [2]}}
    with pytest.raises(ConfigError, match=r"axes\.layout: the axes of a group move "
                       r"together and need the same number of values"):
        load_study(_study(tmp_path, uneven))
    with pytest.raises(ConfigError, match="groups of axes are for mode: cross"):
        load_study(_study(tmp_path, axes, mode="zip"))


def test_the_quick_grid_replaces_named_axes_and_shares_finished_points(tmp_path):
    axes = {"workload.batch.global": [32, 64, 96],
            "layout": {"workload.parallelism.tp": [8, 4], "workload.parallelism.dp": [2, 4]}}
    quick = {"axes": {"workload.batch.global": [64]}, "seeds": [3]}
    p = _study(tmp_path, axes, quick=quick)
    full, q = load_study(p), load_study(p, quick=True)
    assert len(points(full)) == 6 and len(points(q)) == 2 and q.seeds == (3,)
    assert full.seeds == (0,) and q.quick and not full.quick
    out = tmp_path / "res"
    a = sweep(p, out=out, workers=1, progress=False, quick=True)
    parts = {x.name: x.stat().st_mtime_ns for x in (out / "parts").glob("*.parquet")}
    b = sweep(p, out=out, workers=1, progress=False)
    # training ignores seeds: the quick grid's two points are the full grid's, not rerun
    assert set(a["spec_hash"]) <= set(b["spec_hash"])
    assert all((out / "parts" / k).stat().st_mtime_ns == v for k, v in parts.items())
    for bad, msg in [({"axes": {"workload.model": ["x"]}}, "only reduce the study's axes"),
                     ({"axes": {"layout": {"workload.parallelism.tp": [8]}}},
                      "same axes as the study's group"),
                     ({"sizes": 1}, "quick.sizes: unknown field")]:
        with pytest.raises(ConfigError, match=msg):
            load_study(_study(tmp_path, axes, quick=bad))


def test_an_infeasible_or_bad_point_is_a_row_and_the_sweep_goes_on(tmp_path):
    p = _study(tmp_path, {"workload.parallelism.dp": [2, 3, "two"]})
    df = sweep(p, workers=1, progress=False)
    assert list(df["status"]) == ["ok", "infeasible", "error"]
    assert "not divisible" in df["error"][1] and "\n" not in df["error"][1]
    assert "parallelism.dp" in df["error"][2]
    assert df["step_time_s"].isna().tolist() == [False, True, True]


def test_same_study_same_rows_across_runs_and_worker_counts(tmp_path):
    p = _study(tmp_path, {"topology.params.oversubscription": [1, 2],
                          "workload.batch.global": [32, 64]})
    a = sweep(p, out=tmp_path / "a", workers=1, progress=False)
    b = sweep(p, out=tmp_path / "b", workers=2, progress=False)
    _same(a, b)
    ra = pd.read_parquet(tmp_path / "a" / "results.parquet")
    rb = pd.read_parquet(tmp_path / "b" / "results.parquet")
    _same(ra, rb)
    _same(ra, a)
    # a rerun into the same directory runs nothing and gives the same table
    before = {q.name: q.stat().st_mtime_ns for q in (tmp_path / "a" / "parts").iterdir()}
    c = sweep(p, out=tmp_path / "a", workers=2, progress=False)
    _same(a, c)
    assert {q.name: q.stat().st_mtime_ns for q in (tmp_path / "a" / "parts").iterdir()} == before


_CHILD = """
import sys
from sim.experiment import sweep
sweep(sys.argv[1], out=sys.argv[2], workers=1, progress=False)
"""


def test_resume_after_sigkill_loses_nothing_and_redoes_nothing(tmp_path):
    # 20 points, each a little slow so that the kill lands midway
    p = _study(tmp_path, {"workload.batch.global": [32 * k for k in range(1, 11)],
                          "topology.params.oversubscription": [1, 2]})
    out = tmp_path / "out"
    parts = out / "parts"
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(p), str(out)], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    t0 = time.monotonic()
    while time.monotonic() - t0 < 120:
        if parts.is_dir() and len(list(parts.glob("*.parquet"))) >= 3:
            break
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    before = {q.name: q.stat().st_mtime_ns for q in parts.glob("*.parquet")}
    assert 3 <= len(before) < 20
    assert not (out / "results.parquet").exists()
    df = sweep(p, out=out, workers=2, progress=False)
    after = {q.name: q.stat().st_mtime_ns for q in parts.glob("*.parquet")}
    assert len(after) == 20
    assert {k: after[k] for k in before} == before  # points redone: 0
    full = sweep(p, out=tmp_path / "full", workers=1, progress=False)
    _same(df, full)  # rows lost: 0; the table equals an uninterrupted run
    _same(pd.read_parquet(out / "results.parquet"), full)


def test_without_ray_the_ray_backend_says_how_to_install_it(tmp_path, monkeypatch):
    p = _study(tmp_path, {"workload.batch.global": [32, 64]})
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(SimError) as e:
        sweep(p, backend="ray", progress=False)
    assert str(e.value) == RAY_INSTALL and "\n" not in str(e.value)
    assert "pip install" in str(e.value)
    rc = subprocess.run([sys.executable, "-c", "import sys; sys.modules['ray'] = None; "
                         "from sim.cli import main; sys.exit(main(['sweep', sys.argv[1], "
                         "'--backend', 'ray']))", str(p)], capture_output=True, text=True)
    assert rc.returncode == 2 and rc.stderr.strip().endswith(RAY_INSTALL), rc.stderr


@pytest.mark.slow  # a local Ray cluster starts (~10-20 s); CI's slow run installs .[ray]
def test_ray_backend_gives_the_pool_rows_for_a_50_point_study(tmp_path):
    pytest.importorskip("ray")
    p = _study(tmp_path, {"workload.batch.global": [32 * k for k in range(1, 26)],
                          "assumptions.prices.H100-SXM": ["20000 USD", "30000 USD"]})
    a = sweep(p, workers=2, progress=False)
    b = sweep(p, backend="ray", workers=2, out=tmp_path / "ray", progress=False)
    assert len(a) == 50 and (a["status"] == "ok").all()
    _same(a.sort_values(["point", "seed"]), b.sort_values(["point", "seed"]))
    assert len(list((tmp_path / "ray" / "parts").glob("*.parquet"))) == 50


STUDIES = ROOT / "experiments" / "studies"
BUNDLED = ("oversubscription", "ib-vs-roce", "rail-only", "inference-slo")


@pytest.mark.parametrize("name", BUNDLED)
def test_every_bundled_study_loads_with_a_smaller_quick_grid(name):
    full = load_study(STUDIES / f"{name}.yaml")
    quick = load_study(STUDIES / f"{name}.yaml", quick=True)
    assert points(quick) and len(points(quick)) < len(points(full))  # a reduced grid
    assert set(quick.axes) == set(full.axes) and quick.metrics == full.metrics


def _quick(name: str) -> pd.DataFrame:
    df = sweep(STUDIES / f"{name}.yaml", quick=True, workers=2, progress=False)
    bad = df[df["status"] != "ok"]
    assert bad.empty, bad[["point", "status", "error"]].to_string()
    return df


def test_oversubscription_study_dense_does_not_care_moe_a_little():
    """16K H100 (Llama 3 cluster shape) at 1:1 and 7:1 above the pods: the dense 405B keeps
    its TP/PP inside a pod and its DP rings are hidden, so the step is the same and 7:1 is
    cheaper per token; DeepSeek-V3's step is slower at 7:1 (its DP and pipeline traffic
    crosses pods), by a few per cent, not more."""
    df = _quick("oversubscription")
    assert set(df["topology.routing"]) == {"ecmp"}  # the proposal's E-ECMP, 16 flows
    t = df.set_index(["topology.params.tiers[1].oversubscription", "workload.model"])
    assert t.loc[(7, "llama3.1-405b"), "step_time_s"] == pytest.approx(
        t.loc[(1, "llama3.1-405b"), "step_time_s"], rel=1e-3)
    assert t.loc[(7, "llama3.1-405b"), "usd_per_M_train_tokens"] < \
        0.95 * t.loc[(1, "llama3.1-405b"), "usd_per_M_train_tokens"]
    d1, d7 = (t.loc[(o, "deepseek-v3"), "step_time_s"] for o in (1, 7))
    assert d1 < d7 < 1.05 * d1
    assert t.loc[(7, "deepseek-v3"), "capex_network_USD"] < \
        0.6 * t.loc[(1, "deepseek-v3"), "capex_network_USD"]


def test_ib_vs_roce_study_shows_where_the_fabric_binds():
    """With the experts in one node the fabrics give the same step (only DP rings cross
    them); with every layer's all-to-all across the rails, per-flow ECMP collides and is
    slower, spraying is not (within 1% of InfiniBand); the dense job's pipeline and DP
    traffic does not bind; the disaggregated service's KV hand-off is a small part of
    TTFT on every fabric."""
    df = _quick("ib-vs-roce")
    t = df.set_index(["workload.name", "topology.routing"])["step_time_s"]
    for r in ("ecmp", "spray"):
        assert t[("Mixtral EP in node", r)] == pytest.approx(
            t[("Mixtral EP in node", "adaptive")], rel=1e-6)
        assert t[("Llama 3 70B dense", r)] == pytest.approx(
            t[("Llama 3 70B dense", "adaptive")], rel=0.01)
    assert t[("Mixtral EP across nodes", "ecmp")] > \
        1.1 * t[("Mixtral EP across nodes", "adaptive")]
    assert t[("Mixtral EP across nodes", "spray")] == pytest.approx(
        t[("Mixtral EP across nodes", "adaptive")], rel=0.01)
    ttft = df["ttft_p99_s"]
    assert ttft.max() < 1.01 * ttft.min()


def test_rail_only_study_saves_network_not_step_time_at_1k():
    """1,024 GPUs on 128-port switches: a rail of 128 NICs is one switch, so rail-only
    drops the spine tier (Wang et al. report 38-77% lower network cost); GPT-3 175B's
    TP stays in the node and its DP rings stay on their rails, so the step is the same."""
    df = _quick("rail-only")
    t = df.set_index("topology.builder")
    assert t.loc["rail_only", "capex_network_USD"] < 0.5 * t.loc["rail_optimized",
                                                                 "capex_network_USD"]
    assert t.loc["rail_only", "network_power_W"] < 0.5 * t.loc["rail_optimized",
                                                               "network_power_W"]
    for b in ("rail_only", "leaf_spine"):
        assert t.loc[b, "step_time_s"] == pytest.approx(t.loc["rail_optimized",
                                                              "step_time_s"], rel=0.005)


def test_a_changed_simulator_reruns_points_instead_of_reusing_them(tmp_path, monkeypatch):
    """The resume key holds the version and a fingerprint of the code and the bundled
    catalog: parts written by other code are not taken as this code's rows."""
    import re

    import sim.experiment as ex

    p = _study(tmp_path, {"workload.batch.global": [32, 64]})
    out = tmp_path / "res"
    a = sweep(p, out=out, workers=1, progress=False)
    assert re.fullmatch(r"fabsim \S+\+[0-9a-f]{12}", a["version"].iloc[0])
    monkeypatch.setattr(ex, "_version", lambda: "fabsim 0.0.0+edited")
    b = sweep(p, out=out, workers=1, progress=False)
    assert set(a["spec_hash"]).isdisjoint(b["spec_hash"])
    assert (b["version"] == "fabsim 0.0.0+edited").all()
    assert len(list((out / "parts").glob("*.parquet"))) == 4
