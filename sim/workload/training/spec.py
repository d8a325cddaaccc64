"""A training job's specification: model, batch, parallel layout and options, read from a
workload YAML and checked for feasibility before anything is simulated.

Main assumption: a layout is given in full (tp, pp, dp, cp, ep, virtual stages, ZeRO stage);
what cannot run (sizes that do not divide, more GPUs than the job has) is an
:class:`~sim.errors.InfeasibleError` naming the file, the field and the numbers.

A workload may instead leave fields to the layout search (:mod:`.plan`): ``parallelism:
auto`` (tp, pp, dp, cp, ep, virtual stages and ZeRO stage), or any of those fields set to
``auto`` in the ``parallelism`` mapping, ``batch.micro: auto`` and ``options.recompute:
auto``. Such a workload records the searched fields in :attr:`TrainingWorkload.auto`; the
checks that need them wait until :func:`.plan.resolve` has chosen them, and running it
unresolved is a one-line :class:`~sim.errors.ConfigError` saying so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ...catalog import Catalog, load_catalog
from ...errors import ConfigError, InfeasibleError
from ...fabric.fabric import Fabric
from ...spec import apply_overrides, load_yaml
from ..models import ModelSpec, read_model

__all__ = ["AUTO_FIELDS", "PRECISIONS", "SCHEDULE_NAMES", "TrainingWorkload", "check",
           "load_workload", "workload_error"]

PRECISIONS = ("bf16", "fp16", "fp8")
SCHEDULE_NAMES = ("1f1b", "interleaved", "gpipe")
# fields the layout search may choose: TrainingWorkload attribute -> YAML field path
AUTO_FIELDS = {"tp": "parallelism.tp", "pp": "parallelism.pp", "dp": "parallelism.dp",
               "cp": "parallelism.cp", "ep": "parallelism.ep",
               "vpp": "parallelism.virtual_stages", "zero": "parallelism.zero",
               "micro_batch": "batch.micro", "recompute": "options.recompute"}
_PARALLEL_AUTO = ("tp", "pp", "dp", "cp", "ep", "vpp", "zero")


@dataclass
class TrainingWorkload:
    """A training job's model, batch and parallel layout."""

    name: str
    model: ModelSpec
    global_batch: int  # sequences per step
    micro_batch: int
    seq_len: int
    precision: str = "bf16"
    tp: int = 1
    pp: int = 1
    dp: int = 1
    cp: int = 1
    ep: int = 1
    vpp: int = 1  # virtual (interleaved) stages per pipeline rank
    zero: int = 1  # 0 none, 1 optimizer states (distributed optimizer), 2 +grads, 3 +params
    sequence_parallel: bool = True
    recompute: str = "none"  # none | selective | full
    schedule: str = "1f1b"
    flash_attention: bool = True
    overlap_grad_reduce: bool = True
    overlap_param_gather: bool = True
    grad_bucket_params: float = 40e6
    # bytes per gradient element in the data-parallel reduction: Megatron-LM forces fp32
    # accumulation and reduction for bf16 (arguments.py: "bfloat16 requires gradient
    # accumulation and all-reduce to be done in fp32") unless --grad-reduce-in-bf16;
    # fp16 runs reduce fp16 gradients. None: by precision.
    grad_reduce_bytes: int | None = None
    first_stage_layers: int | None = None  # uneven pipelines (Megatron's
    last_stage_layers: int | None = None  # --decoder-first/last-pipeline-num-layers)
    # Megatron's account_for_embedding/loss_in_pipeline_split: the embedding and the loss
    # count as one layer each when layers are split over the (virtual) pipeline stages
    split_counts_embedding_and_loss: bool = False
    # Transformer Engine's TP communication overlap (--tp-comm-overlap, userbuffers): each
    # layer's TP all-gathers / reduce-scatters run in tp chunks under its GEMMs; only what
    # outlasts the GEMMs, and the first chunk, stays exposed. The overlaps that run their
    # communication on SMs take tp_comm_overlap_sms of them from the GEMMs they hide under
    # (TE's defaults, module/base.py get_default_config: pipelined reduce-scatter after the
    # output projections and bulk overlaps in their input-side backward, 16 SMs each; the
    # ring-exchange all-gathers use copy engines); 0 = an ideal overlap
    tp_comm_overlap: bool = False
    tp_comm_overlap_sms: int = 16
    # pipeline send/recv under computation (Megatron-Core overlap_p2p_comm; NeMo turns it
    # on for interleaved layouts). Only the interleaved schedule implements it: the plain
    # 1F1B schedule, or interleaving without it, waits for each activation (gradient) send
    # to complete before the next op (p2p_communication._communicate, wait_on_reqs=True)
    overlap_p2p_comm: bool = True
    # the step runs at its slowest GPU's pace (sim.compute.straggler_factor: per-GPU speed
    # spread and a fraction of slow servers, from the catalog's compute model); false: every
    # GPU at the catalog rate
    stragglers: bool = True
    # expert-parallel all-to-all overlapped with computation (DeepSeek-V3's DualPipe, Megatron-
    # Core's overlapped MoE dispatch): each op's dispatch/combine runs under the computation
    # of the op it is paired with, so an op lasts as long as the longer of the two, and the
    # communication kernels keep ep_comm_overlap_sms SMs from the computation (DeepSeek-V3
    # technical report, arXiv 2412.19437, Sec. 3.2.2: 20 of the H800's 132 SMs)
    ep_comm_overlap: bool = False
    ep_comm_overlap_sms: int = 20
    placement: str = "tp,cp,dp,pp"  # fastest-varying first: rank order on the fabric
    first_gpu: int = 0
    n_gpus: int | None = None  # the job's GPUs; default: every accelerator of the fabric
    file: str | None = None
    # fields left to the layout search (keys of AUTO_FIELDS); their values meanwhile are
    # placeholders. Empty: the layout is given in full
    auto: frozenset[str] = frozenset()

    def __post_init__(self):
        if self.vpp > 1 and self.schedule == "1f1b":
            self.schedule = "interleaved"  # virtual stages imply Megatron's interleaving
        if self.grad_reduce_bytes is None:
            self.grad_reduce_bytes = 2 if self.precision == "fp16" else 4

    @property
    def gpus(self) -> int:
        return self.tp * self.pp * self.dp * self.cp

    @property
    def micro_batches(self) -> int:
        return self.global_batch // (self.micro_batch * self.dp)



