#!/usr/bin/env bash
# Everything sinerec measures on a GPU, in one command that fits one call of a lent GPU machine (issues 12, 13):
#
#   1. gpu_check.py, eager and --compile: SINE's training examples/s and full-ranking evaluation time on ML-1M;
#   2. one real ML-1M epoch of `sinerec train` (SINE, the paper's settings, batch 2048): the issue-13 criterion,
#      an epoch in under 3 seconds (RecBole's published SINE: 15.25 s on a TITAN V);
#   3. speed.py --device cuda --compile: examples/s and the fraction of the measured GEMM peak, every model;
#   4. the converged tables (benchmarks/converged/run.sh, float32, on the GPU) for whatever time is left; their
#      per-run files (settings, logs, metrics; no weights) come back as converged.tgz inside the archive; merge
#      the runs it finished with `python benchmarks/converged/merge.py converged.tgz` (never over runs finished
#      here), and the tables resume from them on any machine.
#
# Each step has its own time limit and writes into a work folder as it goes, so a step that fails or runs out
# of time loses only itself; at the end everything is packed into $OUT/gpu-session.tgz (the device returns at
# most 8 files), with $OUT/steps.txt (each step's exit status and seconds) beside it. The data does not travel with the repository: copy it once into an ignored
# folder and carry that folder:
#
#   mkdir -p .gpu-data && cp -r ../shared/data/ml-1m ../shared/data/amazon-beauty .gpu-data/   # .gitignore'd
#   device run: command `bash benchmarks/gpu_session.sh`, carry [".gpu-data"], timeout_s 600
#
# ONLY="converged" (names of steps, space-separated) runs those steps alone: a second call of the same session
# can give all its time to the converged tables.
#
# Smoke test on a CPU (every step on tiny budgets; the compile check only with SMOKE_COMPILE=1, a minute more;
# tests/test_benchmark_scripts.py runs it): SMOKE=1 OUT=/tmp/g DATA=../shared/data bash benchmarks/gpu_session.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/sinerec-gpu-session}
WORK=$(mktemp -d /tmp/sinerec-gpu-session.XXXXXX)
DATA=${DATA:-.gpu-data}
PY=${PYTHON:-python3}
BUDGET=${BUDGET:-540}  # seconds for the whole script: one device call is at most 600
SMOKE=${SMOKE:-0}
mkdir -p "$OUT" "$WORK/speed"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
START=$SECONDS
left() { echo $((BUDGET - (SECONDS - START))); }

step() {  # step NAME SECONDS COMMAND...: run COMMAND with a limit (never past the budget), log to $WORK/NAME.log
  local name=$1 limit=$2; shift 2
  if [ -n "${ONLY:-}" ] && [[ " $ONLY " != *" $name "* ]]; then return; fi
  local remaining; remaining=$(left)
  [ "$limit" -gt "$remaining" ] && limit=$remaining
  if [ "$limit" -le 5 ]; then echo "$name: skipped (budget spent)" | tee -a "$WORK/steps.txt"; return; fi
  local t0=$SECONDS
  timeout "$limit" "$@" > "$WORK/$name.log" 2>&1
  echo "$name: exit $? after $((SECONDS - t0)) s (limit $limit s)" | tee -a "$WORK/steps.txt"
}

if [ "$SMOKE" = 1 ]; then
  device=cpu; check=(--device cpu --max-steps 3 --warmup 1 --batch-size 64)
  epoch=(--set train.max_steps_per_epoch=3 --batch-size 64); speed=(--quick --device cpu --steps 1 --repeats 1)
  converged_limit=60
else
  device=cuda; check=(); epoch=(--batch-size 2048); speed=(--device cuda --compile); converged_limit=100000
fi

{ date -u '+%Y-%m-%d %H:%M UTC'; git log -1 --format='commit %H' 2>/dev/null; nvidia-smi 2>&1 | head -15
  "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"; } > "$WORK/env.txt" 2>&1

step gpu_check 150 "$PY" benchmarks/gpu_check.py --data-dir "$DATA/ml-1m" "${check[@]}" --out "$WORK/gpu_check.json"
if [ "$SMOKE" != 1 ] || [ "${SMOKE_COMPILE:-0}" = 1 ]; then
  step gpu_check_compile 200 "$PY" benchmarks/gpu_check.py --data-dir "$DATA/ml-1m" "${check[@]}" --compile \
    --out "$WORK/gpu_check_compile.json"
fi
step epoch 120 "$PY" -m sinerec train --model sine --dataset ml-1m --data-dir "$DATA/ml-1m" --device "$device" \
  --epochs 1 "${epoch[@]}" --out "$WORK/epoch-run"
cp "$WORK/epoch-run/log.jsonl" "$WORK/epoch-log.jsonl" 2>/dev/null
cp "$WORK/epoch-run/metrics.json" "$WORK/epoch-metrics.json" 2>/dev/null
rm -rf "$WORK/epoch-run"  # weights and id maps: not needed back
step speed 150 "$PY" benchmarks/speed/speed.py --data-dir "$DATA/ml-1m" "${speed[@]}" --out "$WORK/speed"
# the converged tables: float32 on the GPU (device auto resolves to it), the same settings as the CPU runs, so
# both machines' runs make one table; JOBS runs share the GPU
if [ "$SMOKE" = 1 ]; then
  step converged "$converged_limit" "$PY" -m sinerec benchmark --models mostpop --seeds 0 --dataset ml-latest-small \
    --quick --out "$WORK/converged-smoke"
  tar czf "$WORK/converged.tgz" --exclude '*.pt' -C "$WORK" converged-smoke
else
  export SINEREC="$PY -m sinerec" PYTHON="$PY" DATA JOBS=${JOBS:-4}
  step converged "$(($(left) - 20))" bash benchmarks/converged/run.sh
  tar czf "$WORK/converged.tgz" --exclude '*.pt' --exclude '*.npz' --exclude 'data' benchmarks/converged
fi
echo "done in $((SECONDS - START)) s" | tee -a "$WORK/steps.txt"
cp "$WORK/steps.txt" "$OUT/steps.txt"
tar czf "$OUT/gpu-session.tgz" -C "$WORK" .
rm -rf "$WORK"
