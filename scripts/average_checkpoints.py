"""Average the weights of a run's last epoch checkpoints, score each average on the run's own validation split (and
on the test split, for reference only), and save the one best on validation as a model folder.

The uniform average of the weights a run passed through over its last epochs (checkpoint averaging, as in Vaswani
et al. 2017 and fairseq's average_checkpoints.py; SWA, Izmailov et al. 2018) often scores above any one of them.
Trainer keeps only --save_total_limit checkpoints, so a run meant for averaging keeps more:

    accelerate launch scripts/train.py recipes/release.json --save_total_limit 21 --output_dir runs/keep
    python scripts/average_checkpoints.py runs/keep                      # averages of the last 1, 5, 10, 20 epochs
    python scripts/average_checkpoints.py runs/keep --last 3 7 --output_dir runs/keep/averaged-3-7
    python scripts/average_checkpoints.py runs/keep --checkpoints_dir /backup/keep   # checkpoints copied elsewhere

Each checkpoint's training weights (model.safetensors) are averaged, not a --ema_decay average kept beside them.
Writes <output_dir> (default <run>/averaged): the chosen average as a model folder (from_pretrained, pipeline and
scripts/evaluate_checkpoint.py read it) and averaging.json, every average's scores.
"""

import argparse
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import AutoImageProcessor, AutoModelForImageClassification, PrinterCallback, TrainingArguments
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

sys.path.insert(0, str(Path(__file__).resolve().parent))  # scripts/, for train.py when run from elsewhere
from train import RECIPE_FILE, DataArguments, load_splits

import hf_vit_mnist  # noqa: F401  (registers the Auto classes)
from hf_vit_mnist.data import DigitCollator
from hf_vit_mnist.training import DigitTrainer, make_compute_metrics

WEIGHTS_NAME = "model.safetensors"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="The --output_dir of a scripts/train.py run (for its recipe).")
    parser.add_argument("--last", type=int, nargs="+", default=[1, 5, 10, 20],
                        help="Average the last K epoch checkpoints, for each K given (1: the last epoch alone).")
    parser.add_argument("--checkpoints_dir", type=Path, help="Where the checkpoint-* folders are (default: run_dir).")
    parser.add_argument("--output_dir", type=Path, help="Default: <run_dir>/averaged.")
    parser.add_argument("--batch_size", type=int, default=1024)
    args = parser.parse_args(argv)
    if min(args.last) < 1:
        parser.error(f"--last takes numbers of checkpoints, 1 or more; got {args.last}.")
    return args


def epoch_checkpoints(directory: Path) -> dict[int, Path]:
    """The checkpoint folders saved at the end of an epoch, by epoch. A checkpoint saved mid-epoch (SIGTERM) is left
    out: averaging epochs weighs each equally."""
    checkpoints = {}
    for folder in directory.glob(f"{PREFIX_CHECKPOINT_DIR}-*"):
        if not (folder / TRAINER_STATE_NAME).exists() or not (folder / WEIGHTS_NAME).exists():
            continue  # still being written
        epoch = json.loads((folder / TRAINER_STATE_NAME).read_text())["epoch"]
        if abs(epoch - round(epoch)) < 1e-6:
            checkpoints[round(epoch)] = folder
    if not checkpoints:
        raise SystemExit(f"{directory} holds no checkpoint saved at the end of an epoch: give the --output_dir of a "
                         "scripts/train.py run (save_strategy 'epoch') that has finished at least one epoch.")
    return checkpoints


def last_epochs(checkpoints: dict[int, Path], count: int) -> list[Path]:
    """The checkpoints of the last `count` epochs, which must all be there."""
    last = max(checkpoints)
    wanted = range(last - count + 1, last + 1)
    missing = [epoch for epoch in wanted if epoch not in checkpoints]
    if missing:
        raise SystemExit(f"Averaging the last {count} epochs needs the checkpoints of epochs {wanted[0]}-{last}, but "
                         f"{len(missing)} of them are gone (epochs {missing[0]}-{missing[-1]} at least in part): "
                         f"train with --save_total_limit {count + 1} or more to keep them, or ask for fewer with "
                         "--last.")
    return [checkpoints[epoch] for epoch in wanted]


