"""Validation against published measurements (``shared/validation/*.tsv``).

Each function reads the published numbers from the TSV files as they are, builds the
fabric the measurement ran on from the bundled catalog, predicts the same quantity and
returns a tidy DataFrame (case, size, measured, predicted, error %). No constant is fitted
per case: every prediction uses the same catalog and library constants.

The files live outside the package (the project's shared folder); the directory is
``$FABSIM_VALIDATION_DIR`` or ``../shared/validation`` beside the repository.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
import re
from pathlib import Path

import pandas as pd

from .collectives import collective_time
from .errors import ConfigError, InfeasibleError, SimError
from .fabric import nvswitch_node
from .spec import Node

__all__ = ["validation_dir", "collective_cases", "summarize_errors", "training_cases",
           "trtllm_cases", "trtllm_ifb_cases", "mlperf_cases", "mlperf_offline", "mlperf_server"]


def validation_dir() -> Path:
    """Where the published measurements are."""
    env = os.environ.get("FABSIM_VALIDATION_DIR")
    d = Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "validation"
    if not d.is_dir():
        raise ConfigError(f"validation data not found at {d} (set FABSIM_VALIDATION_DIR)")
    return d


def _tsv(name: str) -> list[dict]:
    path = validation_dir() / name
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def _num(text: str) -> float:
    m = re.match(r"\s*([-+]?\d+(?:\.\d+)?)", text)
    if not m:
        raise ConfigError(f"cannot read a number from {text!r}", file="collective_sweeps.tsv")
    return float(m.group(1))


def _peak(fabric, op: str, algorithm: str) -> tuple[float, int]:
    """Highest predicted busbw (GB/s) over 1 MiB .. 16 GiB, and the size where it is."""
    best = (0.0, 0)
    n = 2**20
    while n <= 2**34:
        r = collective_time(fabric, op, fabric.n_accelerators, n, algorithm)
        best = max(best, (r.busbw_Bps / 1e9, n))
        n *= 2
    return best


def collective_cases() -> pd.DataFrame:
    """Predicted vs measured NCCL collectives: the DGX H100 and B200 8-GPU all-reduce
    sweeps (busbw per size) and the GTC25 8-GPU all-reduce and all-to-all peaks."""
    rows = []
    nodes = {"DGXH100": "DGX-H100", "B200": "DGX-B200"}
    fabrics = {k: nvswitch_node(v) for k, v in nodes.items()}
    for r in _tsv("collective_sweeps.tsv"):
        sweep = r["sweep_id"]
        key = "DGXH100" if sweep.startswith("DGXH100") else "B200"
        n = int(r["size_bytes"])
        meas = _num(r["busbw_GBps"])
        if meas <= 0:
            continue  # 8-byte rows print busbw 0.00: compare times there instead
        res = collective_time(fabrics[key], "all_reduce", 8, n)
        rows.append({"case": sweep, "bytes": n, "metric": "busbw_GBps", "measured": meas,
                     "predicted": res.busbw_Bps / 1e9,
                     "algorithm": f"{res.algorithm}/{res.protocol}"})
    coll = {r["case_id"]: r for r in _tsv("collectives.tsv")}
    # GTC25 slide 12: PCIe Gen6 | NVLink3 A100 | NVLink4 H100 | NVLink4+SHARP H100 |
    # NVLink5 B200 | NVLink5+SHARP B200 (busbw, peak of sweep); PCIe is not modelled.
    ar = [_num(x) for x in coll["COLL-GTC25-AR-8GPU"]["value"].split("|")]
    for label, node, algo, meas in (("A100 NVLink3 ring", "DGX-A100", "ring", ar[1]),
                                    ("H100 NVLink4 ring", "DGX-H100", "ring", ar[2]),
                                    ("H100 NVLink4 NVLS", "DGX-H100", "nvls", ar[3]),
                                    ("B200 NVLink5 ring", "DGX-B200", "ring", ar[4]),
                                    ("B200 NVLink5 NVLS", "DGX-B200", "nvls", ar[5])):
        pred, at = _peak(nvswitch_node(node), "all_reduce", algo)
        rows.append({"case": f"GTC25 all-reduce {label}", "bytes": at,
                     "metric": "peak_busbw_GBps", "measured": meas, "predicted": pred,
                     "algorithm": algo})
    # slide 13: PCIe Gen5 2x4 | PCIe Gen6 2x4 | NVLink3 A100 | NVLink4 H100 | NVLink5 B200
    a2a = [_num(x) for x in coll["COLL-GTC25-A2A-8GPU"]["value"].split("|")]
    for label, node, meas in (("A100 NVLink3", "DGX-A100", a2a[2]),
                              ("H100 NVLink4", "DGX-H100", a2a[3]),
                              ("B200 NVLink5", "DGX-B200", a2a[4])):
        pred, at = _peak(nvswitch_node(node), "all_to_all", "direct")
        rows.append({"case": f"GTC25 all-to-all {label}", "bytes": at,
                     "metric": "peak_busbw_GBps", "measured": meas, "predicted": pred,
                     "algorithm": "direct"})
    df = pd.DataFrame(rows)
    df["error_pct"] = (df["predicted"] / df["measured"] - 1) * 100
    return df


def summarize_errors(df: pd.DataFrame) -> pd.DataFrame:
    """Median and max |error| per case family and size band (>= 1 MiB or below)."""
    d = df.copy()
    d["family"] = d["case"].str.replace(r" (A100|H100|B200).*", "", regex=True)
    d["band"] = ["large (>= 1 MiB)" if b >= 2**20 else "small (< 1 MiB)" for b in d["bytes"]]
    d["abs_err"] = d["error_pct"].abs()
    return d.groupby(["family", "band"])["abs_err"].agg(["count", "median", "max"]).round(1)


# ------------------------------------------------------------------ training
def _int(text: str, default: int | None = None) -> int | None:
    m = re.match(r"\s*(\d+)", str(text))
    return int(m.group(1)) if m else default


def _training_fabric(gpu: str, n_gpus: int):
    """The cluster a case ran on: DGX A100 with 8x HDR (Selene) or DGX H100 with 8x NDR
    (Eos), rail-optimized SuperPOD style; three tiers when two cannot hold it."""
    from .fabric import rail_optimized

    servers = max(1, math.ceil(n_gpus / 8))
    if gpu.startswith("A100"):  # DGX SuperPOD A100: 20 servers per unit, 40-port HDR
        kw = dict(node="DGX-A100", leaf="QM8700", spine="QM8700", link="ib-hdr",
                  servers_per_unit=20)
        radix = 40
    else:  # DGX SuperPOD H100: 32 servers per unit, 64-port NDR
        kw = dict(node="DGX-H100", leaf="QM9700", spine="QM9700", link="ib-ndr",
                  servers_per_unit=32)
        radix = 64
    leaves = math.ceil(servers / kw["servers_per_unit"]) * 8
    if leaves <= radix:  # two tiers: every leaf still reaches every spine
        return rail_optimized(servers=servers, **kw)
    # three tiers: pods of as many units as half-radix spines can serve
    return rail_optimized(servers=servers, core=kw["spine"],
                          units_per_pod=max(1, radix // 2 // 8), **kw)


def training_cases() -> pd.DataFrame:
    """Predicted vs measured training throughput for every case of training_cases.tsv that
    the simulator can express (shapes and layouts given)."""
    from .workload.models import read_model
    from .workload.training import TrainingWorkload, simulate_training

    rows = []
    for r in _tsv("training_cases.tsv"):
        cid = r["case_id"]
        layers, hidden, heads = _int(r["layers"]), _int(r["hidden"]), _int(r["heads"])
        tp, pp, dp = _int(r["TP"]), _int(r["PP"], 1), _int(r["DP"])
        if None in (layers, hidden, heads, tp, dp) or r["gpu"][:4] not in ("A100", "H100"):
            rows.append({"case": cid, "status": "not expressible (shape or layout n/r)"})
            continue
        gpus = _int(r["num_gpus"])
        vocab = _int(r["vocab"])
        seq = _int(r["seq_len"])
        mbs = _int(r["micro_batch"], 1)
        gbs = _int(r["global_batch_seqs"])
        h100 = r["gpu"].startswith("H100")
        node = Node({"name": cid, "layers": layers, "hidden": hidden, "heads": heads,
                     "vocab": vocab, "max_seq_len": seq, "ffn": 4 * hidden,
                     "tied_embeddings": not h100}, "training_cases.tsv", cid)
        model = read_model(cid, node)
        rec = r["act_recompute"].lower()
        recompute = "full" if rec.startswith("full") else "selective" if "selective" in rec \
            else "none"
        zero = 3 if "zero-3" in r["zero_fsdp"].lower() else 1 if "distributed" in \
            r["zero_fsdp"].lower() else 0
        # fp16 runs (Narayanan) reduce fp16 gradients; bf16 and "mixed" runs are taken as
        # bf16, whose gradients Megatron-LM reduces in fp32
        prec = "fp16" if r["precision"].lower().startswith("fp16") and \
            "bf16" not in r["precision"].lower() else "bf16"
        vpp = 1
        inter = r["VPP_or_interleave"]
        m = re.search(r"\((\d+)\)|(\d+) stages", inter)
        if m and pp > 1:  # "interleaved (3)": layers per virtual stage
            per = int(m.group(1) or m.group(2))
            vpp = max(1, layers // pp // per)
        w = TrainingWorkload(
            name=cid, model=model, global_batch=gbs, micro_batch=mbs, seq_len=seq,
            precision=prec, tp=tp, pp=pp, dp=dp, vpp=vpp, zero=zero,
            sequence_parallel=("sequence parallel" in rec or "+ sp" in rec or h100) and tp > 1,
            recompute=recompute, schedule="interleaved" if vpp > 1 else "1f1b",
            flash_attention=h100, n_gpus=tp * pp * dp)
        try:
            fab = _training_fabric(r["gpu"], gpus)
            res = simulate_training(fab, w)
        except SimError as e:
            rows.append({"case": cid, "status": f"infeasible: {e}"})
            continue
        metric = r["measured_metric"]
        meas = _num(r["measured_value"])
        B, s, L, h, V = gbs, seq, layers, hidden, vocab
        if "iteration time" in metric:
            pred, kind = res.step_time_s, "step time (s)"
        elif cid.startswith("NAR21"):  # Narayanan Eq. 3, with recomputation
            flops = 96 * B * s * L * h * h * (1 + s / (6 * h) + V / (16 * L * h))
            pred, kind = flops / (res.step_time_s * gpus) / 1e12, "TFLOP/s/GPU (Eq. 3)"
        else:  # Megatron-LM model FLOPs: 3 x forward, no recomputation
            flops = 72 * B * s * L * h * h * (1 + s / (6 * h) + V / (12 * L * h))
            pred, kind = flops / (res.step_time_s * gpus) / 1e12, "TFLOP/s/GPU (model)"
        rows.append({"case": cid, "status": "ok", "metric": kind, "measured": meas,
                     "predicted": pred, "error_pct": (pred / meas - 1) * 100,
                     "gpus": gpus, "mfu": res.mfu, "step_s": res.step_time_s,
                     "bubble_s": res.breakdown["pp_bubble_and_wait"],
                     "dp_s": res.breakdown["dp_exposed"], "tp_s": res.breakdown["tp_exposed"]})
    return pd.DataFrame(rows)


# NVIDIA's published NeMo / Megatron-Bridge pre-training throughput on DGX-H100
# (experiments/validation/nemo_training.tsv): model names of those tables -> catalog ids
_NEMO_MODELS = {"GPT3-175B": "gpt3-175b", "LLAMA2-7B": "llama2-7b", "LLAMA2-13B": "llama2-13b",
                "LLAMA2-70B": "llama2-70b", "LLAMA3-8B": "llama3-8b", "LLAMA3_8B": "llama3-8b",
                "LLAMA3-70B": "llama3-70b", "LLAMA3_70B": "llama3-70b",
                "LLAMA3.1_405B": "llama3.1-405b", "Nemotron-340B": "nemotron4-340b"}


def _seq(text: str) -> int:
    """'8192' or '128K' (x 1024) as tokens."""
    t = text.strip().upper()
    return int(t[:-1]) * 1024 if t.endswith("K") else int(t)


def nemo_training_cases() -> pd.DataFrame:
    """Predicted vs published tokens/s per GPU of NeMo / Megatron-Bridge pre-training on
    DGX-H100 (``experiments/validation/nemo_training.tsv``), with each row's published
    layout and the settings of NVIDIA's performance recipes: the distributed optimizer
    (Megatron FSDP where the table says so), bf16 gradient reduction
    (``grad_reduce_in_fp32 = False`` in scripts/performance), sequence parallelism with TP,
    no recomputation. Rows of models the catalog lacks, or without a published precision,
    or whose layers do not split evenly over the pipeline, are listed as not expressible."""
    from .catalog import load_catalog
    from .workload.training import TrainingWorkload, simulate_training

    cat = load_catalog()
    rows = []
    steps: dict = {}  # layout -> step time (s), or the reason it cannot run
    for r in _extra_rows("nemo_training.tsv"):
        cid = r["row_id"]
        base = {"case": cid, "container": r["container"], "model": r["model"],
                "precision": r["precision"], "gpus": _int(r["gpus"]),
                "measured": float(r["tokens_per_s_per_gpu"])}
        mid = _NEMO_MODELS.get(r["model"])
        prec = r["precision"].lower()
        if mid is None or prec not in ("fp8", "bf16"):
            why = "model not in the catalog" if mid is None else "precision not published"
            rows.append({**base, "status": f"not expressible: {why}"})
            continue
        model = cat.get("models", mid)
        seq = _seq(r["seq_len"])
        if seq > model.max_seq_len:  # the long-context runs extend the model's RoPE
            model = dataclasses.replace(model, max_seq_len=seq)
        gpus = _int(r["gpus"])
        tp, pp, cp = _int(r["tp"]), _int(r["pp"]), _int(r["cp"])
        vp = _int(r["vp"], 1)
        ep = _int(r["ep"], 1)
        fsdp = _int(r["fsdp"], 0)
        gbs, mbs = _int(r["gbs"]), _int(r["mbs"])
        dp = gpus // (tp * pp * cp)
        # Llama 3.1 405B's 126 layers over 64 chunks: NeMo's recipes count the embedding
        # and the loss as layers in the pipeline split (account_for_*_in_pipeline_split)
        split = model.layers % (pp * vp) != 0
        w = TrainingWorkload(
            name=cid, model=model, global_batch=gbs, micro_batch=mbs, seq_len=seq,
            precision=prec, tp=tp, pp=pp, dp=dp, cp=cp, ep=ep, vpp=vp,
            zero=3 if fsdp else 1, grad_reduce_bytes=2, sequence_parallel=tp > 1,
            recompute="none", flash_attention=True, split_counts_embedding_and_loss=split,
            n_gpus=gpus)
        # revisions of one page repeat a layout with other measurements: simulate it once
        key = (mid, prec, seq, gpus, tp, pp, cp, vp, ep, fsdp, gbs, mbs)
        if key not in steps:
            try:
                steps[key] = simulate_training(_training_fabric("H100", gpus), w).step_time_s
            except SimError as e:
                steps[key] = e
        if isinstance(steps[key], SimError):
            rows.append({**base, "status": f"infeasible: {steps[key]}"})
            continue
        pred = gbs * seq / (steps[key] * gpus)
        rows.append({**base, "status": "ok", "predicted": pred,
                     "error_pct": (pred / base["measured"] - 1) * 100,
                     "layout": f"tp{tp} pp{pp} vp{vp} cp{cp} dp{dp}{' fsdp' if fsdp else ''}"
                               f" gbs{gbs} mbs{mbs} seq{seq}"})
    return pd.DataFrame(rows)


def published_training_cases() -> pd.DataFrame:
    """Predicted vs published step time (or MFU) of the pre-training runs of
    ``experiments/validation/published_training.tsv``: NVIDIA's DGX Cloud benchmark recipes
    (GPT-3 175B, Llama 3.1 8B / 405B, BF16 and FP8), the Llama 3 paper's 405B layouts on
    its 16K-GPU RoCE cluster and Nemotron-4 15B; each row with its published layout and,
    where a setting is not published, the assumption its source column states. No
    constant is set from them."""
    from .catalog import load_catalog
    from .fabric import load_topology
    from .workload.training import TrainingWorkload, simulate_training

    cat = load_catalog()
    fabrics: dict = {}
    rows = []
    for r in _extra_rows("published_training.tsv"):
        cid = r["row_id"]
        gpus = _int(r["gpus"])
        tokens = _int(r["gbs"]) * _int(r["seq"]) / gpus  # per GPU and step
        step = r["metric"] == "step_s"  # else the published MFU, in %
        base = {"case": cid, "gpus": gpus, "precision": r["precision"],
                "metric": "tokens/s/GPU" if step else "MFU (%)",
                "measured": tokens / float(r["measured"]) if step else float(r["measured"])}
        model = cat.get("models", r["model"])
        seq = _int(r["seq"])
        if r["vocab"] != "-":
            model = dataclasses.replace(model, vocab=_int(r["vocab"]))
        if seq > model.max_seq_len:
            model = dataclasses.replace(model, max_seq_len=seq)
        tp, pp, vp, cp = _int(r["tp"]), _int(r["pp"]), _int(r["vp"]), _int(r["cp"])
        w = TrainingWorkload(
            name=cid, model=model, global_batch=_int(r["gbs"]), micro_batch=_int(r["mbs"]),
            seq_len=seq, precision=r["precision"], tp=tp, pp=pp, dp=gpus // (tp * pp * cp),
            cp=cp, vpp=vp, zero=_int(r["zero"]),
            grad_reduce_bytes=4 if r["grad_reduce"] == "fp32" else 2,
            sequence_parallel=tp > 1, recompute=r["recompute"], flash_attention=True,
            split_counts_embedding_and_loss=r["split"] == "yes", n_gpus=gpus,
            placement=r["placement"])
        topo = r["topology"]
        try:
            if topo == "dgx-h100-ib":
                fab = _training_fabric("H100", gpus)
            else:
                if topo not in fabrics:
                    fabrics[topo] = load_topology(Path(__file__).resolve().parents[1] / topo)
                fab = fabrics[topo]
            res = simulate_training(fab, w)
        except SimError as e:
            rows.append({**base, "status": f"infeasible: {e}"})
            continue
        pred = tokens / res.step_time_s if step else 100 * res.mfu
        rows.append({**base, "status": "ok", "predicted": pred,
                     "error_pct": (pred / base["measured"] - 1) * 100,
                     "layout": f"tp{tp} pp{pp} vp{vp} cp{cp} dp{w.dp} gbs{w.global_batch} "
                               f"seq{seq}"})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------ inference
# Which decode-attention kernel a release ran (ServiceSpec.decode_attention). TensorRT-LLM
# up to v0.6.1 ran the generation phase with the masked multi-head attention kernel, one
# thread block per query head (decoderMaskedMultiheadAttentionTemplate.h: hi = blockIdx.x,
# hi_kv = hi / (num_heads / num_kv_heads)), so each block re-reads its shared KV head. The
# XQA kernel (one block per KV head; release notes 0.7.1 "MMHA optimization for MQA and
# GQA", on by default in 0.8.0 per docs/source/gpt_attention.md) reads it once.
def _trtllm_attention(release: str) -> str:
    major, minor = (int(x) for x in re.findall(r"\d+", release)[:2])
    return "per_query_head" if (major, minor) < (0, 7) else "grouped"


def _count(text: str) -> float:
    """First number in ``text``, thousands separators allowed ("24,524.9 (84 ...)")."""
    m = re.search(r"\d[\d,]*(?:\.\d+)?", text)
    if not m:
        raise ConfigError(f"cannot read a number from {text!r}", file="inference.tsv")
    return float(m.group(0).replace(",", ""))


def _service(name: str, model: str, tp: int, replicas: int, precision: str, **kw):
    from .catalog import load_catalog
    from .workload.inference import ServiceSpec

    m = load_catalog().get("models", model, file="inference.tsv", field=name)
    kw.setdefault("vocab_buffer_bytes", TRTLLM_VOCAB_BUFFER_BYTES)  # every row is TensorRT-LLM
    return ServiceSpec(name=name, model=m, tp=tp, replicas=replicas, precision=precision,
                       **kw)


def _static_row(cid: str, model: str, gpu: str, tp: int, batch: int, isl: int, osl: int,
                precision: str, measured: float, release: str, source: str) -> dict:
    """One TensorRT-LLM static-batch row (gptSessionBenchmark: one batch, prefill then
    decode to ``osl`` tokens, timed as a whole): output tokens/s per GPU."""
    from .workload.inference import Lengths, simulate_service

    fp8 = precision.lower() == "fp8"
    attention = _trtllm_attention(release)
    s = _service(cid, model, tp, 1, "fp8" if fp8 else "fp16", kv_bytes=1 if fp8 else 2,
                 static_batch=batch, max_batch=batch, arrival="all-at-once",
                 rate=float(batch), prompt=Lengths("fixed", isl),
                 output=Lengths("fixed", osl), decode_attention=attention)
    node = "DGX-H100" if gpu.upper().startswith("H100") else "DGX-A100"
    res = simulate_service(nvswitch_node(node), s, 1.0)
    pred = res.summary["throughput_tokens_per_s"] / tp
    return {"case": cid, "source": source, "status": "ok", "metric": "out tok/s/GPU",
            "measured": measured, "predicted": pred, "error_pct": (pred / measured - 1) * 100,
            "setting": f"{model} {gpu} {precision.upper()} TP{tp} batch {batch} "
                       f"{isl}/{osl}, TRT-LLM {release} ({attention} attention)"}


def _extra_dir() -> Path:
    return Path(__file__).resolve().parents[1] / "experiments" / "validation"


def _extra_rows(name: str) -> list[dict]:
    """Rows of a tab-separated file of ``experiments/validation/`` ('#' lines are notes)."""
    path = _extra_dir() / name
    try:
        with open(path, newline="") as fh:
            lines = [ln for ln in fh if not ln.startswith("#")]
    except FileNotFoundError:
        raise ConfigError("published rows not found (run from a checkout of the "
                          "repository)", file=str(path)) from None
    return list(csv.DictReader(lines, delimiter="\t"))


def trtllm_cases(extra: bool = True) -> pd.DataFrame:
    """TensorRT-LLM static-batch rows: those of inference.tsv and, with ``extra``, the
    further published rows of ``experiments/validation/trtllm_perf.tsv`` (other releases,
    A100 and Llama 2 7B; sources per row)."""
    rows = []
    for r in _tsv("inference.tsv"):
        if not r["case_id"].startswith("TRTLLM"):
            continue
        rel = re.search(r"v?(\d+\.\d+(?:\.\d+)?)", r["benchmark"]).group(1)
        gpu = r["system"].split("-")[0].split()[0]
        tp, batch = (int(x) for x in re.search(r"TP(\d+).*?batch (\d+)",
                                               r["parallelism_per_replica"]).groups())
        isl, osl = (int(x) for x in re.search(r"in=(\d+) out=(\d+)", r["scenario"]).groups())
        prec = r["precision"].split()[0]
        rows.append(_static_row(r["case_id"], "llama2-70b", gpu, tp, batch, isl, osl, prec,
                                _count(r["value"]), rel, "inference.tsv"))
        m = re.search(r"TP(\d+) batch (\d+) in/out (\d+)/(\d+): ([\d,]+)", r["notes"])
        if m:  # a further row quoted in the notes column
            tp, batch, isl, osl = (int(x) for x in m.groups()[:4])
            rows.append(_static_row(r["case_id"] + "-notes", "llama2-70b", gpu, tp, batch,
                                    isl, osl, prec, _count(m.group(5)), rel,
                                    "inference.tsv (notes)"))
    if extra:
        for r in _extra_rows("trtllm_perf.tsv"):
            cid = (f"TRTLLM-{r['release']}-{r['gpu']}-{r['model']}-b{r['batch']}-"
                   f"{r['input']}/{r['output']}")
            rows.append(_static_row(cid, r["model"], r["gpu"], int(r["tp"]), int(r["batch"]),
                                    int(r["input"]), int(r["output"]), r["precision"],
                                    float(r["out_tok_s_per_gpu"]), r["release"],
                                    "trtllm_perf.tsv " + r["source"]))
    return pd.DataFrame(rows)


# TensorRT-LLM's in-flight batching runtime (C++ batch manager, 0.11-0.12, before the
# overlap scheduler): host work per request in each iteration while the GPU waits. An
# estimate derived, to the microsecond, as the value that zeroes the median error of the 24
# dense H100 FP8 rows of trtllm_ifb.tsv (14 us with H100 memory as 80e9 bytes, 15 us with
# the nvidia-smi capacity, 13 us since serving runs its GEMMs at the rate sustained at the
# power limit; experiments/validation/derive_trtllm_host_time.py re-derives it); the other
# 76 rows, MLPerf and the static-batch runs (which have no batch manager) are out of sample.
# The mechanism is documented (NVIDIA/TensorRT-LLM PR 10273 measures the PyTorch executor's
# host time per iteration at about 45 ms for about 1,500 requests on GB200), its size for
# the 2024 C++ runtime is not published.
TRTLLM_HOST_PER_REQUEST_S = 13e-6
# TensorRT-LLM's runtime buffers and decoder (logits, sampling workspaces; batch x padded
# vocabulary, allocated before the KV cache is sized from the free memory), bytes per batch
# slot and vocabulary entry on each GPU: its own log of the 0.11-0.12 executor
# (docs/source/performance/perf-benchmarking.md, 0.12.0.dev2024073000, Llama-2-7B FP8 on
# H100, max runtime batch 4096, vocabulary 32000): 'Allocated 1.14 GB GPU memory for
# runtime buffers', 'Allocated 4.35 GB GPU memory for decoder' (GB = 2^30 bytes in its
# MemoryCounters) = 5.49 GiB / (4096 x 32000) = 45 bytes (the few batch x sequence-length
# buffers among them counted in too)
TRTLLM_VOCAB_BUFFER_BYTES = 45.0
_IFB_NODES = {"H100": "DGX-H100", "H200": "HGX-H200", "A100": "DGX-A100"}
_IFB_POLICY = {"max_utilization": "recompute", "guaranteed_no_evict": "none"}


def trtllm_ifb_cases(host_s: float | None = None, select: str | None = None) -> pd.DataFrame:
    """TensorRT-LLM in-flight batching rows (``experiments/validation/trtllm_ifb.tsv``,
    NVIDIA's perf overview of release 0.11): every request queued at once, fixed lengths, the
    engine's max batch and max tokens per iteration, chunked context, the run's scheduler
    policy (MAX_UTILIZATION pauses and recomputes: our ``recompute``; GUARANTEED_NO_EVICT
    reserves whole sequences: our ``none``) and KV-cache memory fraction. Output tokens/s of
    one engine (tp GPUs). ``host_s``: the runtime's host time per request (default
    TRTLLM_HOST_PER_REQUEST_S); ``select``: only the rows whose case id matches this regular
    expression."""
    from .workload.inference import Lengths, simulate_service

    name = "trtllm_ifb.tsv"
    rows = []
    for r in _extra_rows(name):
        tp, isl, osl = int(r["tp"]), int(r["input"]), int(r["output"])
        fp8 = r["precision"] == "fp8"
        cid = (f"IFB-{r['release']}-{r['gpu']}-{r['model']}-{r['precision']}-tp{tp}-"
               f"{isl}/{osl}")
        if select is not None and not re.search(select, cid):
            continue
        try:
            policy = _IFB_POLICY[r["scheduler"]]
            node = _IFB_NODES[r["gpu"]]
        except KeyError as e:
            raise ConfigError(f"unknown value {e}", file=str(_extra_dir() / name),
                              field=cid) from None
        s = _service(cid, r["model"], tp, 1, r["precision"], kv_bytes=1 if fp8 else 2,
                     max_batch=int(r["max_batch"]), token_budget=int(r["max_num_tokens"]),
                     chunked_prefill=True, kv_fraction=float(r["kv_fraction"]),
                     preemption=policy, decode_attention=_trtllm_attention(r["release"]),
                     host_overhead_per_request=TRTLLM_HOST_PER_REQUEST_S if host_s is None
                     else host_s,
                     arrival="all-at-once", rate=float(r["requests"]),
                     prompt=Lengths("fixed", isl), output=Lengths("fixed", osl))
        meas = float(r["out_tok_s"])
        try:
            res = simulate_service(nvswitch_node(node), s, 1.0)
        except InfeasibleError as e:
            rows.append({"case": cid, "release": r["release"], "status": f"infeasible: {e}",
                         "measured": meas, "predicted": math.nan, "error_pct": math.nan,
                         "setting": ""})
            continue
        pred = res.summary["throughput_tokens_per_s"]
        rows.append({"case": cid, "release": r["release"], "status": "ok",
                     "metric": "out tok/s (engine)", "measured": meas, "predicted": pred,
                     "error_pct": (pred / meas - 1) * 100,
                     "setting": f"{r['requests']} requests, batch {r['max_batch']}, "
                                f"{r['max_num_tokens']} tokens/iteration, {r['scheduler']}, "
                                f"preemptions {res.summary['preemptions']}"})
    return pd.DataFrame(rows)


# MLPerf Inference v4.1 llama2-70b on DGX H100, NVIDIA's closed submission
# (closed/NVIDIA/configs/llama2-70b/{Offline,Server}/__init__.py, H100_SXM_80GB_TP2x4):
# TP2 x 4 engines, FP8 weights (use_fp8) and FP8 KV cache, kvcache_free_gpu_mem_frac 0.90,
# gpu_batch_size 896 (Offline) / 1024 (Server), in-flight batching with TensorRT-LLM's
# default MAX_UTILIZATION scheduler (harness_llm trtllm_batch_sched_policy "max_util": a
# request that does not fit is paused and its context recomputed, our "recompute"), no
# chunked context (enableChunkedContext defaults to false), max_num_tokens 16384 (the
# builder's default). Latency limits (language/llama2-70b/mlperf.conf): p99 TTFT 2 s, p99
# TPOT 200 ms. Prompts: the data set's own 24,576 input lengths
# (experiments/validation/mlperf_llama2_70b_input_lengths.txt, mean 222.3). Outputs: mean
# 290.3 tokens/sample in this run (accuracy.txt: 7,134,577 tokens / 24,576), capped at 1,024
# (SUT.py max_new_tokens); the run's per-sample lengths are not published, so each sample
# takes its data-set reference output length
# (experiments/validation/mlperf_llama2_70b_output_lengths.txt, mean 218.9) scaled to the
# run's mean, paired with its own prompt.
# Both scenarios run for LoadGen's min_duration, 2,400 s in NVIDIA's configs (min_duration =
# 2400000 ms; mlperf_log_detail.txt: requested_min_duration_ms 2400000). The Offline run is
# one query of offline_expected_qps x min_duration x 1.1 samples (the log's
# samples_per_query: 200,640 for TP2x4 at 76), the data set repeated: its drain at the end is
# a small part of the run. A Server rate counts only if the run holds it that long: a rate a
# little above what the system sustains passes a 300 s run while its queue still builds.
MLPERF_MIN_DURATION_S = 2400.0
MLPERF_OFFLINE_RUN_SAMPLES = 200_640
MLPERF_TTFT_P99_S, MLPERF_TPOT_P99_S = 2.0, 0.200
_MLPERF_V41_ATTENTION = "grouped"  # TensorRT-LLM 0.12-era engines: XQA
_MLPERF_MAX_NEW_TOKENS = 1024


@dataclasses.dataclass(frozen=True)
class MLPerfSystem:
    """One MLPerf v4.1 llama2-70b system as NVIDIA configured it
    (closed/NVIDIA/configs/llama2-70b/{Offline,Server}/__init__.py)."""

    node: str  # catalog node of the 8-GPU server
    tp: int  # tensor_parallelism of each engine
    engines: int  # engines on the server (8 / tp)
    batch_offline: int  # gpu_batch_size, Offline
    batch_server: int  # gpu_batch_size, Server
    offline_samples: int  # the Offline query's samples_per_query (mlperf_log_summary.txt)


# H100_SXM_80GB_TP2x4 (DGX H100) and H200_SXM_141GBx8 (TP1 x 8: batch 806 in Offline, which
# it inherits from H200_SXM_141GBx1, and 896 in Server; its Offline query 274,560 =
# 104 x 2,400 x 1.1 samples)
MLPERF_SYSTEMS = {"H100": MLPerfSystem("DGX-H100", 2, 4, 896, 1024, MLPERF_OFFLINE_RUN_SAMPLES),
                  "H200": MLPerfSystem("HGX-H200", 1, 8, 806, 896, 274_560)}


def mlperf_prompt_lengths():
    """The MLPerf llama2-70b data set's input lengths, as an empirical distribution."""
    from .workload.inference import Lengths, read_lengths

    v = read_lengths(_extra_dir() / "mlperf_llama2_70b_input_lengths.txt")
    return Lengths("empirical", sum(v) / len(v), values=v)


