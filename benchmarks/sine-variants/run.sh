#!/usr/bin/env bash
# SINE's two softmaxes (issue 12): the literal equations against the authors' cosine forms, on ML-1M and
# Amazon Beauty (loo), seeds 0, 1, 2, at one fixed budget per run: 4 x 1,000 steps of batch 128 (512,000
# training examples), validation after each 1,000 steps, test at the best validation point.
# Resumable: rerun the same script; finished runs are reused by `sinerec benchmark`.
#   literal   variant=paper (Eq. 3 = LN . LN, Eq. 7 = LN . LN / tau, as printed)
#   eq3       Eq. 3 = cos / 0.07 only          (assign_logits=cosine)
#   eq7       Eq. 7 = cos / tau only           (aggregate_logits=cosine)
#   both      variant=paper-cosine (both)
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_WAIT_POLICY=PASSIVE
SINEREC=${SINEREC:-.venv/bin/sinerec}
DATA=${DATA:-../shared/data}
budget=(--set train.max_steps_per_epoch=1000 --set train.epochs=4 --set train.patience=4)
declare -A variant=(
  [literal]="--set model_params.variant=paper"
  [eq3]="--set model_params.variant=paper --set model_params.assign_logits=cosine"
  [eq7]="--set model_params.variant=paper --set model_params.aggregate_logits=cosine"
  [both]="--set model_params.variant=paper-cosine"
)
for dataset in ml-1m amazon-beauty; do
  for name in literal eq3 eq7 both; do
    # shellcheck disable=SC2086
    $SINEREC benchmark --models sine --seeds 0,1,2 --dataset "$dataset" --data-dir "$DATA/$dataset" \
      --protocol loo --threads 1 "${budget[@]}" ${variant[$name]} \
      --out "benchmarks/sine-variants/$dataset-$name"
  done
done