def average_weights(checkpoints: list[Path]) -> dict[str, torch.Tensor]:
    """The uniform average of the checkpoints' weights (summed in float64, returned in each tensor's own dtype)."""
    states = [load_file(folder / WEIGHTS_NAME) for folder in checkpoints]
    average = {}
    for name, tensor in states[-1].items():
        if tensor.is_floating_point():
            average[name] = (sum(state[name].double() for state in states) / len(states)).to(tensor.dtype)
        else:
            average[name] = tensor
    return average


def main(argv=None) -> dict:
    args = parse_args(argv)
    recipe_file = args.run_dir / RECIPE_FILE
    if not recipe_file.exists():
        raise SystemExit(f"{recipe_file} not found: give the --output_dir of a scripts/train.py run (its recipe says "
                         "which images were its validation split).")
    recipe = json.loads(recipe_file.read_text())
    checkpoints = epoch_checkpoints(args.checkpoints_dir or args.run_dir)
    chosen_epochs = {count: last_epochs(checkpoints, count) for count in sorted(set(args.last))}

    splits, _ = load_splits(DataArguments(**recipe["data"]), recipe["training"]["seed"])
    newest = checkpoints[max(checkpoints)]
    model = AutoModelForImageClassification.from_pretrained(newest)
    processor = AutoImageProcessor.from_pretrained(newest)
    trainer = DigitTrainer(
        model=model,
        # The run's label smoothing, so that losses read as the run logged them.
        args=TrainingArguments(output_dir=str(args.run_dir), per_device_eval_batch_size=args.batch_size,
                               label_smoothing_factor=recipe["training"]["label_smoothing_factor"],
                               report_to="none", disable_tqdm=True),
        eval_data_collator=DigitCollator(processor.image_mean[0], processor.image_std[0]),
        compute_metrics=make_compute_metrics(model.config.num_labels),
    )
    trainer.remove_callback(PrinterCallback)  # one line per average below instead of Trainer's dicts
    rows, averages = [], {}
    for count, folders in chosen_epochs.items():
        averages[count] = average_weights(folders)
        model.load_state_dict(averages[count])
        row = {"last": count, "epochs": [max(checkpoints) - count + 1, max(checkpoints)],
               "checkpoints": [folder.name for folder in folders]}
        for split in ("validation", "test"):
            if split in splits:
                scores = trainer.evaluate(splits[split], metric_key_prefix=split)
                row |= {f"{split}_accuracy": scores[f"{split}_accuracy"], f"{split}_loss": scores[f"{split}_loss"]}
        rows.append(row)
        print(table_line(row), flush=True)
    best = max(rows, key=lambda row: (row["validation_accuracy"], -row["validation_loss"]))

    output_dir = args.output_dir or args.run_dir / "averaged"
    model.load_state_dict(averages[best["last"]])
    model.save_pretrained(output_dir)
    processor.save_pretrained(output_dir)
    report = {"run": str(args.run_dir), "chosen_by": "validation accuracy, then validation loss",
              "chosen": best["last"], "averages": rows}
    (output_dir / "averaging.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"Best on validation: the last {best['last']} epoch(s) -> {output_dir}")
    return report


def table_line(row: dict) -> str:
    first, last = row["epochs"]
    scores = ", ".join(f"{split} {100 * row[f'{split}_accuracy']:.2f}% (loss {row[f'{split}_loss']:.4f})"
                       for split in ("validation", "test") if f"{split}_accuracy" in row)
    return f"last {row['last']:>3} (epochs {first}-{last}): {scores}"


if __name__ == "__main__":
    main()