def mlperf_output_lengths(mean: float | None = None):
    """The data set's reference output lengths (in the prompts' order), optionally scaled
    to ``mean`` tokens per sample and capped at max_new_tokens, as an empirical
    distribution."""
    from .workload.inference import Lengths, read_lengths

    v = read_lengths(_extra_dir() / "mlperf_llama2_70b_output_lengths.txt")
    k = 1.0 if mean is None else mean * len(v) / sum(v)
    out = tuple(min(_MLPERF_MAX_NEW_TOKENS, max(1, round(x * k))) for x in v)
    return Lengths("empirical", sum(out) / len(out), values=out,
                   high=_MLPERF_MAX_NEW_TOKENS)


def _mlperf_service(out_mean: float, batch: int, system: str = "H100", **kw):
    sy = MLPERF_SYSTEMS[system]
    return _service(f"MLPerf llama2-70b {system}", "llama2-70b", sy.tp, sy.engines, "fp8",
                    kv_bytes=1, max_batch=batch, kv_fraction=0.90, token_budget=16384,
                    chunked_prefill=False, decode_attention=_MLPERF_V41_ATTENTION,
                    host_overhead_per_request=TRTLLM_HOST_PER_REQUEST_S,
                    prompt=mlperf_prompt_lengths(), output=mlperf_output_lengths(out_mean),
                    **kw)


