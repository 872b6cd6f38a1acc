#!/usr/bin/env bash
# Ablations beside the converged tables (issue 12), trained exactly as run.sh trains the table they explain
# (early stopping on validation NDCG@10 with patience 3 under a 60-epoch ceiling, float32, one thread per run),
# each into its own folder under benchmarks/converged/. Resumable the same way: rerun; finished runs are reused.
#
# ml1m-loo-mind-k1: MIND with one interest (K = 1). Routing then puts every history item in the one capsule
# (the softmax over one interest is 1), so the model is a summed bilinear map, squashed, through the ReLU layer:
# YouTube DNN's shape with MIND's layers. Set against MIND (K = 4) and YouTube DNN in converged/ml1m-loo, it
# tells how much of MIND's gap to YouTube DNN comes from the multi-interest part (random-logit routing, max over
# interests at retrieval) and how much from the rest of the model.
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_WAIT_POLICY=PASSIVE
SINEREC=${SINEREC:-.venv/bin/sinerec}
DATA=${DATA:-../shared/data}
SEEDS=${SEEDS:-0,1,2}
DEVICE=${DEVICE:-auto}
common=(--seeds "$SEEDS" --jobs 1 --set train.epochs=60 --set train.patience=3 --set "train.device=\"$DEVICE\""
        --set 'train.amp="off"')
if [ "$DEVICE" = "auto" ] || [ "$DEVICE" = "cpu" ]; then common+=(--threads 1); fi

$SINEREC benchmark --models mind --set mind:model_params.num_interests=1 "${common[@]}" \
  --dataset ml-1m --data-dir "$DATA/ml-1m" --protocol loo --out benchmarks/converged/ml1m-loo-mind-k1

runs=benchmarks/converged/ml1m-loo/runs
if [ -f $runs/mind-seed0/model.pt ] && [ -f $runs/mind-seed1/model.pt ] && [ -f $runs/mind-seed2/model.pt ]; then
  "${PYTHON:-.venv/bin/python}" benchmarks/converged/interest_readouts.py $runs/mind-seed0 $runs/mind-seed1 \
    $runs/mind-seed2 --out benchmarks/converged/ml1m-loo-mind-readouts.json
fi
