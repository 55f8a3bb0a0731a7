#!/usr/bin/env bash
# winnow's bi-encoder distilled from winnow's reranker (docs/late-interaction.md): MarginMSE on the hard
# negatives mined for the reranker (dense + BM25 per source: high first-stage score), kept only where the
# teacher scores them TEACHER_MARGIN below the positive (the seeds' recipe). Teacher scores are cached per
# chunk in $RUN/teacher (copy runs/colbert1/teacher in to reuse them: same seed and negatives, a prefix).
#
#   scripts/train_bi_encoder.sh
#   RESUME=1 scripts/train_bi_encoder.sh   # continue from the trainer's last checkpoint
#   DEVICE=cuda scripts/train_bi_encoder.sh
#
# Trains on ../shared/data/train ONLY; dev = the queries the reranker's training held out.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PY:-.venv/bin/python}
MINED=${MINED:-runs/r6/mined}
RUN=${RUN:-runs/bi1}
SOURCES=${SOURCES:-"msmarco squad_v1_train nq_qed_train medquad selqa_ass trecqa mediqa2019_qa"}
METHODS=${METHODS:-"dense bm25"}
LIMIT=${LIMIT:-6400}
MAX_STEPS=${MAX_STEPS:-400}
BATCH=${BATCH:-16}
NEGATIVES=${NEGATIVES:-3}
TEACHER_MARGIN=${TEACHER_MARGIN:-1.0}
LR=${LR:-2e-5}
MAX_LENGTH=${MAX_LENGTH:-256}
SAVE_STEPS=${SAVE_STEPS:-50}
DEV_PER_FILE=${DEV_PER_FILE:-60}
DEV_LIMIT=${DEV_LIMIT:-20}
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
$PY -m winnow train bi-encoder --train "${files[@]}" -o "$RUN" --limit "$LIMIT" --max-steps "$MAX_STEPS" \
  --batch-size "$BATCH" --negatives "$NEGATIVES" --teacher-margin "$TEACHER_MARGIN" --lr "$LR" --max-length "$MAX_LENGTH" \
  --save-steps "$SAVE_STEPS" --dev-per-file "$DEV_PER_FILE" --dev-limit "$DEV_LIMIT" --device "$DEVICE" --seed "$SEED" \
  "${resume[@]}" $EXTRA
echo "model and card: $RUN/model (README.md, training.json); compare: scripts/late_interaction_table.py --distilled $RUN/model"
