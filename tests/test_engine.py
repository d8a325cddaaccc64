"""The engine: one Simulation owns time; jobs start when asked, share its network model,
write rows to its recorder, and give the same numbers however they are run."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import sim
from sim.catalog import load_catalog
from sim.errors import ConfigError
from sim.fabric import rail_optimized
from sim.workload.serving import Lengths, ServiceJob, ServiceSpec
from sim.workload.training import TrainingJob, TrainingWorkload, simulate_training

ROOT = Path(__file__).resolve().parents[1]
CAT = load_catalog()


@pytest.fixture(scope="module")
def fab():
    return rail_optimized(node="DGX-H100", servers=4, servers_per_unit=2, leaf="QM9700",
                          spine="QM9700", link="ib-ndr")


def _train(**kw):
    base = dict(name="t", model=CAT.models["llama3-8b"], global_batch=16, micro_batch=1,
                seq_len=2048, tp=8, dp=2, n_gpus=16)
    base.update(kw)
    return TrainingWorkload(**base)


def _serve(**kw):
    base = dict(name="s", model=CAT.models["llama3-8b"], replicas=2, tp=1, rate=5.0,
                prompt=Lengths("fixed", 256), output=Lengths("fixed", 32), first_gpu=16)
    base.update(kw)
    return ServiceSpec(**base)


def test_a_job_alone_on_a_simulation_is_simulate_training(fab):
    s = sim.Simulation(fab, network="flow")
    s.add(TrainingJob(_train(), steps=2))
    out = s.run()
    ref = simulate_training(fab, _train()).step_time_s
    # every step the same, to rounding of the later start time
    assert out.steps["step_time_s"].iloc[0] == ref
    assert out.steps["step_time_s"].iloc[1] == pytest.approx(ref, rel=1e-12)
    assert out.steps["start_s"].iloc[1] == pytest.approx(ref)
    row = out.jobs.iloc[0]
    assert row["network"] == "flow" and row["end_s"] == pytest.approx(2 * ref)


def test_a_job_added_later_starts_then(fab):
    s = sim.Simulation(fab, network="flow")
    s.add(TrainingJob(_train()))
    s.add(ServiceJob(_serve(), 4.0, name="chat"), at=3.0)
    out = s.run()
    jobs = out.jobs.set_index("job")
    assert jobs.loc["chat", "start_s"] == 3.0
    req = out.requests
    assert (req["job"] == "chat").all() and req["finish_s"].notna().all()
    # arrivals are relative to the job's start; the first cannot finish before it
    assert (req["arrival_s"] >= 0).all() and jobs.loc["chat", "end_s"] >= 3.0 + 4.0


def test_overlapping_gpus_and_duplicate_names_are_refused(fab):
    s = sim.Simulation(fab)
    s.add(TrainingJob(_train()))
    with pytest.raises(ConfigError, match="both use GPUs 8-9"):
        s.add(ServiceJob(_serve(first_gpu=8), 2.0))
    with pytest.raises(ConfigError, match="two jobs are named"):
        s.add(TrainingJob(_train(first_gpu=16)))
    with pytest.raises(ConfigError, match="before now"):
        s.add(ServiceJob(_serve(), 1.0), at=-1.0)


def test_run_until_a_time_leaves_running_jobs_open(fab):
    s = sim.Simulation(fab)
    s.add(ServiceJob(_serve(), 30.0, name="chat"))
    out = s.run(until=5.0)
    assert s.now == 5.0 and math.isnan(out.jobs.iloc[0]["end_s"])


def test_random_streams_are_children_of_the_seed(fab):
    a, b = sim.Simulation(fab, seed=7), sim.Simulation(fab, seed=7)
    x, y = a.rng().random(4), b.rng().random(4)
    assert np.array_equal(x, y)
    assert not np.array_equal(a.rng().random(4), x)  # the next child differs
    assert np.array_equal(a.rng(3).random(4), np.random.default_rng(3).random(4))


def test_the_same_run_in_other_processes_gives_the_same_numbers():
    """Hash seeds and process start-up do not leak into the numbers."""
    cmd = [sys.executable, "-m", "sim.cli", "train", "--topology",
           str(ROOT / "topologies" / "dgx-h100-superpod-roce.yaml"), "--workload",
           str(ROOT / "workloads" / "mixtral-8x7b-128.yaml"), "--json"]
    outs = []
    for seed in ("0", "12345"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300,
                           check=True)
        outs.append(json.loads(r.stdout))
    assert outs[0] == outs[1]


def test_same_inputs_same_numbers_across_processes_and_hash_seeds():
    """A service (random arrivals), a training step and a collective, each run in two
    fresh processes with different PYTHONHASHSEED: byte-identical JSON (no dependence on
    set/dict iteration order, process state or hash randomisation)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    t = str(root / "topologies" / "dgx-h100-superpod-roce.yaml")
    cmds = [["serve", "--topology", t, "--service",
             str(root / "workloads" / "llama3-70b-serve-16x.yaml"), "--duration", "5s"],
            ["train", "--topology", t, "--workload",
             str(root / "workloads" / "mixtral-8x7b-256.yaml")],
            ["collective", "--topology", t, "--op", "all_to_all", "--ranks", "64",
             "--sizes", "64MiB"]]
    for cmd in cmds:
        outs = []
        for seed in ("0", "4242"):
            env = dict(os.environ, PYTHONHASHSEED=seed)
            r = subprocess.run([sys.executable, "-m", "sim.cli", *cmd, "--json"], env=env,
                               capture_output=True, text=True, cwd=root, timeout=300)
            assert r.returncode == 0, r.stderr
            outs.append(r.stdout)
        assert outs[0] == outs[1] and len(outs[0]) > 100, cmd[0]
