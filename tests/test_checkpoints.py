"""Loading checkpoints: weights only from safetensors, and faults that say what to do."""

import shutil

import pytest
import torch
from transformers import AutoModelForImageClassification

import hf_vit_mnist  # noqa: F401  (registers the Auto classes)
from hf_vit_mnist import ViTMNISTForImageClassification


@pytest.fixture
def checkpoint(saved_checkpoint, tmp_path):
    """A private copy of the tiny saved checkpoint that a test may damage."""
    return shutil.copytree(saved_checkpoint, tmp_path / "checkpoint")


def test_pickled_weights_are_never_loaded(checkpoint):
    model = ViTMNISTForImageClassification.from_pretrained(checkpoint)
    (checkpoint / "model.safetensors").unlink()
    torch.save(model.state_dict(), checkpoint / "pytorch_model.bin")
    for load in (ViTMNISTForImageClassification.from_pretrained, AutoModelForImageClassification.from_pretrained):
        with pytest.raises(OSError, match="no file named model.safetensors"):
            load(checkpoint)
    with pytest.raises(ValueError, match="only from safetensors"):
        ViTMNISTForImageClassification.from_pretrained(checkpoint, use_safetensors=False)


@pytest.mark.parametrize("damage", [lambda raw: raw[:100], lambda raw: b"not a safetensors file" * 4])
def test_corrupt_weights_say_so(checkpoint, damage):
    weights = checkpoint / "model.safetensors"
    weights.write_bytes(damage(weights.read_bytes()))
    with pytest.raises(OSError, match="model.safetensors in .* is corrupt or truncated"):
        AutoModelForImageClassification.from_pretrained(checkpoint)


def test_another_number_of_labels_needs_a_new_head(checkpoint):
    with pytest.raises(ValueError, match="ignore_mismatched_sizes=True"):
        ViTMNISTForImageClassification.from_pretrained(checkpoint, num_labels=5)
    model = ViTMNISTForImageClassification.from_pretrained(checkpoint, num_labels=5, ignore_mismatched_sizes=True)
    original = ViTMNISTForImageClassification.from_pretrained(checkpoint)
    assert model.classifier.out_features == 5
    torch.testing.assert_close(model.vit.layernorm.weight, original.vit.layernorm.weight)  # the encoder is kept
