#!/usr/bin/env bash
# Converged tables (issue 12): every model trained to early stopping on validation NDCG@10 (patience 3) under a
# generous ceiling of 60 epochs, seeds 0, 1, 2, on ML-1M loo, Amazon Beauty loo and Amazon Beauty comirec;
# then the same with every neural model at one embedding size (D = 64); each benchmark's runs re-scored with
# the history ranked, as the papers' official code scores (history.json, benchmarks/rescore_history.py).
#
# Long: hours on 2 CPU cores (an ML-1M epoch of all eight trained models is ~16 core-minutes), much less on a
# GPU, where the same command trains there (train.device = "auto"; keep DEVICE unset, so that runs made on
# either machine are one table: `benchmarks/gpu_session.sh` runs it on a lent GPU). Resumable across sittings:
# rerun the same script; finished runs are reused, an unfinished one continues from its last epoch if its
# checkpoint is still on disk (the same checkout; checkpoints are not committed) and starts over if not. Commit
# each folder's results.* and runs/*/{config,data,metrics,benchmark}.json and log.jsonl (not the weights).
# Precision: float32 (train.amp=off) for every model, as every earlier table and the papers; bf16 autocast, the
# default on CPUs with bf16 in hardware since these tables started, was checked for SINE only
# (benchmarks/speed/bf16-accuracy). AMP=auto (or bf16) trains them in bf16 instead (into other folders: OUT_SUFFIX).
# TABLES picks tables by folder name (default all five, in the order below), e.g. TABLES=beauty-loo; two
# invocations on different tables can run side by side (JOBS=1 each on two cores). MODELS reorders the models (a
# comma list; default below): e.g. the two ComiRec models first, to settle the criterion that compares them. An
# invocation's results.* list the models it was given; rerunning with the default list reuses every finished run
# and writes the whole table again. Two invocations may also share one table with disjoint MODELS (e.g.
# MODELS=sasrec,caser beside MODELS=comirec-sa,comirec-dr); REPORT_ONLY=1 then writes each chosen table whole from
# the runs finished so far (and its history.json), training nothing (`sinerec benchmark --report-only`).
# SEEDS (default 0,1,2) picks seeds the same way: two invocations may share one model with disjoint SEEDS
# (e.g. MODELS=sasrec SEEDS=0,1 beside MODELS=sasrec SEEDS=2), to put a slow model's seeds on both cores.
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_WAIT_POLICY=PASSIVE
SINEREC=${SINEREC:-.venv/bin/sinerec}
DATA=${DATA:-../shared/data}
JOBS=${JOBS:-2}
SEEDS=${SEEDS:-0,1,2}
DEVICE=${DEVICE:-auto}
AMP=${AMP:-off}
SUFFIX=${OUT_SUFFIX:-}
ALL_TABLES="ml1m-loo beauty-loo beauty-comirec ml1m-loo-d64 beauty-loo-d64"
TABLES=${TABLES:-$ALL_TABLES}
for table in ${TABLES//,/ }; do
  case " $ALL_TABLES " in *" $table "*) ;; *) echo "run.sh: TABLES: unknown table '$table'; choose from: $ALL_TABLES" >&2; exit 2 ;; esac
done
# every seed of a model before the next model (--order model), so that each row is complete with its spread as
# soon as it appears; SINE first, then what the issue's criteria compare it with (YouTube DNN and MIND), then the rest
MODELS=${MODELS:-mostpop,sine,youtubednn,mind,gru4rec,sasrec,caser,comirec-sa,comirec-dr}
common=(--models "$MODELS" --order model
        --seeds "$SEEDS" --jobs "$JOBS" --set train.epochs=60 --set train.patience=3 --set "train.device=\"$DEVICE\""
        --set "train.amp=\"$AMP\"")
if [ "$DEVICE" = "auto" ] || [ "$DEVICE" = "cpu" ]; then common+=(--threads 1); fi
if [ -n "${REPORT_ONLY:-}" ]; then common+=(--report-only); fi
beauty=(--set sasrec:model_params.dropout=0.5)
comirec=(--protocol comirec --set data.min_item_count=5 --set data.min_user_count=5 --set data.kcore_iterative=false)
same_size=(--set sine:model_params.dim=64 --set sasrec:model_params.dim=64 --set gru4rec:model_params.dim=64
           --set caser:model_params.dim=64 --set youtubednn:model_params.dim=64)

run() {  # run OUT ARGS...: one benchmark, then its history-ranked re-scoring (if OUT is one of TABLES)
  case " ${TABLES//,/ } " in *" $1 "*) ;; *) return 0 ;; esac
  local out=$1$SUFFIX; shift
  # shellcheck disable=SC2086
  $SINEREC benchmark "$@" "${common[@]}" --out "benchmarks/converged/$out"
  "${PYTHON:-.venv/bin/python}" benchmarks/rescore_history.py "benchmarks/converged/$out" \
    --out "benchmarks/converged/$out/history.json"
}

run ml1m-loo --dataset ml-1m --data-dir "$DATA/ml-1m" --protocol loo
run beauty-loo --dataset amazon-beauty --data-dir "$DATA/amazon-beauty" --protocol loo "${beauty[@]}"
run beauty-comirec --dataset amazon-beauty --data-dir "$DATA/amazon-beauty" "${comirec[@]}" "${beauty[@]}"
# the models already at D = 64 (MIND, ComiRec-SA/DR) and MostPop are the same runs as in the main tables: copied
run ml1m-loo-d64 --dataset ml-1m --data-dir "$DATA/ml-1m" --protocol loo "${same_size[@]}" \
  --reuse "benchmarks/converged/ml1m-loo$SUFFIX"
run beauty-loo-d64 --dataset amazon-beauty --data-dir "$DATA/amazon-beauty" --protocol loo "${beauty[@]}" \
  "${same_size[@]}" --reuse "benchmarks/converged/beauty-loo$SUFFIX"