def mlperf_offline(out_mean: float = 290.3, system: str = "H100") -> float:
    """Predicted Offline output tokens/s of the 8-GPU system: every sample queued at t=0."""
    from .workload.inference import simulate_service

    sy = MLPERF_SYSTEMS[system]
    s = _mlperf_service(out_mean, sy.batch_offline, system, arrival="all-at-once",
                        rate=float(sy.offline_samples))
    return simulate_service(nvswitch_node(sy.node), s, 1.0).summary[
        "throughput_tokens_per_s"]


def mlperf_server(out_mean: float = 290.3, system: str = "H100",
                  duration_s: float = MLPERF_MIN_DURATION_S, steps: int = 6
                  ) -> tuple[float, dict]:
    """Highest Poisson rate (samples/s) whose p99 TTFT and p99 TPOT meet the MLPerf limits
    over a run of ``duration_s`` (bisection), and the summary at that rate; tokens/s = rate
    x mean output tokens. The search starts below the rate the system saturates at (every
    sample queued at once, the Server batch): no Server rate is sustained above it."""
    from .workload.inference import simulate_service

    sy = MLPERF_SYSTEMS[system]
    fab = nvswitch_node(sy.node)
    # saturated: a quarter of the Offline query at the Server batch, queued at once (enough
    # to fill every slot; the margin covers its drain at the end)
    sat = _mlperf_service(out_mean, sy.batch_server, system, arrival="all-at-once",
                          rate=float(sy.offline_samples) / 4)
    hi = 1.1 * simulate_service(fab, sat, 1.0).summary["requests_per_s"]

    def run(rate):
        s = _mlperf_service(out_mean, sy.batch_server, system, arrival="poisson", rate=rate)
        m = simulate_service(fab, s, duration_s, warmup_s=30.0).summary
        ok = m["ttft_p99_s"] <= MLPERF_TTFT_P99_S and m["tpot_p99_s"] <= MLPERF_TPOT_P99_S
        return ok, m

    lo, best = 0.5 * hi, {}
    ok, m = run(lo)
    if not ok:  # far from saturation already too slow: search from zero
        lo = 0.0
    else:
        best = m
    for _ in range(steps):
        mid = (lo + hi) / 2
        ok, m = run(mid)
        if ok:
            lo, best = mid, m
        else:
            hi = mid
    return lo, best


