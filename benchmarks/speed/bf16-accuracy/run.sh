#!/usr/bin/env bash
# bfloat16 autocast against float32 on validation accuracy (issue 13 item 2): SINE (the default variant,
# paper-cosine), ML-1M and Amazon Beauty loo, seeds 0, 1, 2, at the fixed budget of benchmarks/sine-variants
# (4 x 1,000 steps of batch 128, validation after each 1,000 steps), with train.amp=bf16 and train.compile=true
# (the fastest configuration of benchmarks/speed/fusion-quiet: 2.07x eager float32). The float32 runs with the
# same settings are benchmarks/sine-variants/{ml-1m,amazon-beauty}-both (eager; train.amp=auto = off on a CPU).
# Resumable: rerun the same script; finished runs are reused. Then: python benchmarks/speed/bf16-accuracy/summarise.py
set -euo pipefail
cd "$(dirname "$0")/../../.."
export OMP_WAIT_POLICY=PASSIVE
SINEREC=${SINEREC:-.venv/bin/sinerec}
DATA=${DATA:-../shared/data}
budget=(--set train.max_steps_per_epoch=1000 --set train.epochs=4 --set train.patience=4)
for dataset in ${DATASETS:-ml-1m amazon-beauty}; do
  $SINEREC benchmark --models sine --seeds 0,1,2 --dataset "$dataset" --data-dir "$DATA/$dataset" \
    --protocol loo --threads 1 --jobs "${JOBS:-1}" "${budget[@]}" --set model_params.variant=paper-cosine \
    --set train.amp=bf16 --set train.compile=true --out "benchmarks/speed/bf16-accuracy/$dataset-bf16"
done
