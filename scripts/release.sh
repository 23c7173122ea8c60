#!/usr/bin/env bash
# Assemble release/vit-mnist, the committed model, from a finished training run: its final_model folder plus the
# evaluation, the figures, the ONNX export and the regenerated card. Every file in it comes from these commands.
#
#   python scripts/train_seeds.py recipes/release-all.json --seeds 42        # the run (runs/release-all-seed42)
#   bash scripts/release.sh runs/release-all-seed42 hf-vit-mnist/vit-mnist   # the folder, for that Hub repo id
set -euo pipefail
run=${1:?"usage: scripts/release.sh RUN_DIR [REPO_ID]"}
repo_id=${2:-hf-vit-mnist/vit-mnist}
out=release/vit-mnist
[ -d "$run/final_model" ] || { echo "$run/final_model does not exist: has the run finished?" >&2; exit 1; }
python -c "import hf_vit_mnist" 2>/dev/null || { echo "hf_vit_mnist is not importable: pip install -e . first" >&2; exit 1; }
rm -rf "$out" && mkdir -p release && cp -r "$run/final_model" "$out"
cp hf_vit_mnist/{configuration,modeling,image_processing}_vit_mnist.py "$out"   # the code, even where a run carried in git left its copies out
seeds="${run%-seed*}-seeds.json"   # seeds.json only when it holds several seeds: the card reports their spread
if [ -f "$seeds" ] && python -c "import json,sys; sys.exit(len(json.load(open('$seeds'))['seeds']) < 2)"; then
  cp "$seeds" "$out/seeds.json"
fi
python scripts/evaluate_checkpoint.py --model "$out"      # -> eval/: per-class metrics, confusion matrix, mistakes
python scripts/visualize.py "$out"                       # the four figures
python scripts/export_onnx.py "$out"                     # onnx/model.onnx and its parity/timing JSON
python model_card/build.py "$out" --repo_id "$repo_id"   # README.md from the files above
