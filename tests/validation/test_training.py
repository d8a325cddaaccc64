"""Training throughput against published runs (shared/validation/training_cases.tsv).

Slow (a few minutes: the 1T-parameter cases simulate thousands of pipeline operations),
so it runs in CI's slow pass. The bounds are the issue's targets where the model meets
them; where it does not (small H100 models, DeepSpeed ZeRO-3), the bound is the current
error so that a regression shows, and the gap is reported in the issue's note."""

from __future__ import annotations

import pytest

from sim.validation import training_cases


@pytest.fixture(scope="module")
def df(shared_dir):
    return training_cases(shared_dir)


@pytest.mark.slow
def test_every_expressible_case_runs(df):
    ok = df[df["status"] == "ok"]
    assert len(ok) >= 28
    assert set(df[df["status"] != "ok"]["case"]) == {"MAXTEXT-V4-22B"}


@pytest.mark.slow
def test_median_error_within_target(df):
    ok = df[df["status"] == "ok"]
    assert ok["error_pct"].abs().median() <= 10.0


@pytest.mark.slow
def test_narayanan_and_korthikanti_within_25pct_except_zero3(df):
    ok = df[(df["status"] == "ok") & df["case"].str.match(r"(NAR21|KOR22)")
            & ~df["case"].str.contains("ZeRO3")]
    assert ok["error_pct"].abs().max() <= 25.0, ok[["case", "error_pct"]]


@pytest.mark.slow
def test_megatron_h100_from_70b_up_within_16pct(df):
    """Under-predicted (-8..-15%) with GEMMs at the H100's power-limited rate and the
    job at its slowest GPU's pace (stragglers: +8..+13% at 768-6,144 GPUs): these runs
    also overlapped TP communication, which the table leaves exposed (-2..-7% before the
    straggler model)."""
    big = df[df["case"].isin([f"MLM-H100-WEAK-{s}" for s in
                              ("70B", "119B", "177B", "314B", "462B")])]
    assert len(big) == 5
    assert (big["error_pct"] < 0).all() and big["error_pct"].min() >= -16.0, \
        big[["case", "error_pct"]]


@pytest.mark.slow
def test_known_gaps_do_not_grow(df):
    """Over-predicted today: small H100 models (cause not found: XLA's measured H100 GEMM
    table puts their GEMM shapes near MAMF, so it is not GEMM shape; fused attention at
    its measured rate and the fp32 cross-entropy passes explain part of it) and DeepSpeed
    ZeRO-3 (gathers overlap less than modelled)."""
    e = df.set_index("case")["error_pct"]
    assert 0 < e["MLM-H100-WEAK-1.7B"] <= 45
    assert 0 < e["MLM-H100-WEAK-7.1B"] <= 35
    assert 0 < e["MLM-H100-WEAK-16B"] <= 15
    # under-predicted: with PP 1 only the last micro-batch's backward hides the fp32
    # gradient reduce-scatter (Megatron's default for bf16); the measured run hid more,
    # as 16-bit gradient reduction would (that run's flags are not reported)
    assert -25 <= e["MLM-H100-WEAK-32B"] < 0
    assert 0 < e["NAR21-T2-ZeRO3-175B-384"] <= 70


# ------------------------------------------------------- NeMo / Megatron-Bridge on H100
def _release(container: str) -> tuple:
    return tuple(int(x) for x in container.split("."))


def test_nemo_rows_agree_with_their_own_flop_counts(extra_dir):
    """Every published row's model TFLOP/s over its tokens/s is that release's FLOPs per
    token, which must match sim's formula for the catalog shape within 2%: non-causal
    attention up to NeMo 25.02, causal from Megatron-Bridge 25.09 (a check of the file's
    transcription and of the catalog shapes, e.g. Nemotron-4 340B's)."""
    import dataclasses

    from sim.catalog import load_catalog
    from sim.validation import NEMO_MODELS, read_rows, seq_tokens
    from sim.workload.models import layer_costs

    cat = load_catalog()
    checked = 0
    for r in read_rows(extra_dir, "nemo_training.tsv"):
        assert len(r) == 20 and None not in r.values(), r["row_id"]
        tok = float(r["tokens_per_s_per_gpu"])
        assert tok > 0 and int(r["gpus"]) % 8 in (0, 4), r["row_id"]
        mid = NEMO_MODELS.get(r["model"])
        if mid is None or r["model_tflops_per_gpu"] in ("-", "n/a"):
            continue
        m = cat.get("models", mid)
        seq = seq_tokens(r["seq_len"])
        m = dataclasses.replace(m, max_seq_len=max(seq, m.max_seq_len))
        causal = _release(r["container"]) >= (25, 9)
        fwd = sum(layer_costs(m, micro_batch=1, seq_len=seq, layer=i, causal=causal,
                              flash_attention=causal).flops_fwd for i in range(m.layers))
        per_token = 3 * (fwd + 2 * seq * m.hidden * m.vocab) / seq
        published = float(r["model_tflops_per_gpu"].split()[0]) * 1e12 / tok
        assert published / per_token == pytest.approx(1.0, abs=0.02), r["row_id"]
        checked += 1
    assert checked >= 45


