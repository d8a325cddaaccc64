"""Serving throughput against published runs: TensorRT-LLM's static-batch tables
(shared/validation/inference.tsv and further releases in experiments/validation/
trtllm_perf.tsv) and MLPerf Inference v4.1 Llama 2 70B on 8x H100."""

from __future__ import annotations

import pytest

from sim.validation import mlperf_cases, trtllm_attention, trtllm_cases, trtllm_ifb_cases


@pytest.fixture(scope="module")
def static(shared_dir, extra_dir):
    return trtllm_cases(shared_dir, extra_dir)


def test_trtllm_rows_of_the_shared_file_within_20_percent(static):
    own = static[static["source"].str.startswith("inference.tsv")]
    assert len(own) == 5  # four H100 rows (one from the notes column) and the A100 row
    assert own["error_pct"].abs().max() <= 20.0, own[["case", "error_pct"]]


def test_further_published_releases(static):
    """Out-of-sample rows (v0.6.1 A100 / Llama 2 7B, v0.8.0, v0.9.0): median |error| per
    release under 15%; the worst rows (A100 70B at v0.8.0, +37%) are reported in the note,
    the bound only guards against regressions."""
    more = static[~static["source"].str.startswith("inference.tsv")].copy()
    assert len(more) == 42
    more["release"] = more["case"].str.split("-").str[1]
    med = more.groupby("release")["error_pct"].apply(lambda e: e.abs().median())
    assert (med <= 15.0).all(), med
    assert more["error_pct"].abs().max() <= 40.0


def test_xqa_release_boundary():
    assert trtllm_attention("v0.6.1") == "per_query_head"
    assert trtllm_attention("0.8.0") == "grouped"
    assert trtllm_attention("0.10.0") == "grouped"


def test_ifb_rows_file(extra_dir):
    """The in-flight-batching rows: 100 distinct (GPU, model, precision, TP, lengths) of the
    v0.11 perf overview, each with its engine settings; a few values checked by hand
    against the doc."""
    import csv

    with open(extra_dir / "trtllm_ifb.tsv", newline="") as fh:
        rows = list(csv.DictReader((ln for ln in fh if not ln.startswith("#")),
                                   delimiter="\t"))
    got = {(r["gpu"], r["model"], r["precision"], r["tp"], r["input"], r["output"]):
           float(r["out_tok_s"]) for r in rows}
    assert len(rows) == len(got) == 100
    assert got[("H100", "llama2-70b", "fp8", "2", "128", "128")] == 6502.44
    assert got[("H100", "llama3-70b", "fp8", "8", "128", "2048")] == 10887.34
    assert got[("A100", "mixtral-8x7b", "fp16", "2", "2048", "2048")] == 1710.53
    s70 = {(r["tp"], r["input"], r["output"]): (r["max_batch"], r["max_num_tokens"])
           for r in rows if r["model"] == "llama2-70b"}
    assert s70[("8", "128", "2048")] == ("1024", "16384")  # the doc's special case
    assert s70[("8", "128", "128")] == ("8192", "16384")
    assert {r["scheduler"] for r in rows} == {"guaranteed_no_evict"}


@pytest.mark.slow
def test_ifb_rows(extra_dir):
    """TensorRT-LLM 0.11 in-flight batching, 100 rows. The runtime's host time per request
    is derived from the 24 dense H100 FP8 rows (their median error is zero); the other 76
    are out of sample: median |error| about 11%, max 59% with TensorRT-LLM's batch x
    vocabulary buffers taken from the KV cache (87% without, at stop 10). A100, FP16 and MoE rows stay
    optimistic (see the note), so the bounds also guard that known gap."""
    d = trtllm_ifb_cases(extra_dir)
    assert (d["status"] == "ok").all()
    h100_fp8 = d[d["case"].str.contains("-H100-") & d["case"].str.contains("-fp8-") &
                 ~d["case"].str.contains("mixtral")]
    assert len(h100_fp8) == 24 and abs(h100_fp8["error_pct"].median()) <= 1.0
    rest = d.drop(h100_fp8.index)
    assert rest["error_pct"].abs().median() <= 15.0
    assert d["error_pct"].min() >= -30.0 and d["error_pct"].max() <= 70.0


@pytest.fixture(scope="module")
def mlperf(shared_dir, extra_dir):
    return mlperf_cases(shared_dir, extra_dir)


