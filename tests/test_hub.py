"""The folder the Hub receives, the model card, and pushing without a network (no request leaves the machine)."""

import json
import os
import subprocess
import sys

import push_to_hub  # scripts/push_to_hub.py
import pytest
import torch
from huggingface_hub import ModelCard
from test_remote_code import FRESH_PROCESS

from model_card.build import build_model_card, card_text_with_mark, is_unedited_generated_card


@pytest.fixture(scope="module")
def hub_folder(trained, tmp_path_factory):
    output_dir, _ = trained
    return push_to_hub.prepare_hub_folder(output_dir / "final_model", tmp_path_factory.mktemp("hub") / "vit",
                                          repo_id="someone/vit-mnist-tiny")


def test_hub_folder_holds_exactly_the_release_files(hub_folder):
    names = {path.name for path in hub_folder.iterdir()}
    assert names == {"model.safetensors", "config.json", "preprocessor_config.json", "configuration_vit_mnist.py",
                     "modeling_vit_mnist.py", "image_processing_vit_mnist.py", "all_results.json",
                     "training_summary.json", "README.md"}


def test_train_writes_the_card_into_final_model(trained):
    output_dir, results = trained
    card = ModelCard.load(output_dir / "final_model" / "README.md")
    assert card.data.eval_results[0].metric_value == results["test_accuracy"]
    assert is_unedited_generated_card((output_dir / "final_model" / "README.md").read_text())


def test_model_card_round_trips_with_the_measured_accuracy(hub_folder):
    card = ModelCard.load(hub_folder / "README.md")
    results = json.loads((hub_folder / "all_results.json").read_text())
    accuracy = [r for r in card.data.eval_results if r.metric_type == "accuracy"][0]
    assert accuracy.metric_value == results["test_accuracy"]
    assert accuracy.dataset_split == "test" and accuracy.task_type == "image-classification"
    assert card.data.library_name == "transformers" and card.data.pipeline_tag == "image-classification"
    text = card.text
    summary = json.loads((hub_folder / "training_summary.json").read_text())
    assert f"{100 * results['test_accuracy']:.2f}%" in text
    assert f"learning rate {summary['recipe']['training']['learning_rate']}" in text
    assert "trust_remote_code=True" in text and "someone/vit-mnist-tiny" in text
    assert "An Image is Worth 16x16 Words" in text  # the citation


def test_edited_cards_are_recognised(hub_folder):
    generated = card_text_with_mark(build_model_card(hub_folder, repo_id="someone/vit-mnist-tiny"))
    assert is_unedited_generated_card(generated)
    assert not is_unedited_generated_card(generated.replace("## Limitations", "## Limitations (edited)"))
    assert not is_unedited_generated_card("# my own card\n")


def test_local_folder_loads_in_a_fresh_process_like_a_hub_download(hub_folder, mnist_test, tmp_path):
    import numpy as np
    import PIL.Image

    np.save(tmp_path / "images.npy", mnist_test[0][:2])
    PIL.Image.fromarray(mnist_test[0][0]).convert("RGB").save(tmp_path / "photo.png")
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_OFFLINE": "1"}
    run = subprocess.run([sys.executable, "-c", FRESH_PROCESS, str(hub_folder), str(tmp_path / "images.npy"),
                          str(tmp_path / "photo.png")], capture_output=True, text=True, cwd=tmp_path, env=env,
                         stdin=subprocess.DEVNULL, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert all(name.startswith("transformers_modules.") for name in result["classes"])
    assert [answer[0]["label"] for answer in result["answers"][:2]] == [
        str(int(np.argmax(logits))) for logits in result["logits"]]


def test_unreachable_hub_says_so_in_one_line(trained, monkeypatch):
    output_dir, _ = trained
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the Hub client refuses before any request is sent
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(SystemExit) as stopped:
        push_to_hub.main([str(output_dir / "final_model"), "--hub_model_id", "someone/vit-mnist-tiny"])
    message = str(stopped.value)
    assert message.startswith("Could not push to the Hub") and "\n" not in message
    assert "--local_dir" in message and str(output_dir / "final_model") in message
    assert (output_dir / "final_model" / "model.safetensors").exists()


def test_incomplete_folder_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="not a complete trained model folder"):
        push_to_hub.main([str(tmp_path), "--local_dir", str(tmp_path / "out")])


