"""The package's checkpoints through the Auto classes and `pipeline`, with the package installed: no
`trust_remote_code` argument and never the interactive remote-code prompt."""

import builtins
import json

import numpy as np
import PIL.Image
import pytest
import torch
from conftest import photo_of_digit
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForImageClassification,
    pipeline,
)

from hf_vit_mnist import ViTMNISTConfig, ViTMNISTForImageClassification, ViTMNISTImageProcessor, ViTMNISTModel
from hf_vit_mnist.configuration_vit_mnist import AUTO_MAP

DIGITS = {str(i) for i in range(10)}


@pytest.fixture(autouse=True)
def no_prompt(monkeypatch):
    """Any call to input() (the "Do you wish to run the custom code? [y/N]" prompt) fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"interactive prompt: {args}")

    monkeypatch.setattr(builtins, "input", refuse)


def test_checkpoint_files(saved_checkpoint):
    from pathlib import Path

    directory = Path(saved_checkpoint)
    config = json.loads((directory / "config.json").read_text())
    assert config["auto_map"] == AUTO_MAP
    for code_file in ("configuration_vit_mnist.py", "modeling_vit_mnist.py", "image_processing_vit_mnist.py"):
        assert (directory / code_file).exists(), code_file


def test_auto_classes_load_the_package_classes(saved_checkpoint):
    assert type(AutoConfig.from_pretrained(saved_checkpoint)) is ViTMNISTConfig
    assert type(AutoModel.from_pretrained(saved_checkpoint)) is ViTMNISTModel
    assert type(AutoModelForImageClassification.from_pretrained(saved_checkpoint)) is ViTMNISTForImageClassification
    assert type(AutoImageProcessor.from_pretrained(saved_checkpoint)) is ViTMNISTImageProcessor


def test_nothing_points_the_video_processor_probe_at_remote_code(saved_checkpoint):
    """The image-classification pipeline also calls AutoVideoProcessor.from_pretrained (where torchvision is
    installed). That asks the remote-code question when it finds an `AutoVideoProcessor` entry in config.json's
    auto_map, or an `AutoImageProcessor` entry in preprocessor_config.json's (which it rewrites into a video
    processor reference). Neither may exist; AutoImageProcessor finds its entry in config.json instead."""
    from pathlib import Path

    config = json.loads((Path(saved_checkpoint) / "config.json").read_text())
    processor_config = json.loads((Path(saved_checkpoint) / "preprocessor_config.json").read_text())
    assert "AutoVideoProcessor" not in config["auto_map"]
    assert "AutoImageProcessor" not in processor_config.get("auto_map", {})
    assert "image_processor_type" not in processor_config  # it would hide config.json's entry from AutoImageProcessor


@pytest.fixture(scope="module")
def classifier(saved_checkpoint):
    return pipeline("image-classification", model=saved_checkpoint)


def _check_answer(answer, top_k):
    assert [set(item) for item in answer] == [{"label", "score"}] * top_k
    assert {item["label"] for item in answer} <= DIGITS
    scores = [item["score"] for item in answer]
    assert scores == sorted(scores, reverse=True)


def test_pipeline_components(classifier):
    assert isinstance(classifier.model, ViTMNISTForImageClassification)
    assert isinstance(classifier.image_processor, ViTMNISTImageProcessor)


def test_pipeline_on_every_input_kind(classifier, mnist_test, tmp_path):
    digit = mnist_test[0][0]
    path = tmp_path / "digit.png"
    PIL.Image.fromarray(digit).save(path)
    for image in (PIL.Image.fromarray(digit), str(path), digit, PIL.Image.fromarray(photo_of_digit(digit))):
        answer = classifier(image, top_k=3)
        _check_answer(answer, 3)
    full = classifier(PIL.Image.fromarray(digit), top_k=10)
    assert {item["label"] for item in full} == DIGITS
    assert sum(item["score"] for item in full) == pytest.approx(1.0, abs=1e-4)


def test_pipeline_batch_matches_the_model(classifier, saved_checkpoint, mnist_test):
    images = [PIL.Image.fromarray(image) for image in mnist_test[0][:4]]
    answers = classifier(images, top_k=1, batch_size=2)
    assert len(answers) == 4
    model = ViTMNISTForImageClassification.from_pretrained(saved_checkpoint).eval()
    pixels = ViTMNISTImageProcessor()(mnist_test[0][:4], return_tensors="pt").pixel_values
    with torch.no_grad():
        probabilities = model(pixels).logits.softmax(-1)
    for answer, row in zip(answers, probabilities, strict=True):
        _check_answer(answer, 1)
        assert answer[0]["label"] == str(int(row.argmax()))
        assert answer[0]["score"] == pytest.approx(float(row.max()), abs=1e-5)


def test_pipeline_on_a_numpy_float_image(classifier, mnist_test):
    _check_answer(classifier(mnist_test[0][1].astype(np.float32) / 255, top_k=2), 2)
