"""Training throughput against published pre-training runs.

Three tables: the shared ``training_cases.tsv`` (Megatron-LM papers and NVIDIA's
Megatron-LM H100 weak scaling, shapes given per row), the repository's
``nemo_training.tsv`` (NVIDIA's NeMo / Megatron-Bridge performance summaries on DGX-H100)
and ``published_training.tsv`` (DGX Cloud recipes, the Llama 3 paper, Nemotron-4 15B).
Each row runs with its published layout on a rail-optimized SuperPOD-style cluster (or
the proposal its row names); a setting a source does not publish takes the assumption
stated in the code or in the row's source column. No constant is fitted per row.
"""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path

import pandas as pd

from ..errors import SimError
from ..spec import Node
from .data import first_int, first_number, read_rows, read_tsv, seq_tokens

__all__ = ["NEMO_MODELS", "hardware_family", "training_fabric", "training_cases",
           "nemo_training_cases", "published_training_cases", "split_summary"]

# NVIDIA's published NeMo / Megatron-Bridge pre-training throughput on DGX-H100
# (experiments/validation/nemo_training.tsv): model names of those tables -> catalog ids
NEMO_MODELS = {"GPT3-175B": "gpt3-175b", "LLAMA2-7B": "llama2-7b", "LLAMA2-13B": "llama2-13b",
               "LLAMA2-70B": "llama2-70b", "LLAMA3-8B": "llama3-8b", "LLAMA3_8B": "llama3-8b",
               "LLAMA3-70B": "llama3-70b", "LLAMA3_70B": "llama3-70b",
               "LLAMA3.1_405B": "llama3.1-405b", "Nemotron-340B": "nemotron4-340b"}


def hardware_family(accelerator: str) -> str:
    """The family a catalog accelerator id is scored in: A100, H100 (with H200),
    B200 (with GB200), TPU, AMD, or the id itself."""
    a = accelerator.upper()
    for fam, keys in (("A100", ("A100",)), ("H100", ("H100", "H200")),
                      ("B200", ("B200", "GB200")), ("TPU", ("TPU",)), ("AMD", ("MI",))):
        if any(k in a for k in keys):
            return fam
    return accelerator


def split_summary(in_sample: pd.DataFrame, out_of_sample: pd.DataFrame) -> pd.DataFrame:
    """Rows scored (status ok) per sample and hardware family: count, median |error| and
    median signed error (%), with an 'all' line per sample. In-sample rows are those the
    model's constants were derived from (``training_cases.tsv``); out-of-sample rows set no
    constant."""
    parts = []
    for name, df in (("in-sample", in_sample), ("out-of-sample", out_of_sample)):
        ok = df[df["status"] == "ok"].copy()
        ok["abs"] = ok["error_pct"].abs()
        g = ok.groupby("hardware").agg(rows=("abs", "size"), median_abs_pct=("abs", "median"),
                                       median_signed_pct=("error_pct", "median"))
        g.loc["all"] = [len(ok), ok["abs"].median(), ok["error_pct"].median()]
        g = g.reset_index()
        g.insert(0, "sample", name)
        parts.append(g)
    return pd.concat(parts, ignore_index=True).round(1)


def training_fabric(gpu: str, n_gpus: int):
    """The cluster a case ran on: DGX A100 with 8x HDR (Selene) or DGX H100 with 8x NDR
    (Eos), rail-optimized SuperPOD style; three tiers when two cannot hold it."""
    from ..fabric import rail_optimized

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


# ------------------------------------------------------------- training_cases.tsv
def _case_workload(r: dict):
    """The workload of one row of training_cases.tsv, or None if the row lacks a shape or
    layout (or ran on a GPU other than A100 / H100)."""
    from ..workload.models import read_model
    from ..workload.training import TrainingWorkload

    cid = r["case_id"]
    layers, hidden, heads = (first_int(r[k]) for k in ("layers", "hidden", "heads"))
    tp, pp, dp = first_int(r["TP"]), first_int(r["PP"], 1), first_int(r["DP"])
    if None in (layers, hidden, heads, tp, dp) or r["gpu"][:4] not in ("A100", "H100"):
        return None
    vocab = first_int(r["vocab"])
    seq = first_int(r["seq_len"])
    mbs = first_int(r["micro_batch"], 1)
    gbs = first_int(r["global_batch_seqs"])
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
    return TrainingWorkload(
        name=cid, model=model, global_batch=gbs, micro_batch=mbs, seq_len=seq,
        precision=prec, tp=tp, pp=pp, dp=dp, vpp=vpp, zero=zero,
        sequence_parallel=("sequence parallel" in rec or "+ sp" in rec or h100) and tp > 1,
        recompute=recompute, schedule="interleaved" if vpp > 1 else "1f1b",
        flash_attention=h100, n_gpus=tp * pp * dp)


