#!/usr/bin/env bash
# winnow's ColBERT model, distilled from winnow's reranker (docs/late-interaction.md): reuses the hard
# negatives mined for the reranker (scripts/train_reranker.sh, dense + BM25 per source), scores a seeded
# sample of training queries with the shipped reranker (cached per chunk in $RUN/teacher), trains with KL +
# in-batch negatives, checkpoints every SAVE_STEPS.
#
#   scripts/train_colbert.sh                         # defaults below
#   RESUME=1 scripts/train_colbert.sh                # continue from the last checkpoint in $RUN/checkpoints
#   RUN=runs/colbert2 MAX_STEPS=1200 LIMIT=19200 scripts/train_colbert.sh   # a longer run in a new folder (copy
#                                                    # runs/colbert1/teacher there first: same seed, so its chunks are a prefix)
#   DEVICE=cuda scripts/train_colbert.sh
#
# Trains on ../shared/data/train ONLY (through the mined files); the dev queries are the ones the reranker's
# training held out (same --dev-per-file and --seed), so the teacher never saw them either.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PY:-.venv/bin/python}
MINED=${MINED:-runs/r6/mined}   # scripts/train_reranker.sh writes these
RUN=${RUN:-runs/colbert1}
SOURCES=${SOURCES:-"msmarco squad_v1_train nq_qed_train medquad selqa_ass trecqa mediqa2019_qa"}
METHODS=${METHODS:-"dense bm25"}
LIMIT=${LIMIT:-6400}          # training queries scored by the teacher (MAX_STEPS x BATCH of them are seen, in bucketed order)
MAX_STEPS=${MAX_STEPS:-250}
BATCH=${BATCH:-16}
NEGATIVES=${NEGATIVES:-3}
DIM=${DIM:-96}
LOSS=${LOSS:-kl}
LR=${LR:-3e-5}
PROJECTION_LR=${PROJECTION_LR:-1e-3}
DOC_LENGTH=${DOC_LENGTH:-180}
SAVE_STEPS=${SAVE_STEPS:-50}
DEV_PER_FILE=${DEV_PER_FILE:-60}
DEV_LIMIT=${DEV_LIMIT:-20}    # dev queries evaluated per source (of the 60 held out)
DEVICE=${DEVICE:-auto}
SEED=${SEED:-0}
EXTRA=${EXTRA:-}

export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1} TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
files=()
for src in $SOURCES; do for m in $METHODS; do files+=("$MINED/$src-$m.jsonl"); done; done
for f in "${files[@]}"; do [[ -s "$f" ]] || { echo "missing $f: run scripts/train_reranker.sh's mining first" >&2; exit 2; }; done
resume=(); [[ -n "${RESUME:-}" ]] && resume=(--resume)
mkdir -p "$RUN"
# shellcheck disable=SC2086
$PY -m winnow train colbert --train "${files[@]}" -o "$RUN" --limit "$LIMIT" --max-steps "$MAX_STEPS" \
  --batch-size "$BATCH" --negatives "$NEGATIVES" --dim "$DIM" --loss "$LOSS" --lr "$LR" --projection-lr "$PROJECTION_LR" \
  --document-length "$DOC_LENGTH" --save-steps "$SAVE_STEPS" --dev-per-file "$DEV_PER_FILE" --dev-limit "$DEV_LIMIT" \
  --device "$DEVICE" --seed "$SEED" "${resume[@]}" $EXTRA
echo "model and card: $RUN/model (README.md, training.json)"