def _mlperf_published() -> list[dict]:
    """The published runs: DGX H100 from shared/validation/inference.tsv, H200 x8 from
    experiments/validation/mlperf_v41_llama2_70b.tsv (same fields)."""
    rec = {r["case_id"]: r for r in _tsv("inference.tsv")}
    out = [{"system": "H100", "offline": rec["MLPINF41-H100x8-OFF"],
            "server": rec["MLPINF41-H100x8-SRV"], "file": "inference.tsv"}]
    more = {r["case_id"]: r for r in _extra_rows("mlperf_v41_llama2_70b.tsv")}
    out.append({"system": "H200", "offline": more["MLPINF41-H200x8-OFF"],
                "server": more["MLPINF41-H200x8-SRV"], "file": "mlperf_v41_llama2_70b.tsv"})
    return out


def _mlperf_row(source: str, case: str, metric: str, meas: float, pred: float,
                setting: str) -> dict:
    return {"case": case, "source": source, "status": "ok", "metric": metric,
            "measured": meas, "predicted": pred, "error_pct": (pred / meas - 1) * 100,
            "setting": setting}


def _mlperf_system(pub: dict) -> list[dict]:
    """One system's rows of :func:`mlperf_cases`."""
    from .workload.inference import simulate_service

    system, off, srv, src = pub["system"], pub["offline"], pub["server"], pub["file"]
    sy = MLPERF_SYSTEMS[system]
    off_tok = _count(off["value"])
    off_samples = _count(off["value"].split("(", 1)[1])
    out_mean = off_tok / off_samples  # output tokens per sample in the measured run
    pred_off = mlperf_offline(out_mean, system)
    rate, m = mlperf_server(out_mean, system)
    rows = [_mlperf_row(src, off["case_id"], "tokens/s", off_tok, pred_off,
                        f"TP{sy.tp} x {sy.engines}, FP8, batch {sy.batch_offline}, "
                        f"{sy.offline_samples:,} samples; the data set's prompts (mean "
                        f"{mlperf_prompt_lengths().mean:.0f} tokens) with their reference "
                        f"outputs scaled to the run's mean {out_mean:.1f}"),
            _mlperf_row(src, srv["case_id"], "tokens/s", _count(srv["value"]),
                        rate * out_mean,
                        f"batch {sy.batch_server}: max rate {rate:.1f}/s over "
                        f"{MLPERF_MIN_DURATION_S:.0f} s at p99 TTFT "
                        f"{m.get('ttft_p99_s', math.nan):.2f} s, p99 TPOT "
                        f"{m.get('tpot_p99_s', math.nan) * 1e3:.0f} ms (limits 2 s, 200 ms)")]
    # like with like at the published rate: the latencies the run measured there
    at_rate = _count(srv["value"].split("(", 1)[1])  # completed samples/s
    s = _mlperf_service(out_mean, sy.batch_server, system, arrival="poisson", rate=at_rate)
    m_at = simulate_service(nvswitch_node(sy.node), s, MLPERF_MIN_DURATION_S,
                            warmup_s=30.0).summary
    stats = srv["latency_stats"]
    for label, key in (("p99 TTFT", "ttft_p99_s"), ("mean TTFT", "ttft_mean_s"),
                       ("p99 TPOT", "tpot_p99_s")):
        found = re.search(label + r"\s+([\d.]+)\s*ms", stats)
        if not found:
            raise ConfigError(f"no '{label} ... ms' in latency_stats {stats!r}",
                              file=src, field=srv["case_id"])
        rows.append(_mlperf_row(src, f"{srv['case_id']} {label}", f"{label} (ms)",
                                float(found.group(1)), m_at[key] * 1e3,
                                f"Poisson at the published {at_rate:g} samples/s"))
    return rows


def mlperf_cases() -> pd.DataFrame:
    """MLPerf v4.1 Offline and Server, 8x H100 (the acceptance case) and 8x H200 (out of
    sample), predicted from the data set's prompt lengths and each run's mean output length:
    Offline throughput, the highest Server rate that meets the latency limits over
    LoadGen's 2,400 s, and the Server latencies at the published rate. The systems are
    simulated side by side, one process each where the machine has the cores (each
    simulation is deterministic: the same rows either way)."""
    pubs = _mlperf_published()
    workers = min(len(pubs), os.cpu_count() or 1)
    if workers > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers) as ex:
            parts = list(ex.map(_mlperf_system, pubs))
    else:
        parts = [_mlperf_system(p) for p in pubs]
    return pd.DataFrame([r for part in parts for r in part])