def test_nemo_rows_spot_checked_against_the_sources(extra_dir):
    from sim.validation import read_rows

    rows = {r["row_id"]: r for r in read_rows(extra_dir, "nemo_training.tsv")}
    # NVIDIA/NeMo docs/source/performance/performance_summary.md @070a0bb: '| LLAMA2-70B |
    # 64 | 128 | 1 | 4096 | 4 | 4 | 1 | 20 | 1707 | 759 |'
    r = rows["NEMO-2407-FP8-LLAMA2-70B-64"]
    assert (r["tp"], r["pp"], r["vp"], r["tokens_per_s_per_gpu"],
            r["model_tflops_per_gpu"]) == ("4", "4", "20", "1707", "759")
    # Megatron-Bridge performance-summary.md (26.04.01): '| DGX-H100 | 64 | FP8 | 256 | 1 |
    # 8192 | 0 | 4 | 8 | 1 | 5 | n/a | 1664 | 735 |'
    r = rows["NEMO-260401-FP8-LLAMA3-70B-64"]
    assert (r["gbs"], r["pp"], r["vp"], r["tokens_per_s_per_gpu"]) == ("256", "8", "5", "1664")


@pytest.fixture(scope="module")
def nemo(extra_dir):
    from sim.validation import nemo_training_cases

    return nemo_training_cases(extra_dir)


@pytest.mark.slow
def test_nemo_large_layouts_within_10pct(nemo):
    """Out of sample (no constant was set from these rows): the 70B-405B layouts on 64-1,024
    H100s at 2-8k tokens, FP8."""
    ok = nemo[(nemo["status"] == "ok") & (nemo["gpus"] >= 64)
              & ~nemo["case"].str.startswith("NEMO-240301")]
    assert len(ok) >= 20
    assert ok["error_pct"].abs().median() <= 6.0
    assert ok["error_pct"].abs().max() <= 12.0, ok[["case", "error_pct"]]


@pytest.mark.slow
def test_nemo_known_gaps_do_not_grow(nemo):
    """Over-predicted today: the 7-13B layouts on 4-16 GPUs of NeMo 24.03-24.07 (+26-36%;
    the 25.11 Llama 3 8B run, 20% faster than 24.07's, is +13%) and the long-context runs
    (+30% at 8k to +57% at 1M tokens, where the attention core is nearly all the work)."""
    ok = nemo[nemo["status"] == "ok"]
    small = ok[ok["gpus"] <= 16]["error_pct"]
    assert len(small) >= 12 and (small > 0).all() and small.max() <= 40
    e = ok.set_index("case")["error_pct"]
    assert 0 < e["NEMO-240301-FP8-LLAMA2-7B-1024"] <= 60
    infeasible = nemo[nemo["status"].str.startswith("infeasible")]
    assert set(infeasible["model"]) <= {"Nemotron-340B"}


def test_published_rows_are_consistent_layouts(extra_dir):
    """Every row of published_training.tsv multiplies out to its GPU count, splits its
    batch into whole micro-batches per data-parallel rank and its layers over the pipeline
    (or counts embedding and loss as layers where the source says so), and names a
    catalog model; the DGX Cloud rows' tokens/s per GPU (global batch x sequence / step
    time / GPUs) are the recipes' own throughput columns."""
    from sim.catalog import load_catalog
    from sim.validation import read_rows

    cat = load_catalog()
    rows = read_rows(extra_dir, "published_training.tsv")
    assert len(rows) >= 30
    for r in rows:
        g, tp, pp, vp, cp = (int(r[k]) for k in ("gpus", "tp", "pp", "vp", "cp"))
        assert g % (tp * pp * cp) == 0, r["row_id"]
        dp = g // (tp * pp * cp)
        assert int(r["gbs"]) % (dp * int(r["mbs"])) == 0, r["row_id"]
        m = cat.get("models", r["model"])
        layers = m.layers + (2 if r["split"] == "yes" else 0)
        assert layers % (pp * vp) == 0, r["row_id"]
        assert r["metric"] in ("step_s", "mfu_pct") and r["source"], r["row_id"]
    by = {r["row_id"]: r for r in rows}
    # README_175b.md: 63099 tokens/s on 128 GPUs (BF16); README_8b.md: 81222 on 8 GPUs
    # (BF16); README_405b.md: 183664 on 576 GPUs (FP8)
    for cid, tokens_s in [("DGXC-GPT3-175B-BF16-128", 63099), ("DGXC-LLAMA3.1-8B-BF16-8", 81222),
                          ("DGXC-LLAMA3.1-405B-FP8-576", 183664)]:
        r = by[cid]
        assert int(r["gbs"]) * int(r["seq"]) / float(r["measured"]) == \
            pytest.approx(tokens_s, rel=2e-3), cid


