"""Tabulate scripts/train.py runs side by side, from each run's own records (final_model/training_summary.json and
all_results.json): what was trained, how long it took, and the test accuracy reached (and, for runs that averaged
checkpoints, every candidate's scores). A run still training (or stopped, to be resumed) is shown as far as its
newest checkpoint goes: same-schedule runs compare epoch by epoch.

    python scripts/compare_runs.py runs/s10-base runs/s10-conv runs/s10-distilled
    python scripts/compare_runs.py runs/s10-* --json results/short-schedules.json   # also every record, as JSON
    python scripts/compare_runs.py runs/p100-base runs/p100-elastic --by_epoch validation   # choose on validation
    python scripts/compare_runs.py runs/release-seed1 runs/mlp256-seed1 --epochs 41 50   # means over a stretch
    python scripts/compare_runs.py results/cpu-checkpoint-averaging.json runs/mlp256-seed1   # runs kept as --json
"""

import argparse
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for model_card/
from train import FINAL_MODEL_DIR, RECIPE_FILE
from transformers.trainer_utils import get_last_checkpoint

from hf_vit_mnist import ViTMNISTConfig, ViTMNISTForImageClassification
from hf_vit_mnist.training import accuracy_history
from model_card.build import architecture_name, format_duration, time_to_accuracy_text

COLUMNS = ("run", "model", "params", "training", "epochs", "wall clock", "{split} accuracy by epoch",
           "time to 99.0% / 99.5% test", "test at the lowest validation loss (epoch)",
           "final test (best validation epoch)")


def run_record(run_dir: Path) -> dict:
    """A finished run's summary and results, or what the newest checkpoint of an unfinished run knows."""
    final = run_dir / FINAL_MODEL_DIR
    if (final / "training_summary.json").exists():
        summary = json.loads((final / "training_summary.json").read_text())
        results = json.loads((final / "all_results.json").read_text())
        return {"run": run_dir.name, "summary": summary, "results": results}
    newest = get_last_checkpoint(run_dir) if run_dir.is_dir() else None
    if newest is None:
        raise SystemExit(f"{run_dir} has no {FINAL_MODEL_DIR}/training_summary.json and no checkpoint: pass the "
                         "--output_dir of a scripts/train.py run that has finished at least one epoch.")
    state = json.loads((Path(newest) / "trainer_state.json").read_text())
    recipe_file = run_dir / RECIPE_FILE
    config = ViTMNISTConfig.from_pretrained(newest)
    return {"run": run_dir.name, "checkpoint": Path(newest).name, "epoch": state["epoch"],
            "num_train_epochs": state["num_train_epochs"],
            "num_parameters": ViTMNISTForImageClassification(config).num_parameters(), "config": config.to_dict(),
            "history": accuracy_history(state["log_history"]),
            "recipe": json.loads(recipe_file.read_text()) if recipe_file.exists() else None}


def records_at(path: Path) -> list[dict]:
    """The run in a train.py output folder, or every run in a file that --json wrote (runs whose folders are gone,
    such as those of results/cpu-checkpoint-averaging.json)."""
    if path.suffix != ".json":
        return [run_record(path)]
    records = json.loads(path.read_text()) if path.is_file() else None
    if not (isinstance(records, list) and all(isinstance(record, dict) and "run" in record for record in records)):
        raise SystemExit(f"{path} is not a file that compare_runs.py --json wrote (a list of run records): pass "
                         "that, or a train.py --output_dir folder.")
    return records


def table_row(record: dict, split: str = "test") -> list[str]:
    if "summary" not in record:
        return in_progress_row(record, split)
    summary, recipe = record["summary"], record["summary"]["recipe"]
    return [record["run"], architecture_text(recipe["model"]), f"{summary['num_parameters']:,}",
            training_text(recipe), f"{recipe['training']['num_train_epochs']:g}",
            *progress_cells(summary["history"], split),
            f"**{100 * record['results']['test_accuracy']:.2f}%**"]