def workload_error(w: TrainingWorkload, field_: str, msg: str) -> InfeasibleError:
    """An InfeasibleError naming ``w``'s file and ``field_``."""
    where = ": ".join(x for x in (w.file, field_) if x)
    return InfeasibleError(f"{where}: {msg}" if where else msg)


def check(w: TrainingWorkload, fabric: Fabric | None = None) -> None:
    """Raise InfeasibleError (one line, with the numbers) if the layout cannot run.

    A workload with fields still ``auto`` cannot run: a ConfigError says to plan it."""
    if w.auto:
        fields = ", ".join(AUTO_FIELDS[k] for k in AUTO_FIELDS if k in w.auto)
        raise ConfigError(f"{fields} {'is' if len(w.auto) == 1 else 'are'} `auto`: plan the "
                          "layout first (`fabsim plan`, or "
                          "sim.workload.training.plan.resolve(fabric, w))", file=w.file)
    if fabric is not None:
        _check_gpus(w, fabric)
    _check_heads(w)
    _check_stages(w)
    _check_batch(w)
    _check_experts(w)
    if w.seq_len > w.model.max_seq_len:
        raise workload_error(w, "batch.seq_len", f"sequence {w.seq_len} exceeds "
                             f"{w.model.name}'s maximum {w.model.max_seq_len}")