@pytest.mark.slow
def test_published_runs_out_of_sample(extra_dir, topo_dir):
    """The other published runs (no constant was set from them). Today the model is too
    fast where compute dominates (Llama 3.1 8B on 8-128 GPUs +17..+19%, GPT-3 175B TP4
    +10..+16%) and close where TP8 communication is a large share (405B: -2..+10%,
    Nemotron-4 15B -4..+6%); the Llama 3 128K-token row (CP16) is +47%. Bounds at today's
    errors, so that a regression shows."""
    from sim.validation import published_training_cases

    d = published_training_cases(extra_dir, topo_dir)
    ok = d[d["status"] == "ok"].set_index("case")["error_pct"]
    assert len(ok) >= 38
    # MegaScale's Megatron-LM baseline on A100 (ordinary stack, no overlaps): far too
    # fast today, and more so at scale (+29% at 256 GPUs, +44% at 8-12K)
    ms = ok[ok.index.str.startswith("MEGASCALE")]
    assert len(ms) == 8 and (ms > 15).all() and ms.max() <= 50
    assert (d.set_index("case").loc[ms.index, "hardware"] == "A100").all()
    ok = ok.drop(ms.index)
    assert ok.abs().median() <= 13.0
    assert ok.drop("LLAMA3-405B-16384-CP16").abs().max() <= 20.0
    assert abs(ok["LLAMA3-405B-16384"]) <= 10.0
    assert ok["LLAMA3-405B-16384-CP16"] <= 50.0
    infeasible = d[d["status"] != "ok"]
    assert list(infeasible["case"]) == ["LLAMA3-405B-8192"]


def test_split_summary_by_sample_and_family():
    import pandas as pd

    from sim.validation import split_summary
    from sim.validation.training import hardware_family

    assert [hardware_family(a) for a in ("A100-80GB", "H200-SXM", "GB200", "TPUv5p",
                                         "MI300X")] == ["A100", "H100", "B200", "TPU", "AMD"]
    ins = pd.DataFrame({"status": ["ok", "ok", "infeasible"], "hardware": ["A100", "A100", "H100"],
                        "error_pct": [10.0, -4.0, 0.0]})
    out = pd.DataFrame({"status": ["ok"] * 3, "hardware": ["H100", "H100", "TPU"],
                        "error_pct": [20.0, 10.0, -30.0]})
    t = split_summary(ins, out).set_index(["sample", "hardware"])
    assert t.loc[("in-sample", "A100"), "rows"] == 2
    assert t.loc[("in-sample", "A100"), "median_abs_pct"] == 7.0
    assert t.loc[("in-sample", "A100"), "median_signed_pct"] == 3.0
    assert ("in-sample", "H100") not in t.index  # infeasible rows are not scored
    assert t.loc[("out-of-sample", "all"), "median_abs_pct"] == 20.0
    assert t.loc[("out-of-sample", "all"), "median_signed_pct"] == 10.0
    assert t.loc[("out-of-sample", "TPU"), "median_signed_pct"] == -30.0


def test_unknown_option_in_published_table_is_named(tmp_path, extra_dir, topo_dir):
    from sim.errors import ConfigError
    from sim.validation import published_training_cases

    lines = (extra_dir / "published_training.tsv").read_text().splitlines()
    head = [x for x in lines if x.startswith("#") or x.startswith("row_id")]
    row = next(x for x in lines if x.startswith("MEGASCALE-MLM-175B-256")).split("\t")
    cols = head[-1].split("\t")
    row[cols.index("options")] = "overlap_everything=true"
    (tmp_path / "published_training.tsv").write_text("\n".join(head + ["\t".join(row)]) + "\n")
    with pytest.raises(ConfigError, match="published_training.tsv.*options.*overlap_everything"):
        published_training_cases(tmp_path, topo_dir)
