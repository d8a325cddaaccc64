"""Jobs side by side on one fabric: alone == standalone runs; together they share links."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sim.errors import InfeasibleError
from sim.workload.mix import load_mix, run_mix

ROOT = Path(__file__).resolve().parents[2]


def _files(tmp_path, first_service=16):
    topo = ROOT / "topologies" / "dgx-h100-superpod-2to1.yaml"
    w = yaml.safe_load((ROOT / "workloads" / "llama3-70b-1k.yaml").read_text())
    w["model"] = "llama3-8b"
    w["batch"]["global"] = 32
    w["parallelism"].update({"tp": 8, "pp": 1, "dp": 2})
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(w))
    s = yaml.safe_load((ROOT / "workloads" / "llama3-70b-serve-64x-disagg.yaml").read_text())
    s.update({"replicas": 2, "disaggregation": {"prefill_replicas": 1},
              "arrival": {"process": "poisson", "rate": 4}})
    (tmp_path / "serve.yaml").write_text(yaml.safe_dump(s))
    mix = {"kind": "mix", "name": "t", "topology": str(topo), "duration": "5s",
           "jobs": [{"name": "train", "training": "train.yaml", "first_gpu": 0,
                     "gpus": 16, "steps": 1},
                    {"name": "serve", "service": "serve.yaml", "first_gpu": first_service}]}
    p = tmp_path / "mix.yaml"
    p.write_text(yaml.safe_dump(mix))
    return p


def test_mix_runs_and_alone_matches_standalone(tmp_path):
    from sim.workload import simulate_training

    p = _files(tmp_path)
    df = run_mix(p)
    assert set(df["job"]) == {"train", "serve"}
    _, fab, _, jobs = load_mix(p)
    alone = simulate_training(fab, jobs[0].workload).step_time_s
    row = df[(df["job"] == "train") & (df["metric"] == "step_time_s")].iloc[0]
    assert row["alone"] == pytest.approx(alone, rel=1e-12)
    # together the training step can only be as fast or slower (shared links)
    assert row["in_mix"] >= row["alone"] * (1 - 1e-12)


def test_overlapping_gpus_are_rejected(tmp_path):
    p = _files(tmp_path, first_service=8)
    with pytest.raises(InfeasibleError, match="overlap"):
        load_mix(p)


@pytest.mark.slow  # two mixes of four jobs, alone and together: ~13 s
def test_moe_jobs_sharing_an_oversubscribed_unit_slow_each_other(tmp_path):
    """workloads/mix-interference.yaml: two Mixtral jobs fill one 2:1 scalable unit; their
    expert-parallel all-to-alls cross rails, hence the leaves' uplinks, which one job
    alone does not saturate and two do (demand 1.5x the uplinks: EP time x 1.5). On the
    non-blocking SuperPOD the same placement does not interact at all (this also guards
    against two jobs' transfers being merged as one group). The service in other units
    shares no link below the spine with them and is unchanged."""
    src = ROOT / "workloads" / "mix-interference.yaml"
    d = yaml.safe_load(src.read_text())
    for k in ("training", "service"):
        for j in d["jobs"]:
            if k in j:
                j[k] = str(ROOT / "workloads" / j[k])
    d["topology"] = str(ROOT / "topologies" / "dgx-h100-superpod-ib.yaml")
    (tmp_path / "nb.yaml").write_text(yaml.safe_dump(d))
    for path, nonblocking in ((src, False), (tmp_path / "nb.yaml", True)):
        df = run_mix(path).set_index(["job", "metric"])
        jobs = df.index.get_level_values(0).unique()
        trains = [j for j in jobs if j.startswith("training")]
        serve = [j for j in jobs if j.startswith("serving")][0]
        for j in trains:
            ep = df.loc[(j, "ep_exposed_s")]
            if nonblocking:
                assert df.loc[(j, "step_time_s"), "change_pct"] == pytest.approx(0, abs=1e-6)
            else:
                assert df.loc[(j, "step_time_s"), "change_pct"] > 10
                assert ep["in_mix"] / ep["alone"] == pytest.approx(1.5, rel=0.02)
            assert df.loc[(j, "dp_exposed_s"), "change_pct"] == pytest.approx(0, abs=1e-6)
        assert (df.loc[serve, "change_pct"].abs() < 1e-6).all()


@pytest.mark.parametrize("duration, warmup", [("5s", 0.5), ("400s", 40.0), ("2000s", 60.0)])
def test_a_mix_service_skips_the_one_warm_up_rule(tmp_path, duration, warmup):
    """10% of the window, at most 60 s: the rule of `fabsim serve` and the review too."""
    from sim.engine import warmup_for

    p = _files(tmp_path)
    doc = yaml.safe_load(p.read_text())
    doc["duration"] = duration
    p.write_text(yaml.safe_dump(doc))
    jobs = load_mix(p)[3]
    assert jobs[1].warmup_s == pytest.approx(warmup)
    assert warmup_for(float(duration[:-1])) == pytest.approx(warmup)
