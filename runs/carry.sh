#!/usr/bin/env bash
# Carry the newest complete checkpoint of each width-128 run into git: runs/README.md says what, why and how often.
# Usage: bash runs/carry.sh   (from anywhere; commits at once)
set -euo pipefail
cd "$(dirname "$0")/.."
msg=""
git rm -r -q --cached --ignore-unmatch runs/release-all-w128-seed*/checkpoint-* >/dev/null
for run in runs/release-all-w128-seed42 runs/release-all-w128-seed1 runs/release-all-w128-seed2; do
  newest=""
  for ckpt in $(ls -dv $run/checkpoint-*); do  # -v: by step number, oldest first
    state=$ckpt/trainer_state.json
    if [[ -f $state && -f $ckpt/optimizer.pt && -f $ckpt/rng_state.pth && $(( $(date +%s) - $(stat -c %Y $state) )) -gt 20 ]]; then
      newest=$ckpt
    fi
  done
  [[ -n $newest ]] || { echo "no complete checkpoint in $run"; exit 1; }
  git add -f $(find $newest -type f ! -name '*.py') $run/recipe.json $run/train.log
  # The averaging window (epochs 91-100) may span sessions: keep what the mean reads of each of its checkpoints.
  for window in $(python -c "from hf_vit_mnist.training import epoch_checkpoints as e
print(*[str(f) for epoch, f in e('$run').items() if epoch >= 91])"); do
    git add -f $window/model.safetensors $window/trainer_state.json
  done
  epoch=$(python -c "import json;print(round(json.load(open('$newest/trainer_state.json'))['epoch'],1))")
  msg="$msg/$epoch"
done
git commit -q -m "Carry the width-128 runs at epochs ${msg#/} of 100"
git log --oneline -1; git show --stat HEAD | tail -5