def test_mlperf_prompt_lengths_are_the_data_set(extra_dir):
    """The 24,576 input lengths of the MLPerf llama2-70b pickle: count, range and sum as a
    third party's digest-checked extraction of the official file records them."""
    from sim.validation import mlperf_prompt_lengths

    p = mlperf_prompt_lengths(extra_dir)
    assert len(p.values) == 24576 and min(p.values) == 48 and max(p.values) == 1021
    assert sum(p.values) == 5_463_976 and p.mean == pytest.approx(222.33, abs=0.01)


def test_mlperf_output_lengths_are_the_data_sets_pairs(extra_dir):
    """The data set's reference output lengths, line by line with the prompts; scaled to
    the run's 290.3 tokens per sample and capped at max_new_tokens 1024; the MLPerf
    service draws (prompt, output) pairs."""
    from sim.validation import mlperf_output_lengths, mlperf_service
    from sim.workload.serving import paired_lengths

    ref = mlperf_output_lengths(extra_dir)
    assert len(ref.values) == 24576 and sum(ref.values) == 5_379_553
    assert min(ref.values) == 3 and max(ref.values) == 1016
    scaled = mlperf_output_lengths(extra_dir, 290.3)
    assert max(scaled.values) == 1024 and scaled.mean == pytest.approx(290.3, rel=0.01)
    s = mlperf_service(extra_dir, 290.3, 896, arrival="all-at-once", rate=10.0)
    assert paired_lengths(s.prompt, s.output)


def test_mlperf_published_runs_parse(shared_dir, extra_dir):
    """Both systems' published runs read from their files: the H100 from the shared table,
    the H200 from experiments/validation, with the run settings NVIDIA's configs give."""
    from sim.validation import MLPERF_SYSTEMS, first_count, mlperf_published

    pubs = {p["system"]: p for p in mlperf_published(shared_dir, extra_dir)}
    assert set(pubs) == set(MLPERF_SYSTEMS) == {"H100", "H200"}
    h200 = pubs["H200"]
    assert first_count(h200["offline"]["value"]) == 31302.7
    assert first_count(h200["server"]["value"].split("(", 1)[1]) == 100.35
    assert MLPERF_SYSTEMS["H200"].tp * MLPERF_SYSTEMS["H200"].engines == 8
    assert MLPERF_SYSTEMS["H100"].tp * MLPERF_SYSTEMS["H100"].engines == 8


@pytest.mark.slow
def test_mlperf_offline_within_15_percent(mlperf):
    """Out of sample: the data set's own prompts and reference outputs, NVIDIA's settings,
    and TensorRT-LLM's host time per request derived from other runs (trtllm_ifb.tsv)."""
    assert abs(mlperf.iloc[0]["error_pct"]) <= 15.0


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="Server max rate over-predicted by ~26% (see note): "
                   "at the rate the real Server runs (0.88 of its Offline) its replicas hold "
                   "~840 requests at ~155 ms per token; the model's run far from saturation")
def test_mlperf_server_within_20_percent(mlperf):
    assert abs(mlperf.iloc[1]["error_pct"]) <= 20.0


@pytest.mark.slow
def test_mlperf_server_over_predicted_at_most_30_percent(mlperf):
    """Guards the known gap from growing."""
    assert mlperf.iloc[1]["case"] == "MLPINF41-H100x8-SRV"
    assert 0 < mlperf.iloc[1]["error_pct"] <= 30.0


@pytest.mark.slow
def test_mlperf_h200_out_of_sample(mlperf):
    """NVIDIA's H200 x8 submission (TP1 x 8 engines, batch 806 Offline, 896 Server), not used for any constant:
    Offline within 15% and the highest Server rate within 20%, as for the H100 target."""
    got = mlperf.set_index("case")["error_pct"]
    assert abs(got["MLPINF41-H200x8-OFF"]) <= 15.0
    assert abs(got["MLPINF41-H200x8-SRV"]) <= 20.0


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="at the published 74.42 samples/s the model's "
                   "replicas run far below saturation (p99 TPOT ~57 ms vs 175 ms measured): "
                   "its Server iterations are cheaper than the real ones, see the note")
def test_mlperf_server_latencies_at_the_published_rate(mlperf):
    at = mlperf[mlperf["case"].str.startswith("MLPINF41-H100x8-SRV ")]
    assert list(at["metric"]) == ["p99 TTFT (ms)", "mean TTFT (ms)", "p99 TPOT (ms)"]
    assert at["error_pct"].abs().max() <= 20.0
