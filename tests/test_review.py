"""Design reviews: the review file, the economics of a fleet mix (closed forms), the
verdict, the sensitivity analysis, and a small review end to end with its report."""

from __future__ import annotations

import math
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import yaml

from sim.cost import bill_of_materials, load_assumptions
from sim.errors import ConfigError
from sim.fabric import load_topology
from sim.review import load_review, run_review
from sim.review.economics import HOURS, economics
from sim.review.sensitivity import flips, perturbed
from sim.review.spec import Review, ServiceEntry, TrainingEntry
from sim.review.verdict import verdict

ROOT = Path(__file__).resolve().parents[1]


def _proposal(tmp_path: Path, name: str, link: str = "ib-ndr", leaf: str = "QM9700") -> Path:
    d = yaml.safe_load((ROOT / "topologies" / "dgx-h100-superpod-ib.yaml").read_text())
    d["name"] = name
    d["params"].update({"servers": 2, "servers_per_unit": 2, "link": link, "leaf": leaf,
                        "spine": leaf})
    p = tmp_path / f"{name}.yaml"
    p.write_text(yaml.safe_dump(d))
    return p


def _review_file(tmp_path: Path, **over) -> Path:
    w = yaml.safe_load((ROOT / "workloads" / "llama3-70b-1k.yaml").read_text())
    w.update({"model": "llama3-8b", "gpus": 16})
    w["batch"].update({"global": 32, "micro": 1})
    w["parallelism"] = {"tp": 8, "pp": 1, "dp": 2}
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(w))
    s = yaml.safe_load((ROOT / "workloads" / "llama3-70b-serve-16x.yaml").read_text())
    s.update({"model": "llama3-8b", "replicas": 2, "parallelism": {"tp": 1},
              "prompt_tokens": 256, "output_tokens": 64})
    (tmp_path / "serve.yaml").write_text(yaml.safe_dump(s))
    a, b = _proposal(tmp_path, "small-ib"), _proposal(tmp_path, "small-2x")
    doc = {"kind": "review", "name": "small", "proposals": [a.name, b.name],
           "seeds": 1, "duration": "8s",
           "training": [{"name": "train", "workload": "train.yaml", "share": 0.4}],
           "services": [{"name": "chat", "service": "serve.yaml", "share": 0.6,
                         "slo": {"ttft": "500 ms", "tpot": "50 ms"}}]}
    doc.update(over)
    p = tmp_path / "review.yaml"
    p.write_text(yaml.safe_dump(doc))
    return p


# ------------------------------------------------------------------ the file
def test_the_bundled_review_loads():
    r = load_review(ROOT / "reviews" / "fleet-1k.yaml")
    assert len(r.proposals) == 6 and r.network == "flow"
    assert sum(e.share for e in r.training + r.services) == pytest.approx(1.0)
    assert sum(e.share for e in r.services) == pytest.approx(0.67)  # inference ~2/3


@pytest.mark.parametrize("over, field", [
    ({"services": [{"name": "chat", "service": "serve.yaml", "share": 0.5,
                    "slo": {"ttft": "500 ms"}}]}, "services"),  # shares add to 0.9
    ({"services": [{"name": "chat", "service": "serve.yaml", "share": 0.6,
                    "slo": {"ttft": 2}}]}, "slo.ttft"),  # an SLO without units
    ({"services": [{"name": "chat", "service": "serve.yaml", "share": 0.6, "slo": {}}]},
     "slo"),
    ({"sensitivity": {"gpu_price": ["-10%", "+10%"]}}, "sensitivity.gpu_price"),
    ({"sensitivity": {"accelerator_price": [0.8, 1.2]}}, "sensitivity.accelerator_price"),
    ({"sensitivity": {"utilization": [0.5, 1.5]}}, "sensitivity.utilization"),
    ({"proposals": ["missing.yaml"]}, "proposals[0]"),
    ({"network": "packet"}, "network"),
    ({"colour": "blue"}, "colour"),
])
def test_bad_review_files_are_one_line_naming_the_field(tmp_path, over, field):
    p = _review_file(tmp_path, **over)
    with pytest.raises(ConfigError) as e:
        load_review(p)
    msg = str(e.value)
    assert "\n" not in msg and str(p) in msg and field in msg


