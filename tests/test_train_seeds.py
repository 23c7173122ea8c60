"""scripts/train_seeds.py: one recipe over several seeds, each an ordinary train.py run in a subprocess."""

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import train_seeds  # scripts/ is on pytest's pythonpath
from conftest import TINY

QUICK_RECIPE = str(Path(train_seeds.__file__).parents[1] / "recipes" / "quick.json")


def test_seeds_are_separate_runs_and_the_report_holds_their_spread(tmp_path):
    base = tmp_path / "run"
    flags = [*TINY, "--num_train_epochs", "1", "--output_dir", str(base)]
    report = train_seeds.main([QUICK_RECIPE, "--seeds", "3", "4", "--parallel", "2", "--", *flags])
    results = {seed: json.loads((tmp_path / f"run-seed{seed}" / "final_model" / "all_results.json").read_text())
               for seed in (3, 4)}
    recipes = {seed: json.loads((tmp_path / f"run-seed{seed}" / "recipe.json").read_text()) for seed in (3, 4)}
    assert [recipes[seed]["training"]["seed"] for seed in (3, 4)] == [3, 4]  # the seed given wins over TINY's
    assert report["test_accuracy"] == [results[3]["test_accuracy"], results[4]["test_accuracy"]]
    assert report["test_accuracy_mean"] == pytest.approx(sum(report["test_accuracy"]) / 2)
    best = report["seeds"][report["validation_accuracy"].index(max(report["validation_accuracy"]))]
    assert report["best_seed_on_validation"] == best and report["best_run"] == f"{base}-seed{best}"
    assert json.loads((tmp_path / "run-seeds.json").read_text()) == report
    # A rerun keeps the finished seeds as they are: nothing trains again, the report is the same.
    log = (tmp_path / "run-seed3" / "train.log").read_text()
    assert train_seeds.main([QUICK_RECIPE, "--seeds", "3", "4", "--", *flags]) == report
    assert (tmp_path / "run-seed3" / "train.log").read_text() == log


def test_sigterm_reaches_the_running_seed_which_saves_and_the_next_seed_does_not_start(tmp_path):
    base = tmp_path / "run"
    command = [sys.executable, train_seeds.__file__, QUICK_RECIPE, "--seeds", "0", "1", "--", *TINY,
               "--num_train_epochs", "100", "--track_test_accuracy", "false", "--logging_steps", "1",
               "--output_dir", str(base)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log, deadline = tmp_path / "run-seed0" / "train.log", time.monotonic() + 300
    while not (log.exists() and re.search(r"'epoch': '?1\.[0-9]", log.read_text())):  # seed 0 is in epoch 2
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()  # before reading its output: communicate() waits for the end of all 100 epochs otherwise
            pytest.fail(f"Seed 0 ended or did not reach epoch 2 within 300 s:\n{process.communicate()[0]}")
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    output = process.communicate(timeout=300)[0]
    assert process.returncode == 1 and "Seed(s) [0] stopped by SIGTERM" in output, output
    step = int(re.search(r"Stopped by SIGTERM at step (\d+) of 4700", log.read_text()).group(1))
    checkpoint = tmp_path / "run-seed0" / f"checkpoint-{step}"
    assert step > 47 and checkpoint.is_dir()
    # The epochs that ended were evaluated; the stop inside one was not (StoppedEpochCallback).
    history = json.loads((checkpoint / "trainer_state.json").read_text())["log_history"]
    evaluated = [entry["epoch"] for entry in history if "eval_validation_accuracy" in entry]
    assert evaluated and all(float(epoch).is_integer() for epoch in evaluated), evaluated
    assert not (tmp_path / "run-seed1").exists()


def test_the_output_folder_is_found_after_a_flag_with_several_values():
    recipe = Path(train_seeds.__file__).parents[1] / "recipes" / "release.json"
    flags = ["--average_last_epochs", "10", "20", "--output_dir", "runs/elsewhere"]
    assert train_seeds.seed_run_dir(recipe, flags, 3) == Path("runs/elsewhere-seed3")
    assert train_seeds.seed_run_dir(recipe, flags[:3], 3) == Path("runs/release-seed3")  # the recipe's own