def _check_given(w: TrainingWorkload) -> None:
    """The checks that need none of ``w``'s ``auto`` fields (a workload still to plan)."""
    a = w.auto
    if "tp" not in a:
        _check_heads(w)
    if not a & {"pp", "vpp"}:
        _check_stages(w)
    if not a & {"dp", "micro_batch", "pp", "vpp", "cp"}:
        _check_batch(w)
    if not a & {"ep", "dp", "cp"}:
        _check_experts(w)
    if w.seq_len > w.model.max_seq_len:
        raise workload_error(w, "batch.seq_len", f"sequence {w.seq_len} exceeds "
                             f"{w.model.name}'s maximum {w.model.max_seq_len}")


def _auto_fields(doc, b, o) -> set[str]:
    """Which fields the file leaves ``auto``; a ConfigError for ``auto`` anywhere else."""
    auto: set[str] = set()
    raw_p = doc.raw("parallelism")
    if isinstance(raw_p, str):
        if raw_p != "auto":
            raise doc.error("parallelism", f"expected a mapping or 'auto', got {raw_p!r}")
        auto.update(_PARALLEL_AUTO)
        doc.data["parallelism"] = {}  # every parallel field searched; the rest default
    else:
        p = doc.sub("parallelism")
        yaml_of = {v.split(".")[1]: k for k, v in AUTO_FIELDS.items()
                   if v.startswith("parallelism.")}
        for key, v in p.data.items():
            if v == "auto":
                if key not in yaml_of:
                    raise p.error(key, "`auto` is not searched for this field (searched: "
                                  f"{', '.join(yaml_of)})")
                auto.add(yaml_of[key])
    for node, name, attr in ((b, "micro", "micro_batch"), (o, "recompute", "recompute")):
        for key, v in node.data.items():
            if v == "auto" and key != name:
                raise node.error(key, f"`auto` is not searched for this field (only "
                                 f"{node.field(name)} is here)")
        if node.data.get(name) == "auto":
            auto.add(attr)
            node.data[name] = None  # read as the default, the placeholder
    if auto & {"tp", "pp", "cp"} and doc.sub("parallelism").data.get("dp") is None:
        auto.add("dp")  # derived from the GPU count once the fabric is known
    return auto


def _int_or_auto(p, key: str, default: int, minimum: int) -> int:
    """``p[key]`` as a whole number; ``auto`` reads as ``default`` (a placeholder)."""
    v = p.data.get(key)
    if v == "auto":
        p.mark_used(key)
        return default
    if isinstance(v, str):
        raise p.error(key, f"expected a whole number or 'auto', got {v!r}")
    return p.integer(key, default, minimum=minimum)


def _check_gpus(w: TrainingWorkload, fabric: Fabric) -> None:
    """The layout's GPUs are the job's, and the fabric has them."""
    avail = fabric.n_accelerators - w.first_gpu
    want = w.n_gpus if w.n_gpus is not None else avail
    if w.gpus != want:
        raise workload_error(
            w, "parallelism", f"tp*pp*dp*cp = {w.tp}*{w.pp}*{w.dp}*{w.cp} = {w.gpus}, but "
            f"the job has {want} GPUs" + ("" if w.n_gpus is not None else
                                          " (all of the fabric; set `gpus:` to run on part"
                                          " of it)"))
    if w.gpus > avail:
        raise workload_error(w, "gpus", f"{w.gpus} GPUs from GPU {w.first_gpu}, but the "
                             f"fabric has {avail}")


def _check_heads(w: TrainingWorkload) -> None:
    """Tensor parallelism splits the attention heads (and KV heads, or replicates them)."""
    m = w.model
    if m.heads % w.tp:
        raise workload_error(w, "parallelism.tp", f"{m.heads} attention heads are not "
                             f"divisible by tp={w.tp}")
    if m.mla is None and m.kv_heads % w.tp and w.tp % m.kv_heads:
        raise workload_error(w, "parallelism.tp", f"{m.kv_heads} KV heads and tp={w.tp} do "
                             "not divide each other")


