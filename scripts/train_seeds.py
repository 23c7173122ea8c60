"""Train one recipe with several seeds and report the spread: each seed is an ordinary scripts/train.py run (its
own output folder, resumable), and seeds.json collects each one's best validation accuracy and test accuracy.

    python scripts/train_seeds.py recipes/release.json --seeds 0 1 2                  # one after another (CPU)
    python scripts/train_seeds.py recipes/release.json --seeds 0 1 2 --parallel 3     # at once (one GPU fits all)
    python scripts/train_seeds.py recipes/quick.json --seeds 0 1 2 -- --num_train_epochs 1   # flags for train.py

Writes <output_dir>-seed<N>/ (train.py's folder, log in train.log) and <output_dir>-seeds.json, where output_dir
comes from the recipe or a --output_dir given after `--`. Copy seeds.json into the released folder for its card.
A SIGTERM to this script reaches every running seed, which saves a checkpoint at its current step; the seeds not
started yet are left for the rerun. A rerun trains only the seeds without final_model/all_results.json (a finished
run is kept as it is; delete its folder to train it again).
"""

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

TRAIN_SCRIPT = Path(__file__).with_name("train.py")


def output_base(recipe: Path, train_args: list[str]) -> str:
    if "--output_dir" in train_args[:-1]:  # not read as flag/value pairs: some flags take several values
        base = train_args[train_args.index("--output_dir") + 1]
    else:
        base = json.loads(recipe.read_text()).get("output_dir", "runs/vit-mnist")
    return base.rstrip("/")


def seed_run_dir(recipe: Path, train_args: list[str], seed: int) -> Path:
    return Path(f"{output_base(recipe, train_args)}-seed{seed}")


def launch(recipe: Path, train_args: list[str], seed: int) -> subprocess.Popen:
    run_dir = seed_run_dir(recipe, train_args, seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, str(TRAIN_SCRIPT), str(recipe), *train_args, "--seed", str(seed),
               "--output_dir", str(run_dir)]
    with open(run_dir / "train.log", "a") as log:
        # Unbuffered, so that train.log shows each logged step as it happens (`tail -f`), not in 8 kB blocks.
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})


def is_finished(run_dir: Path) -> bool:
    return (run_dir / "final_model" / "all_results.json").is_file()


def seed_results(run_dir: Path) -> dict:
    """The validation accuracy of the model kept (the best epoch, or a checkpoint average chosen over it; None for a
    run without a validation split) and its test accuracy, from train.py's files."""
    final = run_dir / "final_model"
    summary = json.loads((final / "training_summary.json").read_text())
    results = json.loads((final / "all_results.json").read_text())
    best_epoch = max((row["validation_accuracy"] for row in summary["history"] if "validation_accuracy" in row),
                     default=None)
    return {
        "validation_accuracy": summary.get("checkpoint_averaging", {}).get("validation_accuracy", best_epoch),
        "test_accuracy": results["test_accuracy"],
        "train_wall_clock_seconds": summary["train_wall_clock_seconds"],
        "time_to_test_accuracy_seconds": summary["time_to_test_accuracy_seconds"],
    }


def summarize(recipe: Path, train_args: list[str], seeds: list[int]) -> dict:
    runs = {seed: seed_results(seed_run_dir(recipe, train_args, seed)) for seed in seeds}
    report = {"recipe": str(recipe), "train_args": train_args, "seeds": seeds}
    for key in ("validation_accuracy", "test_accuracy", "train_wall_clock_seconds"):
        report[key] = [runs[seed][key] for seed in seeds]
    tests = report["test_accuracy"]
    report["test_accuracy_mean"] = statistics.fmean(tests)
    report["test_accuracy_std"] = statistics.stdev(tests) if len(tests) > 1 else 0.0
    report["time_to_test_accuracy_seconds"] = [runs[seed]["time_to_test_accuracy_seconds"] for seed in seeds]
    if None in report["validation_accuracy"]:  # no validation split: nothing to choose a seed on
        report["best_seed_on_validation"] = report["best_run"] = None
    else:
        best = max(seeds, key=lambda seed: runs[seed]["validation_accuracy"])  # on validation, never on test
        report["best_seed_on_validation"] = best
        report["best_run"] = str(seed_run_dir(recipe, train_args, best))
    return report


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    ours, train_args = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("recipe", type=Path, help="A recipe JSON file, as train.py takes.")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--parallel", type=int, default=1, help="How many seeds train at once.")
    args = parser.parse_args(ours)
    if not args.recipe.is_file():
        parser.error(f"recipe {args.recipe} does not exist; see recipes/ for the named ones.")

    finished = [seed for seed in args.seeds if is_finished(seed_run_dir(args.recipe, train_args, seed))]
    if finished:
        print(f"Seed(s) {finished} already finished: kept as they are (delete their folders to train them again).")
    pending, running, failed, stopped = [seed for seed in args.seeds if seed not in finished], {}, [], []

    def stop(signum, frame):  # each running seed saves a checkpoint at its current step (train.py); none starts
        stopped.append(signum)
        pending.clear()
        for process in running.values():
            process.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    while pending or running:
        while pending and len(running) < args.parallel:
            seed = pending.pop(0)
            running[seed] = launch(args.recipe, train_args, seed)
        for seed, process in list(running.items()):
            if process.poll() is not None:
                del running[seed]
                if process.returncode != 0:
                    failed.append(seed)
        time.sleep(1)
    if failed:
        logs = ", ".join(str(seed_run_dir(args.recipe, train_args, seed) / "train.log") for seed in failed)
        what = "stopped by SIGTERM, each at a checkpoint of its current step" if stopped else "failed"
        raise SystemExit(f"Seed(s) {failed} {what}: see {logs}. Rerun the same command to resume them.")
    if stopped:  # the running seeds ended before the signal reached them; the ones not started are left
        left = [seed for seed in args.seeds if not is_finished(seed_run_dir(args.recipe, train_args, seed))]
        raise SystemExit(f"Stopped by SIGTERM before seed(s) {left} started. Rerun the same command to train them.")

    report = summarize(args.recipe, train_args, args.seeds)
    out = Path(f"{output_base(args.recipe, train_args)}-seeds.json")
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"test accuracy over seeds {args.seeds}: mean {report['test_accuracy_mean']:.4%}, "
          f"std {report['test_accuracy_std']:.4%}; wrote {out}")
    return report


if __name__ == "__main__":
    main()
