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
#
# beauty-comirec-dr-flow: ComiRec-DR with gradients through every routing iteration
# (model_params.stop_routing_gradient = false, this library's reading before 2026-12-01), on Amazon Beauty under
# ComiRec's protocol with every setting of converged/beauty-comirec, whose comirec-dr rows stop them in the
# iterations before the last as the authors' code does (the default since). The runs in this folder were
# made as that table's comirec-dr rows while flowing gradients were the default, and moved here when the
# default changed.
#
# beauty-comirec-dr-scale: ComiRec-DR with one learned scalar on its squashed capsules
# (model_params.learned_scale = true; not the paper's), so that the softmax can sharpen without growing the item
# vectors, and gradients through every routing iteration as in beauty-comirec-dr-flow (when it was measured,
# the default). Tests whether the bounded capsules (norm < 1), which make ComiRec-DR's retrieval lean on
# popular items, cost it the Recall@50 it lacks against ComiRec-SA.
#
# beauty-comirec-dr-sampled: ComiRec-DR (the table's settings) trained as the authors' code trains it, by a sampled
# softmax: 1,280 negatives shared by a batch (the code's 10 x batch size 128), drawn by TF's log-uniform sampler
# over the popularity rank, with the log-Q correction (train.loss = "sampled"), instead of the full softmax.
#
# beauty-loo-sine-dropout02, beauty-loo-sine-dropout05: SINE with dropout 0.2 / 0.5 on the history's item
# embeddings (model_params.dropout; the paper gives none, the default is 0), on Amazon Beauty loo with every
# setting of converged/beauty-loo. There SINE stops after about 8 epochs (best 5), fitting the sparse data
# quickly, while SASRec trains with its paper's dropout 0.5 for sparse data and keeps improving for 40 epochs
# and more: how much of the gap between them is regularisation.
#
# ml1m-loo-sine-k1: SINE with one interest (K = 1; still chosen from the L = 50 concepts, with their covariance
# regulariser), on ML-1M loo with every setting of converged/ml1m-loo, where SINE (K = 4) stays 9.5 % below
# GRU4Rec at convergence. Like ml1m-loo-mind-k1 for MIND: how much of the gap is the cost of several interests
# on a dataset whose users' recent histories are one fairly homogeneous taste.
#
# ABLATIONS picks some by folder name (default all, in the order below).
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

ALL="ml1m-loo-mind-k1 beauty-comirec-dr-flow beauty-comirec-dr-scale beauty-comirec-dr-sampled"
ALL="$ALL beauty-loo-sine-dropout02 beauty-loo-sine-dropout05 ml1m-loo-sine-k1"
ABLATIONS=${ABLATIONS:-$ALL}
for name in ${ABLATIONS//,/ }; do
  case " $ALL " in *" $name "*) ;; *) echo "ablations.sh: ABLATIONS: unknown '$name'; choose from: $ALL" >&2; exit 2 ;; esac
done
wanted() { case " ${ABLATIONS//,/ } " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

if wanted ml1m-loo-mind-k1; then
  $SINEREC benchmark --models mind --set mind:model_params.num_interests=1 "${common[@]}" \
    --dataset ml-1m --data-dir "$DATA/ml-1m" --protocol loo --out benchmarks/converged/ml1m-loo-mind-k1
fi

# converged/run.sh's beauty-comirec settings
comirec=(--dataset amazon-beauty --data-dir "$DATA/amazon-beauty" --protocol comirec --set data.min_item_count=5
         --set data.min_user_count=5 --set data.kcore_iterative=false)
if wanted beauty-comirec-dr-flow; then
  $SINEREC benchmark --models comirec-dr --set comirec-dr:model_params.stop_routing_gradient=false "${common[@]}" \
    "${comirec[@]}" --out benchmarks/converged/beauty-comirec-dr-flow
fi
if wanted beauty-comirec-dr-scale; then
  $SINEREC benchmark --models comirec-dr --set comirec-dr:model_params.learned_scale=true \
    --set comirec-dr:model_params.stop_routing_gradient=false "${common[@]}" "${comirec[@]}" \
    --out benchmarks/converged/beauty-comirec-dr-scale
fi
if wanted beauty-comirec-dr-sampled; then
  $SINEREC benchmark --models comirec-dr --set 'train.loss="sampled"' --set train.num_negatives=1280 \
    --set 'train.sampler="log-uniform"' "${common[@]}" "${comirec[@]}" --out benchmarks/converged/beauty-comirec-dr-sampled
fi

for rate in 02 05; do
  if wanted beauty-loo-sine-dropout$rate; then
    $SINEREC benchmark --models sine --set "sine:model_params.dropout=0.${rate#0}" "${common[@]}" \
      --dataset amazon-beauty --data-dir "$DATA/amazon-beauty" --protocol loo \
      --out "benchmarks/converged/beauty-loo-sine-dropout$rate"
  fi
done

if wanted ml1m-loo-sine-k1; then
  $SINEREC benchmark --models sine --set sine:model_params.num_interests=1 "${common[@]}" \
    --dataset ml-1m --data-dir "$DATA/ml-1m" --protocol loo --out benchmarks/converged/ml1m-loo-sine-k1
fi

# the interests of the two ComiRec models of converged/beauty-comirec, and of ComiRec-DR trained by the sampled
# softmax, read out (diagnosis of ComiRec-DR's Recall@50), where the runs' weights are on disk (the same checkout)
readouts() {  # readouts FOLDER MODEL OUT
  local runs=benchmarks/converged/$1/runs
  if [ -f $runs/$2-seed0/model.pt ] && [ -f $runs/$2-seed1/model.pt ] && [ -f $runs/$2-seed2/model.pt ]; then
    "${PYTHON:-.venv/bin/python}" benchmarks/converged/interest_readouts.py $runs/$2-seed0 $runs/$2-seed1 \
      $runs/$2-seed2 --metrics NDCG@10,Recall@20,Recall@50 --out "benchmarks/converged/$3"
  fi
}
if wanted beauty-comirec-dr-flow; then
  readouts beauty-comirec comirec-sa beauty-comirec-comirec-sa-readouts.json
  readouts beauty-comirec comirec-dr beauty-comirec-comirec-dr-readouts.json
fi
if wanted beauty-comirec-dr-sampled; then
  readouts beauty-comirec-dr-sampled comirec-dr beauty-comirec-dr-sampled-readouts.json
fi

runs=benchmarks/converged/ml1m-loo/runs
if wanted ml1m-loo-mind-k1 && [ -f $runs/mind-seed0/model.pt ] && [ -f $runs/mind-seed1/model.pt ] && [ -f $runs/mind-seed2/model.pt ]; then
  "${PYTHON:-.venv/bin/python}" benchmarks/converged/interest_readouts.py $runs/mind-seed0 $runs/mind-seed1 \
    $runs/mind-seed2 --out benchmarks/converged/ml1m-loo-mind-readouts.json
fi
