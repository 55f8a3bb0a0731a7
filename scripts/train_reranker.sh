#!/usr/bin/env bash
# winnow's reranker, the whole recipe as one command sequence: mine hard negatives from the MS MARCO
# training pairs, fine-tune a cross-encoder on them plus WikiQA, write the model with its card.
#
#   scripts/train_reranker.sh                 # defaults below; a CPU takes hours, a GPU minutes
#   RUN=runs/r2 LOSS=bce EPOCHS=1 scripts/train_reranker.sh
#   RESUME=1 RUN=runs/r2 scripts/train_reranker.sh   # continue an interrupted training from its checkpoint
#
# Trains and tunes on ../shared/data/train ONLY. ../shared/data/msmarco and ../shared/data/dbpedia are
# the test sets: the optional last step (EVAL=1) reports on them, and nothing may be chosen from it.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PY:-.venv/bin/python}
DATA=${DATA:-../shared/data/train}
RUN=${RUN:-runs/reranker}
SEED=${SEED:-0}
# mining: the pool is the 6,980 positives; the positive ranks first for most queries, so the hardest
# negatives sit right below it: skip rank 1 only, take the top-ranked rest (margin filter on).
MINE_METHODS=${MINE_METHODS:-"dense bm25"}
MINE_NEGATIVES=${MINE_NEGATIVES:-8}
MINE_MAX_RANK=${MINE_MAX_RANK:-30}
# training
LOSS=${LOSS:-lambda}              # bce | lambda | listnet | ranknet | mnrl | cmnrl
NEGATIVES=${NEGATIVES:-7}         # per query, per mined file
EPOCHS=${EPOCHS:-3}
BATCH=${BATCH:-16}                # queries per step for list losses (x (1 + NEGATIVES) pairs), pairs for bce
LR=${LR:-3e-5}
MAX_LENGTH=${MAX_LENGTH:-192}
LAYERS=${LAYERS:-}                # e.g. 4: keep the base model's first 4 layers (smaller, faster)
DEV_QUERIES=${DEV_QUERIES:-300}
EVAL_STEPS=${EVAL_STEPS:-200}
BEST_BY=${BEST_BY:-dev-wikiqa_ndcg@10}   # MS MARCO dev is near its ceiling on this pool: select on WikiQA
EXTRA=${EXTRA:-}                  # more flags for `winnow train reranker`

export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1} TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
mkdir -p "$RUN"
case "$(realpath -m "$DATA")" in
  */shared/data/msmarco*|*/shared/data/dbpedia*) echo "refusing to train on a test set: $DATA" >&2; exit 2;;
esac

# 1. hard negatives, one file per first stage (cached pool collection: the passages are encoded once)
train_files=()
for method in $MINE_METHODS; do
  out="$RUN/msmarco-$method.jsonl"
  if [[ ! -s "$out" ]]; then
    margin=0.05; [[ "$method" == hybrid ]] && margin=-1   # RRF scores are rank-based: no score margin
    $PY -m winnow mine-negatives "$DATA/msmarco-dev-small-positives.jsonl" -o "$out" \
      --method "$method" --skip-top 1 --max-rank "$MINE_MAX_RANK" --negatives "$MINE_NEGATIVES" \
      --sampling top --relative-margin "$margin" --seed "$SEED"
  fi
  train_files+=("$out")
done
train_files+=("$DATA/wikiqa/train.tsv")

# 2. fine-tune (dev: held-out MS MARCO training queries, reranking their first-stage lists, + WikiQA dev)
resume=(); [[ -n "${RESUME:-}" ]] && resume=(--resume)
layers=(); [[ -n "$LAYERS" ]] && layers=(--layers "$LAYERS")
# shellcheck disable=SC2086
$PY -m winnow train reranker --train "${train_files[@]}" --dev "$DATA/wikiqa/dev.tsv" -o "$RUN" \
  --dev-queries "$DEV_QUERIES" --loss "$LOSS" --negatives "$NEGATIVES" --epochs "$EPOCHS" \
  --batch-size "$BATCH" --lr "$LR" --max-length "$MAX_LENGTH" --eval-steps "$EVAL_STEPS" \
  --save-steps "$EVAL_STEPS" --best-by "$BEST_BY" --seed "$SEED" --name "winnow reranker ($LOSS)" "${layers[@]}" "${resume[@]}" $EXTRA

echo "model and card: $RUN/model (README.md, training.json, fusion.json)"

# 3. report on the test sets (never used to pick anything above)
if [[ -n "${EVAL:-}" ]]; then
  for set in msmarco dbpedia; do
    rel=1; [[ $set == msmarco ]] && rel=2
    $PY -m winnow eval "../shared/data/$set" --methods 'dense,dense>rerank,hybrid,hybrid>rerank' \
      --rerank "$RUN/model" --depth 50 --rel "$rel" --output "$RUN/eval-$set"
  done
fi
