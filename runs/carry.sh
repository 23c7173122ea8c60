#!/usr/bin/env bash
# Carry the newest complete checkpoint of each unfinished run into git: runs/README.md says what, why and how often.
# Usage: bash runs/carry.sh RUN_DIR...   (from the repository root; commits at once)
#   bash runs/carry.sh runs/release-all-w128-seed42 runs/release-all-w128-seed1 runs/release-all-w128-seed2
set -euo pipefail
(( $# )) || { echo "usage: bash runs/carry.sh RUN_DIR...  (the run folders to carry, e.g. runs/release-all-seed42)" >&2; exit 1; }
msg=""
for run in "$@"; do
  [[ -f $run/recipe.json ]] || { echo "$run/recipe.json does not exist: is $run a folder that scripts/train.py wrote?" >&2; exit 1; }
  # Quoted, so git matches the index: a checkpoint the trainer already deleted from disk must leave git too.
  git rm -r -q --cached --ignore-unmatch -- "$run/checkpoint-*" >/dev/null
  newest=""
  for ckpt in $(ls -dv "$run"/checkpoint-*); do  # -v: by step number, oldest first
    state=$ckpt/trainer_state.json
    if [[ -f $state && -f $ckpt/optimizer.pt && -f $ckpt/rng_state.pth && $(( $(date +%s) - $(stat -c %Y $state) )) -gt 20 ]]; then
      newest=$ckpt
    fi
  done
  [[ -n $newest ]] || { echo "no complete checkpoint in $run" >&2; exit 1; }
  git add -f $(find "$newest" -type f ! -name '*.py') "$run/recipe.json" "$run/train.log"
  # The averaging window (the last max(--average_last_epochs) epochs) may span sessions: keep what its mean reads.
  for window in $(python -c "import json; from hf_vit_mnist.training import epoch_checkpoints
training = json.load(open('$run/recipe.json'))['training']
first = training['num_train_epochs'] - max(training['average_last_epochs'] or [0]) + 1
print(*[folder for epoch, folder in epoch_checkpoints('$run').items() if epoch >= first])"); do
    git add -f "$window/model.safetensors" "$window/trainer_state.json"
  done
  epoch=$(python -c "import json; print(round(json.load(open('$newest/trainer_state.json'))['epoch'], 1))")
  msg="$msg, $(basename "$run") at epoch $epoch"
done
git commit -q -m "Carry ${msg#, }"
git log --oneline -1; git show --stat HEAD | tail -5
