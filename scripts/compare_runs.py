"""Tabulate finished scripts/train.py runs side by side, from each run's own records (final_model/
training_summary.json and all_results.json): what was trained, how long it took, and the test accuracy reached.

    python scripts/compare_runs.py runs/s10-base runs/s10-conv runs/s10-distilled
    python scripts/compare_runs.py runs/s10-* --json results/short-schedules.json   # also every record, as JSON
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for model_card/
from train import FINAL_MODEL_DIR

from model_card.build import architecture_name, format_duration

COLUMNS = ("run", "model", "params", "training", "epochs", "wall clock", "test accuracy by epoch",
           "time to 99.0% / 99.5% test", "final test (best validation epoch)")


def run_record(run_dir: Path) -> dict:
    final = run_dir / FINAL_MODEL_DIR
    if not (final / "training_summary.json").exists():
        raise SystemExit(f"{run_dir} has no {FINAL_MODEL_DIR}/training_summary.json: is the run finished? "
                         "Pass the --output_dir of a completed scripts/train.py run.")
    summary = json.loads((final / "training_summary.json").read_text())
    results = json.loads((final / "all_results.json").read_text())
    return {"run": run_dir.name, "summary": summary, "results": results}


def table_row(record: dict) -> list[str]:
    summary, recipe = record["summary"], record["summary"]["recipe"]
    model, distillation = recipe["model"], recipe.get("distillation")
    training = "labels"
    if distillation:
        training = (f"distilled ({distillation['distillation_type']}, weight {distillation['distillation_alpha']}) "
                    f"from {Path(distillation['teacher_model_name_or_path']).parent.name}")
    by_epoch = " ".join(f"{100 * row['test_accuracy']:.2f}" for row in summary["history"] if "test_accuracy" in row)
    time_to = summary["time_to_test_accuracy_seconds"]
    architecture = (f"{architecture_name(model.get('stem'))}, width {model['hidden_size']}, "
                    f"depth {model['num_hidden_layers']}")
    return [record["run"], architecture,
            f"{summary['num_parameters']:,}", training, f"{recipe['training']['num_train_epochs']:g}",
            format_duration(summary["train_wall_clock_seconds"]), by_epoch,
            f"{format_duration(time_to['0.99'])} / {format_duration(time_to['0.995'])}",
            f"**{100 * record['results']['test_accuracy']:.2f}%**"]


def markdown_table(records: list[dict]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + " --- |" * len(COLUMNS)]
    lines += ["| " + " | ".join(table_row(record)) + " |" for record in records]
    return "\n".join(lines) + "\n"


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="+", type=Path, help="--output_dir folders of finished train.py runs")
    parser.add_argument("--json", type=Path, help="Also write the runs' records (summary, results) to this file.")
    args = parser.parse_args(argv)
    records = [run_record(run_dir) for run_dir in args.run_dirs]
    table = markdown_table(records)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(records, indent=2) + "\n")
    print(table, end="")
    return table


if __name__ == "__main__":
    main()
