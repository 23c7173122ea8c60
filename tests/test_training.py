"""End-to-end training through scripts/train.py (in-process, tiny model, small real subset of MNIST)."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import compare_runs
import evaluate_checkpoint  # scripts/ is on pytest's pythonpath
import pytest
import torch
import train
import train_seeds
from conftest import TINY, make_tiny_config, train_tiny
from safetensors.torch import load_file
from torch.optim.swa_utils import AveragedModel
from transformers import TrainingArguments
from transformers.trainer_utils import get_last_checkpoint

from hf_vit_mnist import ViTMNISTForImageClassification
from hf_vit_mnist.data import DigitCollator
from hf_vit_mnist.training import AVERAGE_WEIGHTS_NAME, DigitTrainer, moving_average_with_warmup


def test_training_learns_and_writes_the_hub_folder(trained):
    output_dir, results = trained
    assert results["test_accuracy"] > 0.35, results  # chance is 0.1; this tiny ViT sees 3,000 digits 3 times
    final = output_dir / train.FINAL_MODEL_DIR
    names = {path.name for path in final.iterdir()}
    assert {"model.safetensors", "config.json", "preprocessor_config.json", "all_results.json",
            "configuration_vit_mnist.py", "modeling_vit_mnist.py", "image_processing_vit_mnist.py"} <= names
    assert not any(name.endswith((".bin", ".pt", ".pth", ".pkl")) for name in names), names
    assert json.loads((final / "all_results.json").read_text())["test_accuracy"] == results["test_accuracy"]


def test_best_checkpoint_is_chosen_on_validation_and_test_is_only_logged(trained):
    output_dir, _ = trained
    checkpoints = sorted(output_dir.glob("checkpoint-*"), key=lambda path: int(path.name.split("-")[1]))
    state = json.loads((checkpoints[-1] / "trainer_state.json").read_text())
    validation = [entry["eval_validation_accuracy"] for entry in state["log_history"]
                  if "eval_validation_accuracy" in entry]
    assert len(validation) == 3 and state["best_metric"] == max(validation)
    assert all("elapsed_seconds" in entry for entry in state["log_history"])
    best = load_file(Path(state["best_model_checkpoint"]) / "model.safetensors")
    final = load_file(output_dir / train.FINAL_MODEL_DIR / "model.safetensors")
    assert all(torch.equal(best[name], final[name]) for name in best)


def test_same_seed_twice_gives_identical_weights(trained, tmp_path):
    output_dir, _ = trained
    train_tiny(tmp_path / "again", "--num_train_epochs", "3")  # the arguments `trained` was made with
    a = load_file(output_dir / train.FINAL_MODEL_DIR / "model.safetensors")
    b = load_file(tmp_path / "again" / train.FINAL_MODEL_DIR / "model.safetensors")
    assert all(torch.equal(a[name], b[name]) for name in a)


def signal_training_in_epoch_2(output_dir, args, sig) -> tuple[int, str]:
    """Runs train.py in a subprocess and sends it `sig` early in its second epoch; returns its exit code and output."""
    command = [sys.executable, train.__file__, *TINY, *args, "--output_dir", str(output_dir), "--logging_steps", "1"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    seen = []
    for line in process.stdout:  # Trainer prints each step's log: {'loss': ..., 'epoch': '1.021'}
        seen.append(line)
        epoch = re.search(r"'epoch': '?([0-9.]+)", line)
        if epoch and 1 < float(epoch.group(1)) < 1.5:
            process.send_signal(sig)
            break
    seen += process.stdout.readlines()
    return process.wait(), "".join(seen)


def assert_same_final_weights(run_a, run_b):
    a = load_file(run_a / train.FINAL_MODEL_DIR / "model.safetensors")
    b = load_file(run_b / train.FINAL_MODEL_DIR / "model.safetensors")
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_a_run_killed_mid_epoch_resumes_and_ends_as_if_never_stopped(tmp_path):
    """SIGKILL in the middle of epoch 2 (no chance to clean up), then the same command again: it resumes from the
    epoch-1 checkpoint by itself and ends with exactly the weights of a run that was never stopped. Bit-identical
    on CPU: the optimizer, scheduler, RNG (augmentation) and data order are all restored from the checkpoint. The
    checkpoint and recipe.json are all it needs (so a long run moves to another machine with just those two)."""
    args = ["--num_train_epochs", "2", "--track_test_accuracy", "false"]
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    train_tiny(straight, *args)
    returncode, output = signal_training_in_epoch_2(killed, args, signal.SIGKILL)
    assert returncode == -signal.SIGKILL, output[-2000:]
    assert not (killed / train.FINAL_MODEL_DIR).exists()
    assert [path.name for path in killed.glob("checkpoint-*")] == ["checkpoint-47"]  # epoch 1 of 47 steps
    assert sorted(path.name for path in killed.iterdir()) == ["checkpoint-47", train.RECIPE_FILE]  # all it needs

    train_tiny(killed, *args)
    assert_same_final_weights(straight, killed)


def test_moving_average_warms_up_then_keeps_its_decay():
    model = torch.nn.Linear(1, 1, bias=False)
    average = AveragedModel(model, multi_avg_fn=moving_average_with_warmup(0.9), use_buffers=True)
    expected = None
    for step, weight in enumerate([1.0, 2.0, 3.0, 4.0]):
        with torch.no_grad():
            model.weight.fill_(weight)
        average.update_parameters(model)
        decay = min(0.9, (1 + step) / (10 + step))  # the first update copies; then 2/11, 3/12, 4/13
        expected = weight if expected is None else decay * expected + (1 - decay) * weight
        assert average.module.weight.item() == pytest.approx(expected)
    average.n_averaged.fill_(1000)  # long after the warm-up: the decay itself
    with torch.no_grad():
        model.weight.fill_(0.0)
    average.update_parameters(model)
    assert average.module.weight.item() == pytest.approx(0.9 * expected)


def _weight_decay_by_parameter(trainer) -> dict[str, float]:
    groups = trainer.create_optimizer().param_groups
    decay_of = {id(parameter): group["weight_decay"] for group in groups for parameter in group["params"]}
    return {name: decay_of[id(parameter)] for name, parameter in trainer.model.named_parameters()}


@pytest.mark.parametrize("decay_cls_and_positions", [True, False])
def test_cls_token_and_positions_are_weight_decayed_only_when_asked(tmp_path, decay_cls_and_positions):
    args = TrainingArguments(output_dir=str(tmp_path), weight_decay=0.05, report_to="none", use_cpu=True)
    model = ViTMNISTForImageClassification(make_tiny_config())
    decay = _weight_decay_by_parameter(DigitTrainer(model=model, args=args,
                                                    decay_cls_and_positions=decay_cls_and_positions))
    expected = 0.05 if decay_cls_and_positions else 0.0
    assert decay["vit.embeddings.cls_token"] == decay["vit.embeddings.position_embeddings"] == expected
    assert decay["vit.embeddings.patch_embeddings.projection.weight"] == decay["classifier.weight"] == 0.05
    assert decay["classifier.bias"] == decay["vit.layernorm.weight"] == 0.0  # Trainer's own exemptions stay


def test_exempting_cls_and_positions_from_a_model_without_them_says_so(tmp_path):
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True)
    trainer = DigitTrainer(model=torch.nn.Linear(4, 2), args=args, decay_cls_and_positions=False)
    with pytest.raises(ValueError, match="leave it True for this model"):
        trainer.create_optimizer()


def test_weight_averaging_is_what_is_scored_kept_and_resumed(tmp_path):
    """--ema_decay: every checkpoint holds the moving average beside the training weights; evaluation during
    training scores the average (the test loss logged at the kept epoch is the final model's, to the last bit);
    the final model is the best checkpoint's average; a killed run resumes it and ends bit-identical."""
    args = ["--num_train_epochs", "2", "--ema_decay", "0.9"]
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    results = train_tiny(straight, *args)
    for checkpoint in straight.glob("checkpoint-*"):
        average = load_file(checkpoint / AVERAGE_WEIGHTS_NAME)
        weights = load_file(checkpoint / "model.safetensors")
        assert average.keys() == weights.keys()
        assert not all(torch.equal(average[name], weights[name]) for name in average), checkpoint.name
    state = json.loads((max(straight.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
                        / "trainer_state.json").read_text())
    kept = load_file(Path(state["best_model_checkpoint"]) / AVERAGE_WEIGHTS_NAME)
    final = load_file(straight / train.FINAL_MODEL_DIR / "model.safetensors")
    assert all(torch.equal(kept[name], final[name]) for name in kept)
    logged = [entry for entry in state["log_history"] if entry.get("eval_validation_accuracy") == state["best_metric"]]
    kept_epoch = next(entry["epoch"] for entry in logged)
    test_logged = next(entry for entry in state["log_history"]
                       if "eval_test_loss" in entry and entry["epoch"] == kept_epoch)
    assert test_logged["eval_test_loss"] == results["test_loss"]
    assert "weights averaged (EMA 0.9)" in compare_runs.main([str(straight)])

    returncode, output = signal_training_in_epoch_2(killed, args, signal.SIGKILL)
    assert returncode == -signal.SIGKILL, output[-2000:]
    train_tiny(killed, *args)
    assert_same_final_weights(straight, killed)


def test_checkpoint_averaging_keeps_the_best_on_validation_of_the_kept_epoch_and_exact_means(tmp_path):
    run = tmp_path / "run"
    # At a high constant learning rate the weights wander around a plateau, as at the end of a long run: a mean of
    # the last epochs beats the last one, and the best epoch (not the last) is no candidate.
    schedule = ["--num_train_epochs", "6", "--lr_scheduler_type", "constant", "--learning_rate", "3e-2"]
    results = train_tiny(run, *schedule, "--average_last_epochs", "2", "3")
    final = run / train.FINAL_MODEL_DIR
    summary = json.loads((final / "training_summary.json").read_text())
    averaging = summary["checkpoint_averaging"]
    last, *means = averaging["candidates"]
    assert [row["name"] for row in averaging["candidates"]] == ["epoch 6", "mean of epochs 5-6", "mean of epochs 4-6"]
    # The last epoch scores as training scored it (predict after training = evaluate during it).
    assert last["validation_accuracy"] == summary["history"][-1]["validation_accuracy"]

    # Each mean's score is that of the mean of its checkpoints' weights, recomputed here by hand.
    checkpoints = {round(json.loads((folder / "trainer_state.json").read_text())["epoch"]): folder
                   for folder in run.glob("checkpoint-*")}
    assert sorted(checkpoints) == [1, 2, 3, 4, 5, 6]  # save_total_limit was raised from 2 to 3 + 3
    _, data_args, _, training_args = train.parse_args([*TINY, "--output_dir", str(tmp_path / "unused")])
    validation = train.load_splits(data_args, training_args.seed)[0]["validation"]
    model = train.ViTMNISTForImageClassification.from_pretrained(final).eval()
    batch = DigitCollator(0.1307, 0.3081)([validation[i] for i in range(len(validation))])
    weights = {}
    for mean in means:
        states = [load_file(checkpoints[epoch] / "model.safetensors") for epoch in range(mean["epochs"][0], 7)]
        weights[mean["name"]] = {name: sum(state[name] for state in states) / len(states) for name in states[0]}
        model.load_state_dict(weights[mean["name"]])
        with torch.no_grad():
            correct = (model(pixel_values=batch["pixel_values"]).logits.argmax(-1) == batch["labels"]).sum().item()
        assert round(mean["validation_accuracy"] * len(validation)) == correct
    weights[last["name"]] = load_file(checkpoints[6] / "model.safetensors")

    best = max(averaging["candidates"], key=lambda row: (row["validation_accuracy"], -row["validation_loss"]))
    assert averaging["chosen"] == best["name"] and best in means
    saved = load_file(final / "model.safetensors")
    for name, tensor in saved.items():
        torch.testing.assert_close(tensor, weights[best["name"]][name])
    assert results["test_accuracy"] == best["test_accuracy"]  # the final test score is the chosen model's
    card = (final / "README.md").read_text()
    assert "| checkpoint averaging |" in card and "to pick the best epoch and checkpoint average;" in card
    table = compare_runs.main([str(run)])
    assert "checkpoint averaging (last 2/3 epochs, if best on validation)" in table
    assert f"| run | {best['name']} | {100 * best['validation_accuracy']:.2f}% |" in table and "**kept**" in table

    # Averaging retrains nothing: the finished run may be finished again with another choice.
    train_tiny(run, *schedule, "--average_last_epochs", "4")
    again = json.loads((final / "training_summary.json").read_text())["checkpoint_averaging"]
    assert [row["name"] for row in again["candidates"]] == ["epoch 6", "mean of epochs 3-6"]
    assert again["candidates"][0]["validation_accuracy"] == last["validation_accuracy"]


def test_without_a_validation_split_the_mean_fixed_before_training_is_kept(tmp_path):
    run = tmp_path / "run-seed7"  # named as train_seeds.py names its runs (TINY's seed is 7)
    results = train_tiny(run, "--num_train_epochs", "3", "--validation_size", "0", "--average_last_epochs", "2")
    final = run / train.FINAL_MODEL_DIR
    summary = json.loads((final / "training_summary.json").read_text())
    assert set(summary["split_sizes"]) == {"train", "test"}
    assert [row["epoch"] for row in summary["history"]] == [1, 2, 3]  # test tracked (logged) each epoch
    assert not any("validation_accuracy" in row for row in summary["history"])
    averaging = summary["checkpoint_averaging"]
    assert averaging["chosen"] == "mean of epochs 2-3" and averaging["validation_accuracy"] is None
    assert [row["name"] for row in averaging["candidates"]] == ["mean of epochs 2-3"]  # nothing else to weigh
    checkpoints = {round(json.loads((folder / "trainer_state.json").read_text())["epoch"]): folder
                   for folder in run.glob("checkpoint-*")}
    states = [load_file(checkpoints[epoch] / "model.safetensors") for epoch in (2, 3)]
    for name, tensor in load_file(final / "model.safetensors").items():
        torch.testing.assert_close(tensor, (states[0][name] + states[1][name]) / 2)
    assert results["test_accuracy"] == averaging["candidates"][0]["test_accuracy"] > 0.35  # it learned (chance: 0.1)
    card = (final / "README.md").read_text()
    assert "none held out: the weights kept were fixed before training" in card
    assert "fixed before training (no validation split to choose on)" in card
    table = compare_runs.main([str(run)])
    assert "all of train (no validation split), mean of the last 2 epochs kept" in table
    assert "| run-seed7 | mean of epochs 2-3 | no validation split |" in table
    quick = Path(train.__file__).parents[1] / "recipes" / "quick.json"
    report = train_seeds.summarize(quick, ["--output_dir", str(tmp_path / "run")], [7])
    assert report["validation_accuracy"] == [None] and report["best_run"] is None  # no seed is chosen on test
    assert report["test_accuracy"] == [results["test_accuracy"]]
    unfinished = tmp_path / "unfinished"  # as if stopped after its last checkpoint, before the end
    shutil.copytree(run, unfinished, ignore=shutil.ignore_patterns(train.FINAL_MODEL_DIR))
    last = summary["history"][-1]
    assert f"in progress: {100 * last['test_accuracy']:.2f}% at the last epoch so far (3)" in compare_runs.main(
        [str(unfinished)])


def test_compare_runs_tabulates_a_run_that_evaluated_nothing(tmp_path):
    run = tmp_path / "run"
    train_tiny(run, "--num_train_epochs", "1", "--validation_size", "0", "--track_test_accuracy", "false")
    assert "| not recorded | not recorded | not recorded | not recorded |" in compare_runs.main([str(run)])
    shutil.rmtree(run / train.FINAL_MODEL_DIR)  # as if stopped after its checkpoint
    assert "in progress: no test score recorded" in compare_runs.main([str(run)])


def test_checkpoint_averaging_without_any_epoch_checkpoint_keeps_the_model(tmp_path):
    results = train_tiny(tmp_path, "--num_train_epochs", "0.5", "--average_last_epochs", "2")  # no epoch ends
    summary = json.loads((tmp_path / train.FINAL_MODEL_DIR / "training_summary.json").read_text())
    assert "checkpoint_averaging" not in summary and results["test_accuracy"] > 0.1


def test_ctrl_c_stops_without_a_traceback_and_names_the_checkpoint_to_resume_from(tmp_path):
    # 10 epochs, so that a signal delivered late on a busy machine still lands before the run ends
    returncode, output = signal_training_in_epoch_2(tmp_path, ["--num_train_epochs", "10"], signal.SIGINT)
    assert returncode == 1 and "Traceback" not in output, output[-2000:]
    message = re.search(r"Interrupted at step (\d+)\. Run the same command again to resume from the last checkpoint "
                        r"\((\S+)\)", output)
    assert message, output[-2000:]
    step, checkpoint = int(message.group(1)), Path(message.group(2))
    saved_step = json.loads((checkpoint / "trainer_state.json").read_text())["global_step"]
    assert checkpoint == Path(get_last_checkpoint(tmp_path)) and 47 <= saved_step <= step  # what a rerun resumes


@pytest.mark.slow  # ~35 s; the fast suite sees the SIGTERM checkpoint through tests/test_train_seeds.py
def test_sigterm_saves_the_current_step_and_the_run_resumes_from_it(tmp_path):
    """SIGTERM (a scheduler's preemption, `kill`): transformers' just-in-time checkpoint saves the step it is at
    (after a 3 s grace period), train.py stops with a message saying how to go on, and the same command again ends
    with exactly the weights of a run that was never stopped, although it resumed in the middle of an epoch."""
    args = ["--num_train_epochs", "10", "--track_test_accuracy", "false"]  # long enough to outlast the grace period
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    returncode, output = signal_training_in_epoch_2(stopped, args, signal.SIGTERM)
    message = re.search(r"Stopped by SIGTERM at step (\d+) of 470, saved as (\S+)\. Run the same", output)
    assert returncode == 1 and message, output[-2000:]
    step, checkpoint = int(message.group(1)), Path(message.group(2))
    assert checkpoint == stopped / f"checkpoint-{step}" and 47 < step < 470
    assert json.loads((checkpoint / "trainer_state.json").read_text())["global_step"] == step
    assert not (stopped / train.FINAL_MODEL_DIR).exists()

    train_tiny(stopped, *args)
    train_tiny(straight, *args)
    assert_same_final_weights(straight, stopped)


def test_unwritable_output_dir_fails_at_start(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(SystemExit, match="Cannot write to --output_dir"):
        train_tiny(blocker / "run", "--num_train_epochs", "1")


@pytest.mark.parametrize("flags, message", [
    (["--scale_min", "1.2", "--scale_max", "0.8"], "--scale_min/--scale_max must satisfy 0 < min <= max"),
    (["--erase_probability", "2"], "--erase_probability must be in"),
    (["--elastic_alpha", "34", "--elastic_sigma", "0"], "--elastic_sigma > 0"),
    (["--ema_decay", "1"], "--ema_decay must be in [0, 1)"),
    (["--average_last_epochs", "1", "3"], "--average_last_epochs takes numbers of epochs, 2 or more"),
    (["--average_last_epochs", "3", "--ema_decay", "0.99"], "Choose one"),
    (["--validation_size", "-1"], "--validation_size is a number of images, 0 or more"),
    (["--validation_size", "0", "--average_last_epochs", "2", "3"], "--validation_size 0 holds none out"),
    (["--learning_rate", "fast"], "invalid float value"),  # argparse's own message, also one line
])
def test_bad_training_arguments_stop_with_one_line_before_any_work(tmp_path, capsys, flags, message):
    with pytest.raises(SystemExit) as stopped:
        train_tiny(tmp_path / "run", *flags)
    assert message in str(stopped.value) + capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_bad_dataset_dir_fails_with_a_clear_message(tmp_path):
    with pytest.raises(SystemExit, match="Data error"):
        train_tiny(tmp_path / "run", "--dataset_dir", str(tmp_path / "missing"))


def test_evaluate_script_writes_its_outputs(trained, idx_folder):
    output_dir, _ = trained
    results = evaluate_checkpoint.main(["--model", str(output_dir / train.FINAL_MODEL_DIR), "--dataset_dir",
                                    str(idx_folder), "--output_dir", str(output_dir / "eval"), "--worst", "6"])
    for name in ("eval_results.json", "confusion_matrix.png", "worst_mistakes.png"):
        assert (output_dir / "eval" / name).stat().st_size > 0, name
    saved = json.loads((output_dir / "eval" / "eval_results.json").read_text())
    assert saved["num_images"] == 100 and sum(saved["support"]) == 100
    assert sum(map(sum, saved["confusion_matrix"])) == 100
    assert saved["accuracy"] == results["accuracy"] > 0.3
    assert len(saved["f1"]) == 10
    assert all(mistake["true"] != mistake["predicted"] for mistake in saved["worst_mistakes"])


def test_two_data_parallel_cpu_processes(tmp_path, trained):
    """torchrun with 2 processes (accelerate's MULTI_CPU mode, gloo): every test image is scored exactly once, and
    the result is as good as the 1-process run with the same global batch."""
    output_dir = tmp_path / "ddp"
    tiny = [value if value != "64" or TINY[i - 1] != "--per_device_train_batch_size" else "32"
            for i, value in enumerate(TINY)]  # 2 processes x 32 = the 1-process run's batch of 64
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
               str(Path(train.__file__)), *tiny, "--num_train_epochs", "3", "--max_eval_samples", "999",
               "--output_dir", str(output_dir)]
    run = subprocess.run(command, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    assert run.returncode == 0, run.stderr[-10000:]
    assert "2 process(es), DistributedType.MULTI_CPU" in run.stderr
    results = json.loads((output_dir / train.FINAL_MODEL_DIR / "all_results.json").read_text())
    assert results["test_num_images"] == 999
    _, single = trained
    assert abs(results["test_accuracy"] - single["test_accuracy"]) < 0.1, (results, single)


def test_divergence_stops_with_a_clear_message_and_keeps_the_good_checkpoint(tmp_path):
    """With an absurd learning rate the first step leaves huge but finite weights (saved as checkpoint-1); the next
    loss is NaN and its update makes the weights non-finite: training must stop before saving those."""
    output_dir = tmp_path / "run"
    with pytest.raises(SystemExit, match=r"Training diverged by step \d+ .* Last good checkpoint: .*checkpoint-"):
        train_tiny(output_dir, "--num_train_epochs", "1", "--learning_rate", "1e30", "--max_grad_norm", "0",
                   "--warmup_steps", "0", "--lr_scheduler_type", "constant", "--save_strategy", "steps",
                   "--save_steps", "1", "--eval_strategy", "no", "--load_best_model_at_end", "false")
    checkpoints = list(output_dir.glob("checkpoint-*"))
    assert checkpoints, "the steps before the divergence were saved"
    for checkpoint in checkpoints:
        weights = load_file(checkpoint / "model.safetensors")
        assert all(torch.isfinite(tensor).all() for tensor in weights.values()), checkpoint.name


def test_compare_runs_tabulates_finished_and_unfinished_runs(trained, tmp_path):
    output_dir, results = trained
    table = compare_runs.main([str(output_dir), "--json", str(tmp_path / "runs.json")])
    row = table.splitlines()[2]
    assert f"**{100 * results['test_accuracy']:.2f}%**" in row and "plain ViT, width 32, depth 2, MLP 64" in row
    summary = json.loads((output_dir / train.FINAL_MODEL_DIR / "training_summary.json").read_text())
    lowest = min(summary["history"], key=lambda row: row["validation_loss"])
    assert f"| {100 * lowest['test_accuracy']:.2f}% ({lowest['epoch']:g}) |" in row
    assert "| not reached / not reached |" in row  # no tiny run gets to 99.0% test; the card's format is tested
    assert json.loads((tmp_path / "runs.json").read_text())[0]["results"] == results

    unfinished = tmp_path / "unfinished"  # the same run as if stopped after its last checkpoint, before the end
    shutil.copytree(output_dir, unfinished, ignore=shutil.ignore_patterns(train.FINAL_MODEL_DIR))
    row = compare_runs.main([str(unfinished)]).splitlines()[2]
    assert "| 3 of 3 |" in row and "| labels, no augmentation |" in row and f"| {summary['num_parameters']:,} |" in row
    assert f"{100 * results['test_accuracy']:.2f}% at the best validation epoch so far" in row  # what train.py kept
    table = compare_runs.main([str(output_dir), "--by_epoch", "validation"])
    validation = " ".join(f"{100 * row['validation_accuracy']:.2f}" for row in summary["history"])
    assert "validation accuracy by epoch" in table.splitlines()[0] and f"| {validation} |" in table
    with pytest.raises(SystemExit, match="no checkpoint"):
        compare_runs.main([str(tmp_path / "empty")])

    lines = compare_runs.main([str(output_dir), str(unfinished), "--epochs", "2", "4"]).splitlines()
    epochs_2_3 = [row for row in summary["history"] if row["epoch"] in (2, 3)]
    means = [sum(row[f"{split}_accuracy"] for row in epochs_2_3) / 2 for split in ("validation", "test")]
    assert lines[-4] == "| run | epochs | validation accuracy | test accuracy |"
    assert lines[-1] == f"| unfinished | 2 of 3 | {100 * means[0]:.2f}% | {100 * means[1]:.2f}% |"
    with pytest.raises(SystemExit):
        compare_runs.main([str(output_dir), "--epochs", "4", "2"])
    for seed in (1, 2):  # two seeds of one recipe, as train_seeds.py names them, also get their 3-decimal mean
        shutil.copytree(unfinished, tmp_path / f"recipe-seed{seed}")
    lines = compare_runs.main([str(tmp_path / "recipe-seed1"), str(tmp_path / "recipe-seed2"), str(unfinished),
                               "--epochs", "2", "4"]).splitlines()
    assert lines[-1] == f"| recipe: mean of 2 seeds | | {100 * means[0]:.3f}% | {100 * means[1]:.3f}% |"

    # Runs kept only as a --json file (their folders gone) tabulate as they did from the folders.
    from_folders = compare_runs.main([str(output_dir), str(unfinished), "--epochs", "2", "4",
                                      "--json", str(tmp_path / "both.json")])
    assert compare_runs.main([str(tmp_path / "both.json"), "--epochs", "2", "4"]) == from_folders
    for not_records in (tmp_path / "gone.json", output_dir / train.FINAL_MODEL_DIR / "all_results.json"):  # a dict
        with pytest.raises(SystemExit, match="is not a file that compare_runs.py --json wrote"):
            compare_runs.main([str(not_records)])


def test_compare_runs_names_the_start_checkpoint_and_the_augmentation(trained):
    output_dir, _ = trained
    recipe = json.loads((output_dir / train.RECIPE_FILE).read_text())
    assert compare_runs.training_text(recipe) == "labels, no augmentation"  # the tiny runs train on plain digits
    recipe["data"]["augment"] = True
    assert compare_runs.training_text(recipe) == "labels"  # affine augmentation, the default: not named
    recipe["model"]["model_name_or_path"] = "release/vit-mnist"
    recipe["data"]["elastic_alpha"], recipe["data"]["elastic_sigma"] = 34.0, 5.0
    assert compare_runs.training_text(recipe) == "fine-tuned from release/vit-mnist; labels, elastic distortion 34/5"
    recipe["data"]["augment"] = False  # elastic settings are then moot
    assert compare_runs.training_text(recipe) == "fine-tuned from release/vit-mnist; labels, no augmentation"
    recipe["training"]["decay_cls_and_positions"] = False
    assert compare_runs.training_text(recipe).endswith("no augmentation, no weight decay on [CLS] and positions")


def test_a_run_resumes_only_with_the_recipe_it_started_with(trained, tmp_path):
    output_dir, _ = trained
    summary = json.loads((output_dir / train.FINAL_MODEL_DIR / "training_summary.json").read_text())
    assert json.loads((output_dir / train.RECIPE_FILE).read_text()) == summary["recipe"]  # written at the start
    run = tmp_path / "run"
    shutil.copytree(output_dir, run, ignore=shutil.ignore_patterns(train.FINAL_MODEL_DIR))
    with pytest.raises(SystemExit, match=r"another recipe \(training.num_train_epochs: 3.0 -> 5.0\)"):
        train_tiny(run, "--num_train_epochs", "5")
    with pytest.raises(SystemExit, match=r"data.rotation_degrees: 10.0 -> 5.0; training.seed: 7 -> 8\)"):
        train_tiny(run, "--num_train_epochs", "3", "--rotation_degrees", "5", "--seed", "8")
    assert not (run / train.FINAL_MODEL_DIR).exists()  # refused before any training


@pytest.mark.parametrize("recipe", sorted((Path(train.__file__).parents[1] / "recipes").glob("*.json")),
                         ids=lambda path: path.name)
def test_every_recipe_parses_into_train_py_arguments(recipe):
    model_args, _, _, training_args = train.parse_args([str(recipe)])
    values = json.loads(recipe.read_text())
    assert training_args.output_dir == values["output_dir"]
    assert model_args.stem == values.get("stem", "patchify")