def _check_stages(w: TrainingWorkload) -> None:
    """The layers split over the (virtual) pipeline stages as asked."""
    m = w.model
    if w.first_stage_layers is not None or w.last_stage_layers is not None:
        if w.split_counts_embedding_and_loss:
            raise workload_error(w, "parallelism.split_counts_embedding_and_loss",
                                 "set either it or first/last_stage_layers, not both")
        if w.vpp > 1 or w.pp < 3:
            raise workload_error(w, "parallelism.first_stage_layers", "uneven first/last "
                                 "stages need pp >= 3 and no virtual stages")
        rest = m.layers - (w.first_stage_layers or 0) - (w.last_stage_layers or 0)
        inner = w.pp - (w.first_stage_layers is not None) - (w.last_stage_layers is not None)
        if rest <= 0 or rest % inner:
            raise workload_error(w, "parallelism.first_stage_layers", f"{m.layers} layers "
                                 f"minus the first/last stages' leaves {rest}, not divisible "
                                 f"by the other {inner} stages")
    elif w.split_counts_embedding_and_loss:
        chunks = w.pp * w.vpp
        if (m.layers + 2) % chunks or (m.layers + 2) // chunks < 2:
            raise workload_error(w, "parallelism.split_counts_embedding_and_loss",
                                 f"{m.layers} layers + embedding + loss = {m.layers + 2} do "
                                 f"not split into pp x virtual stages = {chunks} chunks of 2 "
                                 "or more")
    elif m.layers % (w.pp * w.vpp):
        raise workload_error(w, "parallelism.pp", f"{m.layers} layers are not divisible by "
                             f"pp x virtual stages = {w.pp} x {w.vpp} = {w.pp * w.vpp}")


def _check_batch(w: TrainingWorkload) -> None:
    """The batch splits into micro-batches per replica, and the sequence over CP ranks."""
    if w.global_batch % (w.micro_batch * w.dp):
        raise workload_error(w, "batch.global", f"global batch {w.global_batch} is not "
                             f"divisible by micro_batch x dp = {w.micro_batch} x {w.dp} = "
                             f"{w.micro_batch * w.dp}")
    if w.schedule == "interleaved" and w.micro_batches % w.pp:
        raise workload_error(w, "batch.global", f"interleaved 1F1B needs micro-batches "
                             f"({w.micro_batches}) to be a multiple of pp={w.pp}")
    if w.seq_len % (2 * w.cp) and w.cp > 1:
        raise workload_error(w, "batch.seq_len", f"sequence {w.seq_len} is not divisible by "
                             f"2 x cp = {2 * w.cp} (load-balanced context parallelism)")


def _check_experts(w: TrainingWorkload) -> None:
    """Expert parallelism needs experts that split over data-parallel ranks."""
    m = w.model
    if w.ep == 1:
        return
    if m.moe is None:
        raise workload_error(w, "parallelism.ep", f"ep={w.ep} but {m.name} has no experts")
    if m.moe.experts % w.ep:
        raise workload_error(w, "parallelism.ep", f"{m.moe.experts} experts are not "
                             f"divisible by ep={w.ep}")
    if (w.dp * w.cp) % w.ep:
        raise workload_error(w, "parallelism.ep", f"ep={w.ep} must divide dp x cp = "
                             f"{w.dp * w.cp} (experts are spread over data-parallel ranks)")