# ------------------------------------------------------------------ economics
def _fake_run(f, outcomes):
    bom = bill_of_materials(f)
    return SimpleNamespace(fabric=f, bom=bom, name=f.name, file="x.yaml", training=outcomes[:1],
                           services=outcomes[1:], busy=lambda review: 0.5)


def _fake_review(assumptions=None):
    t = TrainingEntry("train", Path("t.yaml"), 0.4)
    s = ServiceEntry("chat", Path("s.yaml"), 0.6, 1.0, None)
    return Review("r", [], [t], [s], assumptions or load_assumptions()), t, s


def test_cost_per_token_is_cost_per_gpu_second_over_tokens_per_gpu_second(tmp_path):
    f = load_topology(_proposal(tmp_path, "p"))
    rv, t, s = _fake_review()
    run = _fake_run(f, [SimpleNamespace(entry=t, tokens_per_s_per_gpu=2000.0),
                        SimpleNamespace(entry=s, tokens_per_s_per_gpu=500.0)])
    rec = economics(run, rv)
    per_gpu_s = rec["usd_per_hour"] / HOURS / f.n_accelerators
    assert rec["train: usd_per_M_tokens"] == pytest.approx(per_gpu_s / 2000 * 1e6)
    assert rec["chat: usd_per_M_tokens"] == pytest.approx(per_gpu_s / 500 * 1e6)
    fleet = (0.4 * 2000 + 0.6 * 500) * f.n_accelerators
    assert rec["fleet_tokens_per_s"] == pytest.approx(fleet)
    assert rec["usd_per_M_fleet_tokens"] == pytest.approx(rec["usd_per_hour"] / HOURS /
                                                          fleet * 1e6)
    # a fleet doing useful work 60% of the time pays 1/0.6 per token
    half = economics(run, rv, utilization=0.6)
    assert half["chat: usd_per_M_tokens"] == pytest.approx(rec["chat: usd_per_M_tokens"] / 0.6)
    # a class that could not run leaves the fleet figure undefined, not optimistic
    run.services[0].tokens_per_s_per_gpu = None
    assert math.isnan(economics(run, rv)["usd_per_M_fleet_tokens"])


def test_electricity_moves_the_hourly_cost_by_energy_alone(tmp_path):
    """d($/h) = IT power x PUE x d(price): the sensitivity's electricity bounds."""
    f = load_topology(_proposal(tmp_path, "p"))
    rv, t, s = _fake_review()
    rv.sensitivity = {"electricity_usd_per_kwh": (0.04, 0.16)}
    run = _fake_run(f, [SimpleNamespace(entry=t, tokens_per_s_per_gpu=1.0),
                        SimpleNamespace(entry=s, tokens_per_s_per_gpu=1.0)])
    base = economics(run, rv)
    lo, _ = perturbed(rv, [run], "electricity_usd_per_kwh", 0.04)
    hi, _ = perturbed(rv, [run], "electricity_usd_per_kwh", 0.16)
    d = economics(run, rv, hi)["usd_per_hour"] - economics(run, rv, lo)["usd_per_hour"]
    assert d == pytest.approx(base["it_power_W"] * rv.assumptions.pue / 1e3 * 0.12)
    up, _ = perturbed(rv, [run], "accelerator_price", "+20%")
    acc = economics(run, rv, up)["capex_accelerators_USD"]
    assert acc == pytest.approx(1.2 * base["capex_accelerators_USD"])


