"""Memory per GPU of a training job's pipeline stage (Korthikanti et al. 2022 for
activations, Rajbhandari et al. 2020 for ZeRO's sharding of gradients and optimizer
states), and the check that the busiest stage fits in HBM.

Main assumption: bf16 weights, fp32 master weights and Adam moments; activations of the
micro-batches a stage holds in flight under its pipeline schedule.
"""

from __future__ import annotations

from ..models import layer_costs, params_per_layer
from .parallelism import stage_layers
from .spec import TrainingWorkload, workload_error

__all__ = ["check_memory", "memory_per_gpu"]


def memory_per_gpu(w: TrainingWorkload, stage: int = 0) -> dict:
    """Bytes per GPU of pipeline stage ``stage``: weights, gradients, optimizer states,
    activations in flight, and the logits of the last stage."""
    m = w.model
    layers = [lay for c in range(w.vpp) for lay in stage_layers(w, stage, c)]
    per_stage = len(layers)
    first = layers[0]
    dense = experts = 0
    for layer in layers:
        d, e = params_per_layer(m, layer)
        dense += d
        experts += e
    params = dense / w.tp + experts / (w.tp * w.ep)
    if stage == 0 or stage == w.pp - 1:
        params += m.vocab * m.hidden / w.tp * (1 if (w.pp > 1 or m.tied_embeddings) else 2)
    shard = w.dp * w.cp
    weights = 2 * params / (shard if w.zero >= 3 else 1)
    # the gradient buffer in the dtype it is reduced in (Megatron's main_grad: fp32 unless
    # grad_reduce_in_fp32 is off), plus, when it is 16-bit, the optimizer's fp32 copy of its
    # own shard of it
    grads = w.grad_reduce_bytes * params / (shard if w.zero >= 2 else 1)
    if w.grad_reduce_bytes < 4 and w.zero >= 1:
        grads += 4 * params / shard
    optim = 12 * params / (shard if w.zero >= 1 else 1)  # fp32 master + Adam m, v
    cost = layer_costs(m, micro_batch=w.micro_batch, seq_len=w.seq_len, tp=w.tp, cp=w.cp,
                       ep=w.ep, sequence_parallel=w.sequence_parallel, recompute=w.recompute,
                       flash_attention=w.flash_attention, layer=first,
                       fp8=w.precision == "fp8")
    if w.schedule == "gpipe":
        in_flight = w.micro_batches
    elif w.schedule == "interleaved":
        in_flight = min(w.micro_batches, w.pp - stage + (w.pp - 1) / w.vpp)
    else:
        in_flight = min(w.micro_batches, w.pp - stage)
    acts = cost.activation_bytes * per_stage * in_flight
    logits = 0.0
    if stage == w.pp - 1:
        logits = 4 * w.micro_batch * w.seq_len / w.cp * m.vocab / w.tp  # fp32 logits
    total = weights + grads + optim + acts + logits
    return {"weights": weights, "gradients": grads, "optimizer": optim, "activations": acts,
            "logits": logits, "total": total, "params": params}


def check_memory(w: TrainingWorkload, hbm_capacity_B: float, accelerator: str
                 ) -> tuple[list[dict], dict]:
    """Memory of every stage and the largest; InfeasibleError (with the numbers) if the
    largest does not fit in ``hbm_capacity_B``."""
    mem = [memory_per_gpu(w, s) for s in range(w.pp)]
    worst = max(mem, key=lambda x: x["total"])
    if worst["total"] > hbm_capacity_B:
        s = mem.index(worst)
        raise workload_error(
            w, "memory", f"stage {s} needs {worst['total'] / 2**30:.1f} GiB per GPU "
            f"(weights {worst['weights'] / 2**30:.1f}, gradients "
            f"{worst['gradients'] / 2**30:.1f}, optimizer "
            f"{worst['optimizer'] / 2**30:.1f}, activations "
            f"{worst['activations'] / 2**30:.1f}, logits {worst['logits'] / 2**30:.1f})"
            f" but {accelerator} has {hbm_capacity_B / 2**30:.1f} GiB")
    return mem, worst
