"""scripts/average_checkpoints.py on a real (tiny) run: the run's own validation split is rebuilt, the averages are
exact, the one best on validation is saved as a loadable model, and missing checkpoints are named."""

import json

import average_checkpoints  # scripts/average_checkpoints.py
import pytest
import torch
from conftest import train_tiny
from safetensors.torch import load_file
from transformers import AutoModelForImageClassification


@pytest.fixture(scope="module")
def run_with_every_epoch(tmp_path_factory):
    run = tmp_path_factory.mktemp("averaging") / "run"
    train_tiny(run, "--num_train_epochs", "3", "--save_total_limit", "4")
    return run


def test_averages_are_exact_scored_on_the_runs_validation_split_and_the_best_is_saved(run_with_every_epoch):
    run = run_with_every_epoch
    report = average_checkpoints.main([str(run), "--last", "1", "3"])
    single, all_three = report["averages"]
    checkpoints = sorted(run.glob("checkpoint-*"), key=lambda folder: int(folder.name.split("-")[1]))
    assert all_three["checkpoints"] == [folder.name for folder in checkpoints]

    # "The last 1" is the last epoch's weights: scored as the run scored them then, so the validation split was
    # rebuilt from the recipe (another seed would carve other images) and the loss uses the run's label smoothing.
    logged = json.loads((checkpoints[-1] / "trainer_state.json").read_text())["log_history"]
    at_last_epoch = [entry for entry in logged if "eval_validation_accuracy" in entry][-1]
    assert single["validation_accuracy"] == at_last_epoch["eval_validation_accuracy"]
    assert single["validation_loss"] == pytest.approx(at_last_epoch["eval_validation_loss"], abs=1e-5)

    best = max(report["averages"], key=lambda row: (row["validation_accuracy"], -row["validation_loss"]))
    assert report["chosen"] == best["last"]
    chosen = checkpoints[-best["last"]:]
    states = [load_file(folder / "model.safetensors") for folder in chosen]
    saved = AutoModelForImageClassification.from_pretrained(run / "averaged").state_dict()
    for name in states[0]:
        torch.testing.assert_close(saved[name], sum(state[name] for state in states) / len(states))
    assert json.loads((run / "averaged" / "averaging.json").read_text())["chosen"] == best["last"]
    if best["last"] == 3:  # the mean of three different weight sets is none of them
        assert not torch.equal(saved["classifier.weight"], states[-1]["classifier.weight"])


def test_missing_checkpoints_and_missing_recipe_say_what_to_do(run_with_every_epoch, tmp_path):
    with pytest.raises(SystemExit, match="--save_total_limit 6"):
        average_checkpoints.main([str(run_with_every_epoch), "--last", "5", "--output_dir", str(tmp_path)])
    with pytest.raises(SystemExit, match="recipe.json not found"):
        average_checkpoints.main([str(tmp_path), "--last", "1"])
