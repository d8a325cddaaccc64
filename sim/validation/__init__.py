"""Validation against published measurements.

Each case function reads the published numbers from their tab-separated files as they
are, builds the fabric the measurement ran on from the bundled catalog, predicts the same
quantity and returns a tidy DataFrame (case, measured, predicted, error %). No constant is
fitted per case: every prediction uses the same catalog and library constants.

The files live outside the package, so every function takes the folders it reads as
arguments: ``shared`` (the project's shared ``validation`` folder: collectives.tsv,
training_cases.tsv, inference.tsv, ...), ``extra`` (the repository's
``experiments/validation`` folder) and, where rows name bundled proposals, ``topologies``.
The command line (``fabsim validate``) finds the defaults.

Modules: :mod:`.data` (readers), :mod:`.collectives`, :mod:`.training`,
:mod:`.inference` (TensorRT-LLM), :mod:`.mlperf`.
"""

from __future__ import annotations

from .collectives import collective_cases, multinode_cases, summarize_errors
from .data import first_count, first_int, first_number, read_rows, read_tsv, seq_tokens
from .inference import (
    TRTLLM_HOST_PER_REQUEST_S,
    TRTLLM_VOCAB_BUFFER_BYTES,
    trtllm_attention,
    trtllm_cases,
    trtllm_ifb_cases,
    trtllm_service,
)
from .mlperf import (
    MLPERF_MIN_DURATION_S,
    MLPERF_OFFLINE_RUN_SAMPLES,
    MLPERF_SYSTEMS,
    MLPERF_TPOT_P99_S,
    MLPERF_TTFT_P99_S,
    MLPerfSystem,
    mlperf_cases,
    mlperf_offline,
    mlperf_output_lengths,
    mlperf_prompt_lengths,
    mlperf_published,
    mlperf_server,
    mlperf_service,
)
from .training import (
    NEMO_MODELS,
    nemo_training_cases,
    published_training_cases,
    split_summary,
    training_cases,
    training_fabric,
)

__all__ = [
    # cases
    "collective_cases", "multinode_cases", "summarize_errors", "training_cases", "nemo_training_cases",
    "published_training_cases", "trtllm_cases", "trtllm_ifb_cases", "mlperf_cases",
    "mlperf_offline", "mlperf_server",
    # building blocks
    "read_tsv", "read_rows", "first_number", "first_count", "first_int", "seq_tokens",
    "NEMO_MODELS", "split_summary", "training_fabric", "trtllm_attention", "trtllm_service",
    "mlperf_prompt_lengths", "mlperf_output_lengths", "mlperf_service", "mlperf_published",
    # constants
    "TRTLLM_HOST_PER_REQUEST_S", "TRTLLM_VOCAB_BUFFER_BYTES", "MLPERF_MIN_DURATION_S",
    "MLPERF_OFFLINE_RUN_SAMPLES", "MLPERF_TTFT_P99_S", "MLPERF_TPOT_P99_S", "MLPerfSystem",
    "MLPERF_SYSTEMS",
]
