"""The layout search: `auto` fields in workload files, legal candidates, the search's
invariants, and its errors."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from sim.catalog import load_catalog
from sim.errors import ConfigError, InfeasibleError
from sim.fabric import rail_optimized
from sim.workload.training import (
    TrainingWorkload,
    candidates,
    check,
    format_plan,
    load_workload,
    resolve,
    search,
    simulate_training,
)

CAT = load_catalog()
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def fab16():
    return rail_optimized(node="DGX-H100", servers=2, servers_per_unit=2, leaf="QM9700",
                          spine="QM9700", link="ib-ndr")


def _llama(**kw) -> TrainingWorkload:
    base = dict(name="llama", model=CAT.models["llama3-8b"], global_batch=16, micro_batch=1,
                seq_len=4096, zero=1, recompute="none")
    base.update(kw)
    return TrainingWorkload(**base)


def _write(tmp_path, **over) -> Path:
    doc = {"kind": "training", "model": "llama3-8b",
           "batch": {"global": 16, "micro": 1, "seq_len": 4096},
           "parallelism": {"tp": 8, "pp": 1, "dp": 2}}
    for k, v in over.items():
        doc[k] = v
    p = tmp_path / "w.yaml"
    p.write_text(yaml.safe_dump(doc))
    return p


# ------------------------------------------------------------------ YAML
def test_bundled_auto_workload_searches_every_field():
    w = load_workload(ROOT / "workloads" / "gpt3-175b-auto.yaml")
    assert w.auto == {"tp", "pp", "dp", "cp", "ep", "vpp", "zero", "micro_batch", "recompute"}
    assert w.global_batch == 1536 and w.seq_len == 2048


def test_partial_auto_derives_dp_and_keeps_the_rest(tmp_path):
    w = load_workload(_write(tmp_path, parallelism={"tp": 4, "pp": "auto"}))
    assert w.auto == {"pp", "dp"} and w.tp == 4
    w = load_workload(_write(tmp_path, parallelism={"tp": "auto", "dp": 2}))
    assert w.auto == {"tp"} and w.dp == 2  # a given dp stays given


def test_plain_workload_has_nothing_auto_and_resolve_returns_it(tmp_path, fab16):
    w = load_workload(_write(tmp_path))
    assert w.auto == frozenset()
    assert resolve(fab16, w) is w


@pytest.mark.parametrize("over, field", [
    ({"parallelism": {"tp": "automatic"}}, "parallelism.tp"),
    ({"parallelism": "automatic"}, "parallelism"),
    ({"parallelism": {"tp": 8, "sequence_parallel": "auto"}}, "parallelism.sequence_parallel"),
    ({"batch": {"global": "auto", "seq_len": 4096}}, "batch.global"),
    ({"batch": {"global": 16, "micro": "automatic", "seq_len": 4096}}, "batch.micro"),
    ({"options": {"flash_attention": "auto"}}, "options.flash_attention"),
])
def test_bad_auto_is_a_one_line_config_error(tmp_path, over, field):
    p = _write(tmp_path, **over)
    with pytest.raises(ConfigError) as e:
        load_workload(p)
    msg = str(e.value)
    assert "\n" not in msg and str(p) in msg and field in msg


def test_unresolved_workload_cannot_run(fab16, tmp_path):
    w = load_workload(_write(tmp_path, parallelism={"tp": "auto"}))
    with pytest.raises(ConfigError, match=r"parallelism.tp, parallelism.dp are `auto`: plan the layout") as e:
        simulate_training(fab16, w, network="analytical")
    assert "\n" not in str(e.value)


# ------------------------------------------------------------- candidates
def test_every_candidate_is_legal_and_fixed_fields_stay_fixed(fab16):
    w = _llama(tp=4, auto=frozenset({"pp", "dp", "vpp", "micro_batch", "recompute"}))
    cs = candidates(fab16, w)
    assert cs
    for c in cs:
        check(c, fab16)  # raises if not
        assert c.tp == 4 and c.zero == 1 and c.cp == 1 and c.ep == 1 and not c.auto
        assert c.gpus == 16
        assert c.vpp == 1 or c.schedule == "interleaved"
    assert {c.pp for c in cs} >= {1, 2, 4}
    assert {c.recompute for c in cs} == {"none", "selective", "full"}


def test_tp_stays_in_the_scale_up_domain(fab16):
    cs = candidates(fab16, _llama(auto=frozenset({"tp", "pp", "dp"})))
    assert {c.tp for c in cs} == {1, 2, 4, 8}  # one DGX H100: 8 GPUs


# ---------------------------------------------------------------- search
@pytest.fixture(scope="module")
def planned(fab16):
    w = _llama(auto=frozenset({"tp", "pp", "dp", "vpp", "micro_batch"}))
    return w, search(fab16, w, top=5, rank=3)


def test_search_counts_add_up_and_best_is_no_slower(planned):
    w, r = planned
    c = r.counts
    assert c["enumerated"] == c["pruned_check"] + c["pruned_memory"] + \
        c["pruned_dominated"] + c["pruned_bound"] + c["simulated_analytical"]
    assert c["simulated_flow"] == 3 and len(r.table) == c["simulated_analytical"]
    ok = r.table[r.table.status == "ok"]
    flow = ok[ok.network == "flow"]
    best = r.table.iloc[0]
    assert best.network == "flow" and best.step_time_s == pytest.approx(
        r.best_result.step_time_s)
    # the best is the fastest on the flow model of those re-ranked on it, and every other
    # candidate was slower on the analytical model than the re-ranked ones
    assert (best.step_time_s <= flow.step_time_s + 1e-12).all()
    rest = ok[ok.network == "analytical"]
    assert (rest.step_time_analytical_s >= flow.step_time_analytical_s.max() - 1e-12).all()
    assert not r.best.auto and r.best.tp * r.best.pp * r.best.dp == 16
    assert "beats" in r.why and "\n" not in r.why
    text = format_plan(r, top=5)
    assert "enumerated" in text and "Best:" in text


def test_search_is_no_slower_than_a_hand_written_layout(fab16, planned):
    _, r = planned
    hand = _llama(tp=8, dp=2, recompute="selective")  # a reasonable layout for 8B on 16
    t_hand = simulate_training(fab16, hand, network="flow").step_time_s
    assert r.best_result.step_time_s <= t_hand * (1 + 1e-9)


def test_cost_objective_ranks_by_gpu_seconds_per_token(fab16):
    w = _llama(tp=8, dp=2, auto=frozenset({"micro_batch"}))
    r = search(fab16, w, objective="cost", top=3, rank=2)
    flow = r.table[r.table.network == "flow"]
    assert list(flow.gpu_s_per_token) == sorted(flow.gpu_s_per_token)
    with pytest.raises(ConfigError, match="objective"):
        search(fab16, w, objective="money")


def test_model_that_fits_nowhere_is_one_infeasible_line(fab16):
    w = dataclasses.replace(_llama(model=CAT.models["gpt3-175b"], seq_len=2048),
                            auto=frozenset({"tp", "pp", "dp", "zero", "recompute"}))
    with pytest.raises(InfeasibleError) as e:
        search(fab16, w)
    msg = str(e.value)
    assert "\n" not in msg and "no layout" in msg and "GiB per GPU but" in msg
    assert "79.6 GiB" in msg  # an H100 SXM: 81,559 MiB (catalog)
