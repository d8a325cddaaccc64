#!/usr/bin/env bash
# Behaviour snapshot: every number a refactor must preserve, as JSON files in one folder.
# Run at two commits and diff the folders:
#   bash experiments/regression/snapshot.sh /tmp/before   (at the old commit)
#   bash experiments/regression/snapshot.sh /tmp/after    (at the new commit)
#   diff -r /tmp/before /tmp/after && echo identical
# Covers `fabsim validate training|inference|collectives`, the README's main job (--json) and
# the benchmark cases (training steps, the 16-replica service, 1 GiB all-reduces), whose
# timings are left out (they are not numbers of the model).
set -euo pipefail
out=${1:?usage: snapshot.sh OUTDIR}
mkdir -p "$out"
cd "$(dirname "$0")/../.."
T=topologies; W=workloads
run() { local name=$1; shift; echo "== $name" >&2; "$@" > "$out/$name.json"; }
if [ -z "${SKIP_VALIDATE:-}" ]; then  # SKIP_VALIDATE=1: the rest only (a few minutes)
  run validate-collectives fabsim validate collectives --json
  run validate-training fabsim validate training --json
  run validate-inference fabsim validate inference --json
fi
run compare fabsim compare $T/dgx-h100-superpod-ib.yaml $T/dgx-h100-superpod-2to1.yaml \
  $T/dgx-h100-superpod-rail-only.yaml $T/dgx-h100-superpod-roce.yaml $T/mi300x-roce.yaml \
  $T/gb200-nvl72-xdr.yaml --workload $W/gpt3-175b-1k.yaml --service $W/llama3-70b-serve-16x.yaml \
  --json
run train-405b-16k fabsim train --topology $T/llama3-16k-roce.yaml --workload $W/llama3.1-405b-16k.yaml --json
run train-70b-1k fabsim train --topology $T/dgx-h100-superpod-ib.yaml --workload $W/llama3-70b-1k.yaml --json
run train-gpt3-1k fabsim train --topology $T/dgx-h100-superpod-ib.yaml --workload $W/gpt3-175b-1k.yaml --json
run train-gpt3-1k-analytical fabsim train --topology $T/dgx-h100-superpod-ib.yaml --workload $W/gpt3-175b-1k.yaml --network analytical --json
run train-deepseek fabsim train --topology $T/dgx-h100-superpod-ib.yaml --workload $W/deepseek-v3-1k.yaml --json
run serve-16x fabsim serve --topology $T/dgx-h100-superpod-ib.yaml --service $W/llama3-70b-serve-16x.yaml --duration 600s --json
for f in $W/*.yaml; do
  b=$(basename "$f" .yaml)
  case "$b" in mix-*) run "run-$b" fabsim run "$f" --json ;; esac
done
for t in dgx-h100-superpod-roce dgx-h100-superpod-ib llama3-16k-roce; do
  run "allreduce-$t" fabsim collective --topology $T/$t.yaml --op all_reduce --ranks 1024 --sizes 1GiB --json
done
run allreduce-16k fabsim collective --topology $T/llama3-16k-roce.yaml --op all_reduce --ranks 16384 --sizes 1GiB --json
run serve-disagg fabsim serve --topology $T/dgx-h100-superpod-ib.yaml --service $W/llama3-70b-serve-32x-disagg.yaml --duration 120s --json
run serve-mlperf fabsim serve --topology $T/dgx-h100-superpod-ib.yaml --service $W/llama2-70b-serve.yaml --duration 120s --json
run train-mixtral-256 fabsim train --topology $T/dgx-h100-superpod-2to1.yaml --workload $W/mixtral-8x7b-256.yaml --json
run train-8b-cp fabsim train --topology $T/dgx-h100-superpod-ib.yaml --workload $W/llama3-8b-cp.yaml --json
echo "snapshot written to $out" >&2