def training_text(recipe: dict | None) -> str:
    """What the run started from (a checkpoint, if fine-tuned), what it learned from (labels, or a teacher too),
    how its augmentation differs from the affine default, and whether its weights were averaged."""
    if recipe is None:  # a run started before train.py wrote its recipe at the start
        return "(recipe not recorded)"
    training, distillation = "labels", recipe.get("distillation")
    if distillation:
        training = (f"distilled ({distillation['distillation_type']}, weight {distillation['distillation_alpha']}) "
                    f"from {Path(distillation['teacher_model_name_or_path']).parent.name}")
    if recipe["model"].get("model_name_or_path"):
        training = f"fine-tuned from {recipe['model']['model_name_or_path']}; {training}"
    if not recipe["data"].get("augment", True):
        training += ", no augmentation"
    elif recipe["data"].get("elastic_alpha"):
        training += f", elastic distortion {recipe['data']['elastic_alpha']:g}/{recipe['data']['elastic_sigma']:g}"
    if not recipe["training"].get("decay_cls_and_positions", True):
        training += ", no weight decay on [CLS] and positions"
    if recipe["training"].get("ema_decay"):
        training += f", weights averaged (EMA {recipe['training']['ema_decay']:g})"
    no_validation = recipe["data"].get("validation_size") == 0
    if no_validation:
        training += ", all of train (no validation split)"
    if recipe["training"].get("average_last_epochs"):
        counts = "/".join(str(count) for count in recipe["training"]["average_last_epochs"])
        training += (f", mean of the last {counts} epochs kept" if no_validation
                     else f", checkpoint averaging (last {counts} epochs, if best on validation)")
    return training


def in_progress_row(record: dict, split: str) -> list[str]:
    history = record["history"]
    scored = [row for row in history if "test_accuracy" in row]
    if not scored:
        status = "in progress: no test score recorded"
    else:  # what train.py would keep if stopped now
        best, which = ((max(scored, key=lambda row: row["validation_accuracy"]), "the best validation epoch")
                       if all("validation_accuracy" in row for row in scored) else (scored[-1], "the last epoch"))
        status = f"in progress: {100 * best['test_accuracy']:.2f}% at {which} so far ({best['epoch']:g})"
    return [record["run"], architecture_text(record["config"]), f"{record['num_parameters']:,}",
            training_text(record["recipe"]),
            f"{round(record['epoch'], 1):g} of {record['num_train_epochs']:g}", *progress_cells(history, split),
            status]


def architecture_text(model: dict) -> str:
    return (f"{architecture_name(model.get('stem'))}, width {model['hidden_size']}, depth {model['num_hidden_layers']}"
            f", MLP {model['intermediate_size']}")


def progress_cells(history: list[dict], split: str) -> list[str]:
    """Wall clock, accuracy per epoch on `split`, and time to 99.0% / 99.5% test, from train.py's history."""
    if not history:  # a run that evaluated nothing (no validation split, test not tracked)
        return ["not recorded"] * 4
    by_epoch = " ".join(f"{100 * row[f'{split}_accuracy']:.2f}" for row in history if f"{split}_accuracy" in row)
    return [format_duration(history[-1]["elapsed_seconds"]), by_epoch,
            f"{time_to_accuracy_text(history, 0.99)} / {time_to_accuracy_text(history, 0.995)}",
            lowest_validation_loss_cell(history)]


def lowest_validation_loss_cell(history: list[dict]) -> str:
    """Another way to choose the epoch, reported, not used: validation loss is continuous, so it can rank epochs
    that validation accuracy (1 image in 5,000 = 0.02 points) calls equal."""
    rows = [row for row in history if row.get("validation_loss") is not None and "test_accuracy" in row]
    if not rows:
        return "not recorded"
    best = min(rows, key=lambda row: row["validation_loss"])
    return f"{100 * best['test_accuracy']:.2f}% ({best['epoch']:g})"


def markdown_table(records: list[dict], split: str = "test") -> str:
    lines = ["| " + " | ".join(COLUMNS).format(split=split) + " |", "|" + " --- |" * len(COLUMNS)]
    lines += ["| " + " | ".join(table_row(record, split)) + " |" for record in records]
    return "\n".join(lines) + "\n"