def load_workload(path: str | Path, overrides: list[str] | None = None,
                  catalog: Catalog | None = None) -> TrainingWorkload:
    """Read a training workload YAML (see ``workloads/*.yaml`` for examples).

    Raises
    ------
    ConfigError
        Malformed file (naming file and field); InfeasibleError for layouts that cannot
        run (sizes that do not divide).
    """
    cat = catalog or load_catalog()
    doc = load_yaml(path)
    apply_overrides(doc.data, overrides, file=doc.file)
    doc.string("kind", "training", choices=("training",))
    name = doc.string("name", Path(path).stem)
    raw_model = doc.raw("model")
    if isinstance(raw_model, str):
        model = cat.get("models", raw_model, file=doc.file, field="model")
    else:
        model = read_model("inline", doc.sub("model"))
    b = doc.sub("batch")
    o = doc.sub("options", {})
    auto = _auto_fields(doc, b, o)
    p = doc.sub("parallelism")
    if isinstance(b.data.get("micro"), str):
        raise b.error("micro", f"expected a whole number or 'auto', got "
                      f"{b.data['micro']!r}")
    w = TrainingWorkload(
        name=name,
        model=model,
        global_batch=b.integer("global", minimum=1),
        micro_batch=b.integer("micro", 1, minimum=1),
        seq_len=b.integer("seq_len", minimum=1),
        precision=doc.string("precision", "bf16", choices=PRECISIONS),
        tp=_int_or_auto(p, "tp", 1, 1),
        pp=_int_or_auto(p, "pp", 1, 1),
        dp=_int_or_auto(p, "dp", 1, 1),
        cp=_int_or_auto(p, "cp", 1, 1),
        ep=_int_or_auto(p, "ep", 1, 1),
        vpp=_int_or_auto(p, "virtual_stages", 1, 1),
        zero=_int_or_auto(p, "zero", 1, 0),
        sequence_parallel=p.boolean("sequence_parallel", True),
        recompute=o.string("recompute", "none", choices=("none", "selective", "full")),
        schedule=o.string("schedule", "1f1b", choices=SCHEDULE_NAMES),
        flash_attention=o.boolean("flash_attention", True),
        overlap_grad_reduce=o.boolean("overlap_grad_reduce", True),
        overlap_param_gather=o.boolean("overlap_param_gather", True),
        tp_comm_overlap=o.boolean("tp_comm_overlap", False),
        overlap_p2p_comm=o.boolean("overlap_p2p_comm", True),
        stragglers=o.boolean("stragglers", True),
        tp_comm_overlap_sms=o.integer("tp_comm_overlap_sms", 16, minimum=0),
        ep_comm_overlap=o.boolean("ep_comm_overlap", False),
        ep_comm_overlap_sms=o.integer("ep_comm_overlap_sms", 20, minimum=0),
        grad_bucket_params=o.number("grad_bucket_params", 40e6, low=1.0),
        grad_reduce_bytes={"fp32": 4, "bf16": 2, "fp16": 2, None: None}[
            o.string("grad_reduce_dtype", None, choices=("fp32", "bf16", "fp16"))],
        first_stage_layers=p.integer("first_stage_layers", None, minimum=1),
        last_stage_layers=p.integer("last_stage_layers", None, minimum=1),
        split_counts_embedding_and_loss=p.boolean("split_counts_embedding_and_loss", False),
        placement=doc.string("placement", "tp,cp,dp,pp"),
        first_gpu=doc.integer("first_gpu", 0, minimum=0),
        n_gpus=doc.integer("gpus", None, minimum=1),
        file=doc.file,
        auto=frozenset(auto),
    )
    if p.raw("fsdp", False):
        if "zero" in auto:
            raise p.error("fsdp", "fsdp: true fixes ZeRO stage 3; it cannot be combined "
                          "with zero: auto")
        w.zero = 3
    if w.zero > 3:
        raise p.error("zero", f"ZeRO stage must be 0-3, got {w.zero}")
    if w.vpp > 1 and w.schedule == "1f1b":
        w.schedule = "interleaved"
    if sorted(w.placement.split(",")) != sorted(["tp", "cp", "dp", "pp"]):
        raise doc.error("placement", f"expected an order of tp, cp, dp, pp, got "
                        f"{w.placement!r}")
    for n in (b, p, o):
        n.done()
    doc.done()
    if auto:
        _check_given(w)
    else:
        check(w)
    return w

