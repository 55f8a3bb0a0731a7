#!/usr/bin/env bash
# winnow's reranker, the whole recipe as one command sequence: mine hard negatives per training source from
# that source's own passage pool (dense and BM25, plus hybrid lists for fitting the hybrid mix), fine-tune a
# cross-encoder on all sources with dev queries held out of every one, write the model with its card.
#
#   scripts/train_reranker.sh                    # defaults below; a CPU takes hours, a GPU minutes
#   RUN=runs/r7 MAX_STEPS=2000 scripts/train_reranker.sh
#   RESUME=1 RUN=runs/r6 scripts/train_reranker.sh   # continue an interrupted training from its checkpoint
#   DEVICE=cuda scripts/train_reranker.sh        # the same recipe on a GPU (bf16)
#
# Trains and tunes on ../shared/data/train ONLY. ../shared/data/msmarco and ../shared/data/dbpedia are
# the test sets: nothing (no setting, no checkpoint, no mixing weight) is picked from them.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PY:-.venv/bin/python}
DATA=${DATA:-../shared/data/train}
RUN=${RUN:-runs/reranker}
SEED=${SEED:-0}
# The data mix: source=queries sampled (all: every line). Why these sizes: docs/reranker.md "Data mix".
MIX=${MIX:-"msmarco=all squad_v1_train=10000 nq_qed_train=all medquad=4000 selqa_ass=all trecqa=all mediqa2019_qa=all"}
MINE_METHODS=${MINE_METHODS:-"dense bm25 hybrid"}   # dense+bm25 negatives are merged per query; hybrid lists fit its mix
TRAIN_METHODS=${TRAIN_METHODS:-"dense bm25"}
MINE_NEGATIVES=${MINE_NEGATIVES:-6}
MINE_MAX_RANK=${MINE_MAX_RANK:-30}
# training
LOSS=${LOSS:-lambda}
NEGATIVES=${NEGATIVES:-4}         # per query (dense and BM25 negatives interleaved)
EPOCHS=${EPOCHS:-1}
MAX_STEPS=${MAX_STEPS:--1}
BATCH=${BATCH:-16}                # queries per step (x (1 + NEGATIVES) pairs)
LR=${LR:-5e-5}
MAX_LENGTH=${MAX_LENGTH:-192}
LAYERS=${LAYERS:-}
DEV_PER_FILE=${DEV_PER_FILE:-60}  # queries held out of every source for dev
EVAL_STEPS=${EVAL_STEPS:-1000}
DEVICE=${DEVICE:-auto}
EXTRA=${EXTRA:-}

export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1} TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
mkdir -p "$RUN"
case "$(realpath -m "$DATA")" in
  */shared/data/msmarco*|*/shared/data/dbpedia*) echo "refusing to train on a test set: $DATA" >&2; exit 2;;
esac

source_file() {  # the pairs file of a source name
  case "$1" in
    msmarco) echo "$DATA/msmarco-dev-small-positives.jsonl";;
    *) echo "$DATA/$1/train.jsonl.gz";;
  esac
}

# 1. hard negatives, one file per source and first stage (each source's pool encoded once, cached)
train_files=()
for item in $MIX; do
  src=${item%%=*}; n=${item#*=}
  sample=(); [[ "$n" != all ]] && sample=(--sample "$n")
  for method in $MINE_METHODS; do
    out="$RUN/mined/$src-$method.jsonl"
    if [[ ! -s "$out" ]]; then
      margin=0.05; [[ "$method" == hybrid ]] && margin=-1   # RRF scores are rank-based: no score margin
      $PY -m winnow mine-negatives "$(source_file "$src")" -o "$out" "${sample[@]}" \
        --method "$method" --skip-top 1 --max-rank "$MINE_MAX_RANK" --negatives "$MINE_NEGATIVES" \
        --sampling top --relative-margin "$margin" --seed "$SEED" --quiet
    fi
  done
  for method in $TRAIN_METHODS; do train_files+=("$RUN/mined/$src-$method.jsonl"); done
done
train_files+=("$DATA/wikiqa/train.tsv")

# 2. fine-tune (dev: held-out queries of every source, reranking their first-stage lists, + WikiQA dev)
resume=(); [[ -n "${RESUME:-}" ]] && resume=(--resume)
layers=(); [[ -n "$LAYERS" ]] && layers=(--layers "$LAYERS")
# shellcheck disable=SC2086
$PY -m winnow train reranker --train "${train_files[@]}" --dev "$DATA/wikiqa/dev.tsv" -o "$RUN" \
  --dev-queries 0 --dev-per-file "$DEV_PER_FILE" --loss "$LOSS" --negatives "$NEGATIVES" --epochs "$EPOCHS" \
  --max-steps "$MAX_STEPS" --batch-size "$BATCH" --lr "$LR" --max-length "$MAX_LENGTH" --eval-steps "$EVAL_STEPS" \
  --save-steps 100 --save-total-limit 2 --seed "$SEED" --device "$DEVICE" --eval-depth 20 \
  --name "winnow reranker ($LOSS, $(echo $MIX | wc -w) sources + WikiQA)" "${layers[@]}" "${resume[@]}" $EXTRA

# 3. one mix per first stage, fitted on that first stage's held-out dev lists of every source
for method in $MINE_METHODS; do
  $PY -m winnow train fit-fusion "$RUN/model" --first-stage "$method" --dev-per-file "$DEV_PER_FILE" --seed "$SEED" \
    --dev $(for item in $MIX; do echo "$RUN/mined/${item%%=*}-$method.jsonl"; done)
done
echo "model and card: $RUN/model (README.md, training.json, fusion.json)"