def averaging_table(records: list[dict]) -> str:
    """For the finished runs that averaged checkpoints (--average_last_epochs): every candidate's scores."""
    lines = []
    for record in records:
        averaging = record.get("summary", {}).get("checkpoint_averaging")
        for candidate in averaging["candidates"] if averaging else []:
            test = f"{100 * candidate['test_accuracy']:.2f}%" if "test_accuracy" in candidate else "not scored"
            kept = "**kept**" if candidate["name"] == averaging["chosen"] else ""
            validation = (f"{100 * candidate['validation_accuracy']:.2f}% | {candidate['validation_loss']:.4f}"
                          if "validation_accuracy" in candidate else "no validation split | ")
            lines.append(f"| {record['run']} | {candidate['name']} | {validation} | {test} | {kept} |")
    if not lines:
        return ""
    header = ["", "Checkpoint averaging (kept: the best on validation accuracy, then loss):", "",
              "| run | candidate | validation accuracy | validation loss | test accuracy | |", "|" + " --- |" * 6]
    return "\n".join(header + lines) + "\n"


def window_table(records: list[dict], first: int, last: int) -> str:
    """Each run's mean validation and test accuracy over epochs first..last (the evaluations at epoch ends): runs
    of one schedule compared over a stretch of epochs, not on one epoch's noisy score (5,000 validation images:
    +-0.09 points at 99.6%). Runs of one recipe with several seeds (train_seeds.py's <name>-seed<N>) also get the
    mean of their unrounded means, to 3 decimals: seeds are compared as a group."""
    lines = ["", f"Mean accuracy over epochs {first}-{last}:", "",
             "| run | epochs | validation accuracy | test accuracy |", "|" + " --- |" * 4]
    seed_groups = {}  # recipe name -> each seed's (validation mean, test mean), None where not recorded
    for record in records:
        history = record["summary"]["history"] if "summary" in record else record["history"]
        rows = [row for row in history if first <= row["epoch"] <= last and float(row["epoch"]).is_integer()]
        means = []
        for split in ("validation", "test"):
            scores = [row[f"{split}_accuracy"] for row in rows if f"{split}_accuracy" in row]
            means.append(sum(scores) / len(scores) if scores else None)
        lines.append(f"| {record['run']} | {len(rows)} of {last - first + 1} | {percent(means[0], 2)} | "
                     f"{percent(means[1], 2)} |")
        seed_groups.setdefault(re.sub(r"-seed\d+$", "", record["run"]), []).append(means)
    for name, seed_means in seed_groups.items():
        if len(seed_means) > 1:
            splits = zip(*seed_means, strict=True)  # (validation means, test means)
            cells = [percent(None if None in means else sum(means) / len(means), 3) for means in splits]
            lines.append(f"| {name}: mean of {len(seed_means)} seeds | | {cells[0]} | {cells[1]} |")
    return "\n".join(lines) + "\n"


def percent(fraction: float | None, decimals: int) -> str:
    return "not recorded" if fraction is None else f"{100 * fraction:.{decimals}f}%"


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path,
                        help="--output_dir folders of train.py runs, or JSON files that --json wrote")
    parser.add_argument("--json", type=Path, help="Also write the runs' records (summary, results) to this file.")
    parser.add_argument("--by_epoch", choices=("test", "validation"), default="test",
                        help="The split whose accuracy per epoch is listed: compare recipes on validation.")
    parser.add_argument("--epochs", nargs=2, type=int, metavar=("FIRST", "LAST"),
                        help="Also each run's mean accuracy over these epochs (both included).")
    args = parser.parse_args(argv)
    records = [record for path in args.runs for record in records_at(path)]
    table = markdown_table(records, args.by_epoch) + averaging_table(records)
    if args.epochs:
        if not 1 <= args.epochs[0] <= args.epochs[1]:
            parser.error(f"--epochs takes FIRST <= LAST, both 1 or more (say --epochs 41 50), got {args.epochs}.")
        table += window_table(records, *args.epochs)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(records, indent=2) + "\n")
    print(table, end="")
    return table


if __name__ == "__main__":
    main()
