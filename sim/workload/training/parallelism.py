"""Where a training job's work sits: the layers of each pipeline stage (and virtual
chunk), and the job's GPUs arranged as a grid of (pipeline, data, context, tensor)
ranks following its placement order.

Main assumption: ranks are laid out on the fabric's accelerators in locality order
(consecutive GPUs share a server and its scale-up domain), the first axis of
``placement`` varying fastest.
"""

from __future__ import annotations

import numpy as np

from ...fabric.fabric import Fabric
from .spec import TrainingWorkload

__all__ = ["rank_grid", "stage_layers"]


def stage_layers(w: TrainingWorkload, stage: int, chunk: int = 0) -> range:
    """The layers of pipeline ``stage`` (virtual ``chunk``)."""
    m = w.model
    if w.split_counts_embedding_and_loss:
        # slots 0 and layers + 1 are the embedding and the loss
        per = (m.layers + 2) // (w.pp * w.vpp)
        first = (chunk * w.pp + stage) * per
        return range(max(0, first - 1), min(m.layers, first + per - 1))
    if w.first_stage_layers is None and w.last_stage_layers is None:
        per = m.layers // (w.pp * w.vpp)
        first = (chunk * w.pp + stage) * per
        return range(first, first + per)
    fl = w.first_stage_layers
    ll = w.last_stage_layers
    inner = w.pp - (fl is not None) - (ll is not None)
    per = (m.layers - (fl or 0) - (ll or 0)) // inner
    sizes = [per] * w.pp
    if fl is not None:
        sizes[0] = fl
    if ll is not None:
        sizes[-1] = ll
    start = sum(sizes[:stage])
    return range(start, start + sizes[stage])


def rank_grid(w: TrainingWorkload, f: Fabric) -> np.ndarray:
    """GPU names as an array indexed [pp, dp, cp, tp] following ``placement``."""
    order = w.placement.split(",")  # fastest first
    sizes = {"tp": w.tp, "cp": w.cp, "dp": w.dp, "pp": w.pp}
    shape = [sizes[k] for k in reversed(order)]  # slowest first
    accs = np.array(f.accelerators[w.first_gpu:w.first_gpu + w.gpus], dtype=object)
    grid = accs.reshape(shape)
    axes = [list(reversed(order)).index(k) for k in ("pp", "dp", "cp", "tp")]
    return grid.transpose(axes)