def test_card_names_the_data_the_run_used(hub_folder, tmp_path):
    import shutil

    other = tmp_path / "fashion-run"
    shutil.copytree(hub_folder, other)
    summary = json.loads((other / "training_summary.json").read_text())
    assert summary["dataset"] == "bundled MNIST"
    assert ModelCard.load(hub_folder / "README.md").data.datasets == ["ylecun/mnist"]
    summary["dataset"] = str(tmp_path / "fashion-mnist")  # a local IDX folder: no Hub id to list
    (other / "training_summary.json").write_text(json.dumps(summary))
    card = build_model_card(other)
    assert card.data.datasets is None and "handwritten digits" not in card.text
    assert "fashion-mnist" in card.text


def test_card_names_a_hybrid_stem(hub_folder, tmp_path):
    import shutil

    assert "the paper's plain ViT" in ModelCard.load(hub_folder / "README.md").text
    hybrid = tmp_path / "hybrid-run"
    shutil.copytree(hub_folder, hybrid)
    config = json.loads((hybrid / "config.json").read_text())
    (hybrid / "config.json").write_text(json.dumps({**config, "stem": "conv", "patch_size": 4}))
    text = build_model_card(hybrid).text
    assert "the paper's hybrid ViT" in text and "7x7 feature map" in text and "plain ViT" not in text


def test_card_lists_every_augmentation_and_the_weight_averaging_and_decay_the_run_used(hub_folder, tmp_path):
    import shutil

    assert "elastic" not in ModelCard.load(hub_folder / "README.md").text
    elastic = tmp_path / "elastic-run"
    shutil.copytree(hub_folder, elastic)
    summary = json.loads((elastic / "training_summary.json").read_text())
    summary["recipe"]["data"].update(augment=True, elastic_alpha=34.0, elastic_sigma=4.0, erase_probability=0.25)
    summary["recipe"]["training"].update(ema_decay=0.999, decay_cls_and_positions=False)
    (elastic / "training_summary.json").write_text(json.dumps(summary))
    text = build_model_card(elastic).text
    assert "elastic distortion (Simard et al. 2003) alpha 34.0, sigma 4.0 px" in text
    assert "random erasing p 0.25" in text and "random affine per image" in text
    assert "| weight averaging | exponential moving average of the weights, decay 0.999 per step" in text
    assert "weight decay 0.05 (not on the [CLS] token and position embeddings)" in text
    default_card = ModelCard.load(hub_folder / "README.md").text
    assert "weight averaging" not in default_card and "not on the [CLS]" not in default_card  # off unless asked for


def test_card_says_when_training_reached_99_percent(hub_folder, tmp_path):
    import shutil

    summary = json.loads((hub_folder / "training_summary.json").read_text())
    assert summary["hardware"]["threads_per_process"] == torch.get_num_threads()  # what train.py recorded
    run = tmp_path / "long-run"
    shutil.copytree(hub_folder, run)
    summary["history"] = [{"epoch": epoch, "elapsed_seconds": 60.0 * epoch, "test_accuracy": accuracy}
                          for epoch, accuracy in [(1, 0.97), (2, 0.989), (3, 0.991), (4, 0.994)]]
    summary["hardware"]["threads_per_process"] = 2
    (run / "training_summary.json").write_text(json.dumps(summary))
    text = build_model_card(run).text
    assert "| time to 99.0% / 99.5% test accuracy | epoch 3 (3 min 0 s) / not reached |" in text
    assert "(1 process(es), 2 thread(s) each)" in text