def _case_prediction(r: dict, step_s: float, gpus: int) -> tuple[float, str]:
    """The row's measured metric predicted from the step time (s): the step time itself,
    or TFLOP/s per GPU counted as the row's source counts them."""
    B, s = first_int(r["global_batch_seqs"]), first_int(r["seq_len"])
    L, h, V = first_int(r["layers"]), first_int(r["hidden"]), first_int(r["vocab"])
    if "iteration time" in r["measured_metric"]:
        return step_s, "step time (s)"
    if r["case_id"].startswith("NAR21"):  # Narayanan Eq. 3, with recomputation
        flops = 96 * B * s * L * h * h * (1 + s / (6 * h) + V / (16 * L * h))
        return flops / (step_s * gpus) / 1e12, "TFLOP/s/GPU (Eq. 3)"
    # Megatron-LM model FLOPs: 3 x forward, no recomputation
    flops = 72 * B * s * L * h * h * (1 + s / (6 * h) + V / (12 * L * h))
    return flops / (step_s * gpus) / 1e12, "TFLOP/s/GPU (model)"


def training_cases(shared: Path) -> pd.DataFrame:
    """Predicted vs measured training throughput for every case of training_cases.tsv that
    the simulator can express (shapes and layouts given).

    Parameters
    ----------
    shared : Path
        The folder holding ``training_cases.tsv``.
    """
    from ..workload.training import simulate_training

    rows = []
    for r in read_tsv(shared, "training_cases.tsv"):
        cid = r["case_id"]
        w = _case_workload(r)
        if w is None:
            rows.append({"case": cid, "status": "not expressible (shape or layout n/r)"})
            continue
        gpus = first_int(r["num_gpus"])
        try:
            fab = training_fabric(r["gpu"], gpus)
            res = simulate_training(fab, w)
        except SimError as e:
            rows.append({"case": cid, "status": f"infeasible: {e}"})
            continue
        meas = first_number(r["measured_value"])
        pred, kind = _case_prediction(r, res.step_time_s, gpus)
        rows.append({"case": cid, "status": "ok", "metric": kind, "measured": meas,
                     "predicted": pred, "error_pct": (pred / meas - 1) * 100,
                     "hardware": r["gpu"][:4], "gpus": gpus, "mfu": res.mfu, "step_s": res.step_time_s,
                     "bubble_s": res.breakdown["pp_bubble_and_wait"],
                     "dp_s": res.breakdown["dp_exposed"], "tp_s": res.breakdown["tp_exposed"]})
    return pd.DataFrame(rows)


# ------------------------------------------------------------- nemo_training.tsv
def nemo_training_cases(extra: Path) -> pd.DataFrame:
    """Predicted vs published tokens/s per GPU of NeMo / Megatron-Bridge pre-training on
    DGX-H100 (``nemo_training.tsv``), with each row's published
    layout and the settings of NVIDIA's performance recipes: the distributed optimizer
    (Megatron FSDP where the table says so), bf16 gradient reduction
    (``grad_reduce_in_fp32 = False`` in scripts/performance), sequence parallelism with TP,
    no recomputation. Rows of models the catalog lacks, or without a published precision,
    or whose layers do not split evenly over the pipeline, are listed as not expressible.

    Parameters
    ----------
    extra : Path
        The repository's ``experiments/validation`` folder.
    """
    from ..catalog import load_catalog
    from ..workload.training import TrainingWorkload, simulate_training

    cat = load_catalog()
    rows = []
    steps: dict = {}  # layout -> step time (s), or the reason it cannot run
    for r in read_rows(extra, "nemo_training.tsv"):
        cid = r["row_id"]
        base = {"case": cid, "container": r["container"], "model": r["model"],
                "precision": r["precision"], "gpus": first_int(r["gpus"]),
                "measured": float(r["tokens_per_s_per_gpu"])}
        mid = NEMO_MODELS.get(r["model"])
        prec = r["precision"].lower()
        if mid is None or prec not in ("fp8", "bf16"):
            why = "model not in the catalog" if mid is None else "precision not published"
            rows.append({**base, "status": f"not expressible: {why}"})
            continue
        model = cat.get("models", mid)
        seq = seq_tokens(r["seq_len"])
        if seq > model.max_seq_len:  # the long-context runs extend the model's RoPE
            model = dataclasses.replace(model, max_seq_len=seq)
        gpus = first_int(r["gpus"])
        tp, pp, cp = first_int(r["tp"]), first_int(r["pp"]), first_int(r["cp"])
        vp = first_int(r["vp"], 1)
        ep = first_int(r["ep"], 1)
        fsdp = first_int(r["fsdp"], 0)
        gbs, mbs = first_int(r["gbs"]), first_int(r["mbs"])
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
                steps[key] = simulate_training(training_fabric("H100", gpus), w).step_time_s
            except SimError as e:
                steps[key] = e
        if isinstance(steps[key], SimError):
            rows.append({**base, "status": f"infeasible: {steps[key]}"})
            continue
        pred = gbs * seq / (steps[key] * gpus)
        rows.append({**base, "status": "ok", "predicted": pred, "hardware": "H100",
                     "error_pct": (pred / base["measured"] - 1) * 100,
                     "layout": f"tp{tp} pp{pp} vp{vp} cp{cp} dp{dp}{' fsdp' if fsdp else ''}"
                               f" gbs{gbs} mbs{mbs} seq{seq}"})
    return pd.DataFrame(rows)


