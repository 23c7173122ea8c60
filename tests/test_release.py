"""The committed model, release/vit-mnist: it loads as a Hub user would load it, reproduces the test accuracy its
results file and card state, and reads real digits, also photographed ones, through the pipeline."""

import json
from pathlib import Path

import PIL.Image
import pytest
import torch
from conftest import photo_of_digit
from huggingface_hub import ModelCard
from transformers import AutoModelForImageClassification, pipeline

import hf_vit_mnist  # registers the Auto classes
from hf_vit_mnist import ViTMNISTImageProcessor

RELEASE = Path(__file__).resolve().parents[1] / "release" / "vit-mnist"
pytestmark = pytest.mark.skipif(not (RELEASE / "model.safetensors").exists(), reason="no released model yet")


def test_release_reproduces_its_stated_test_accuracy(mnist_test):
    images, labels = mnist_test
    model = AutoModelForImageClassification.from_pretrained(RELEASE).eval()
    pixel_values = ViTMNISTImageProcessor.from_pretrained(RELEASE)(list(images), return_tensors="pt").pixel_values
    with torch.no_grad():
        predictions = torch.cat([model(pixel_values=chunk).logits.argmax(-1) for chunk in pixel_values.split(1000)])
    accuracy = (predictions == torch.from_numpy(labels.astype("int64"))).float().mean().item()
    stated = json.loads((RELEASE / "all_results.json").read_text())["test_accuracy"]
    assert abs(accuracy - stated) < 1.5e-4  # the same 10,000 images: equal up to float summation order
    card_accuracy = ModelCard.load(RELEASE / "README.md").data.eval_results[0].metric_value
    assert abs(card_accuracy - stated) < 1e-9


def test_pipeline_reads_real_and_photographed_digits(mnist_test):
    images, labels = mnist_test
    classifier = pipeline("image-classification", model=str(RELEASE))
    digits = [PIL.Image.fromarray(images[i]) for i in range(100)]
    correct = sum(result[0]["label"] == str(labels[i]) for i, result in enumerate(classifier(digits)))
    assert correct >= 98, correct  # the first 100 test digits; the model's error rate is under 1%
    photos = [PIL.Image.fromarray(photo_of_digit(images[i], seed=i)) for i in range(10)]
    correct = sum(result[0]["label"] == str(labels[i]) for i, result in enumerate(classifier(photos)))
    assert correct >= 9, correct  # dark ink, 10x, off-centre on a noisy light canvas


def test_release_carries_the_current_code():
    """The folder's code files are what trust_remote_code users run: they must be the package's own."""
    package = Path(hf_vit_mnist.__file__).parent
    for name in ("configuration_vit_mnist.py", "modeling_vit_mnist.py", "image_processing_vit_mnist.py"):
        assert (RELEASE / name).read_text() == (package / name).read_text(), (
            f"release/vit-mnist/{name} is stale: copy hf_vit_mnist/{name} over it, then rerun these tests.")