def test_verdict_and_flips_pick_the_best_by_the_metric_direction():
    df = pd.DataFrame({"proposal": ["a", "b", "c"], "usd_per_M_fleet_tokens": [3.0, 2.0, 2.5],
                       "fleet_tokens_per_kWh": [10.0, 30.0, 20.0],
                       "capex_total_USD": [5e6, 9e6, math.nan]})
    v = {r["column"]: r for r in verdict(df)}
    assert v["usd_per_M_fleet_tokens"]["best"] == "b"
    assert v["usd_per_M_fleet_tokens"]["margin_pct"] == pytest.approx(20.0)
    assert v["fleet_tokens_per_kWh"]["best"] == "b"
    assert v["capex_total_USD"]["best"] == "a" and "no figure for P3" in \
        v["capex_total_USD"]["text"]
    sens = pd.DataFrame([
        {"assumption": "pue", "bound": "low", "setting": "1.1", "index": i, "proposal": p,
         "metric": "m", "value": x, "baseline": b}
        for i, (p, x, b) in enumerate([("a", 1.0, 3.0), ("b", 2.0, 2.0), ("c", 3.0, 2.5)])])
    out = flips(sens, {"m": True})
    assert out == ["m: the best proposal changes from P2 to P1 at pue 1.1"]


# ------------------------------------------------------------------ end to end
class _Sections(HTMLParser):
    def __init__(self):
        super().__init__()
        self.sections, self.svgs, self.tables = [], 0, []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section":
            self.sections.append(a.get("id"))
        elif tag == "svg":
            self.svgs += 1
        elif tag == "table":
            self.tables.append(a.get("id"))


def test_a_small_review_end_to_end(tmp_path):
    rv = load_review(_review_file(tmp_path))
    res = run_review(rv)
    df = res.table
    assert list(df["proposal"]) == ["small-ib", "small-2x"]
    for c in ("train: usd_per_M_tokens", "chat: usd_per_M_tokens", "usd_per_M_fleet_tokens"):
        assert df[c].notna().all() and (df[c] > 0).all()
    # the service ran at the highest rate within its SLO, and that rate met it
    for run in res.runs:
        c = run.services[0].capacity
        assert c.rate_rps > 0
        assert c.summary["ttft_p99_s"] <= 0.5 and c.summary["tpot_p99_s"] <= 0.05
    assert len(res.bottlenecks) == 2 and all("train" in b for b in res.bottlenecks)
    paths = __import__("sim.review.report", fromlist=["write_review"]).write_review(
        tmp_path / "out", res)
    p = _Sections()
    p.feed(paths["html"].read_text())
    assert p.sections[0] == "verdict"  # the verdict first
    assert {"inputs", "assumptions", "comparison"} <= set(p.tables)
    assert p.svgs >= 3
    long = pd.read_parquet(paths["parquet"])
    assert {"proposals", "sensitivity"} <= set(long["table"])
    assert (tmp_path / "out" / "cost_breakdown.svg").exists()
    assert (tmp_path / "out" / "cost_breakdown.png").exists()


def test_a_price_of_no_part_is_a_one_line_error_not_a_no_op(tmp_path):
    """`prices: {H100: ...}` (the catalog's id is H100-SXM) used to change nothing."""
    (tmp_path / "a.yaml").write_text("prices: {H100: 20000 USD}\n")
    p = _review_file(tmp_path, assumptions="a.yaml")
    with pytest.raises(ConfigError) as e:
        run_review(load_review(p))
    msg = str(e.value)
    assert "\n" not in msg and "a.yaml" in msg and "prices.H100" in msg and "H100-SXM" in msg
    (tmp_path / "b.yaml").write_text("powers: {H100-SXM.idle: 80 W, QM9700: 700 W}\n")
    from sim.cost import check_parts, load_assumptions

    f = load_topology(_proposal(tmp_path, "p"))
    check_parts(load_assumptions(tmp_path / "b.yaml"), [bill_of_materials(f)])  # known parts


def test_the_cli_review_is_the_same_on_one_or_two_workers(tmp_path, capsys):
    """Same inputs and seeds, same numbers, whatever the process count."""
    import json

    from sim.cli import main

    p = _review_file(tmp_path)
    outs = []
    for workers in ("1", "2"):
        assert main(["review", str(p), "--json", "--workers", workers]) == 0
        outs.append(json.loads(capsys.readouterr().out))
    assert outs[0]["proposals"] == outs[1]["proposals"]
    assert outs[0]["verdict"] == outs[1]["verdict"]
    assert outs[0]["meta"]["network"] == "flow"