# ------------------------------------------------------------- published_training.tsv
def _proposal(topologies: Path, name: str) -> Path:
    """A proposal the table names as ``topologies/<file>.yaml``, in ``topologies``."""
    parts = Path(name).parts
    return Path(topologies).joinpath(*(parts[1:] if parts[0] == "topologies" else parts))


def _options(r: dict) -> dict:
    """The row's ``options`` column: ``key=value;...`` workload settings (booleans or
    numbers) its source states, which differ from the workload defaults."""
    from ..errors import ConfigError
    from ..workload.training import TrainingWorkload

    text = r.get("options", "-").strip()
    if text in ("", "-"):
        return {}
    fields = {f.name: f for f in dataclasses.fields(TrainingWorkload)}
    out = {}
    for item in text.split(";"):
        key, _, val = item.partition("=")
        key, val = key.strip(), val.strip()
        if key not in fields:
            raise ConfigError(f"row {r['row_id']}: unknown workload option {key!r}",
                              file="published_training.tsv", field="options")
        if val in ("true", "false"):
            out[key] = val == "true"
        else:
            try:
                out[key] = int(val)
            except ValueError:
                out[key] = float(val)
    return out


def published_training_cases(extra: Path, topologies: Path) -> pd.DataFrame:
    """Predicted vs published step time (or MFU) of the pre-training runs of
    ``published_training.tsv``: NVIDIA's DGX Cloud benchmark recipes
    (GPT-3 175B, Llama 3.1 8B / 405B, BF16 and FP8), the Llama 3 paper's 405B layouts on
    its 16K-GPU RoCE cluster and Nemotron-4 15B; each row with its published layout and,
    where a setting is not published, the assumption its source column states. No
    constant is set from them.

    Parameters
    ----------
    extra : Path
        The repository's ``experiments/validation`` folder.
    topologies : Path
        The folder of bundled proposals the rows name (``topologies/<file>.yaml``).
    """
    from ..catalog import load_catalog
    from ..fabric import load_topology
    from ..workload.training import TrainingWorkload, simulate_training

    cat = load_catalog()
    fabrics: dict = {}
    rows = []
    for r in read_rows(extra, "published_training.tsv"):
        cid = r["row_id"]
        gpus = first_int(r["gpus"])
        tokens = first_int(r["gbs"]) * first_int(r["seq"]) / gpus  # per GPU and step
        step = r["metric"] == "step_s"  # else the published MFU, in %
        base = {"case": cid, "gpus": gpus, "precision": r["precision"],
                "metric": "tokens/s/GPU" if step else "MFU (%)",
                "measured": tokens / float(r["measured"]) if step else float(r["measured"])}
        model = cat.get("models", r["model"])
        seq = first_int(r["seq"])
        if r["vocab"] != "-":
            model = dataclasses.replace(model, vocab=first_int(r["vocab"]))
        if seq > model.max_seq_len:
            model = dataclasses.replace(model, max_seq_len=seq)
        tp, pp, vp, cp = (first_int(r[k]) for k in ("tp", "pp", "vp", "cp"))
        w = TrainingWorkload(
            name=cid, model=model, global_batch=first_int(r["gbs"]),
            micro_batch=first_int(r["mbs"]),
            seq_len=seq, precision=r["precision"], tp=tp, pp=pp, dp=gpus // (tp * pp * cp),
            cp=cp, vpp=vp, zero=first_int(r["zero"]),
            grad_reduce_bytes=4 if r["grad_reduce"] == "fp32" else 2,
            sequence_parallel=tp > 1, recompute=r["recompute"], flash_attention=True,
            split_counts_embedding_and_loss=r["split"] == "yes", n_gpus=gpus,
            placement=r["placement"])
        w = dataclasses.replace(w, **_options(r))
        topo = r["topology"]
        try:
            if topo in ("dgx-h100-ib", "dgx-a100-ib"):
                fab = training_fabric("A100" if topo == "dgx-a100-ib" else "H100", gpus)
            else:
                if topo not in fabrics:
                    fabrics[topo] = load_topology(_proposal(topologies, topo))
                fab = fabrics[topo]
            res = simulate_training(fab, w)
        except SimError as e:
            rows.append({**base, "status": f"infeasible: {e}"})
            continue
        pred = tokens / res.step_time_s if step else 100 * res.mfu
        acc = fab.graph.nodes[fab.accelerators[0]]["model"]
        rows.append({**base, "status": "ok", "predicted": pred, "hardware": hardware_family(acc),
                     "error_pct": (pred / base["measured"] - 1) * 100,
                     "layout": f"tp{tp} pp{pp} vp{vp} cp{cp} dp{w.dp} gbs{w.global_batch} "
                               f"seq{seq}"})
    return pd.DataFrame(rows)
