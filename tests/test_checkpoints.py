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


def test_a_checkpoint_with_the_former_fused_qkv_is_refused_then_converted(checkpoint):
    """Checkpoints saved before Q, K and V got separate projections must not load with random attention."""
    from safetensors.torch import load_file, save_file

    from hf_vit_mnist.convert import split_fused_qkv

    model = ViTMNISTForImageClassification.from_pretrained(checkpoint).eval()
    pixels = torch.randn(3, 1, 28, 28)
    weights, fused = load_file(checkpoint / "model.safetensors"), {}
    for name, tensor in weights.items():  # write it the old way: one (3D, D) qkv weight, `proj` for the output
        if ".attention.q_proj." in name:
            parts = [weights[name.replace("q_proj", part)] for part in ("q_proj", "k_proj", "v_proj")]
            fused[name.replace("q_proj", "qkv")] = torch.cat(parts)
        elif ".attention.o_proj." in name:
            fused[name.replace("o_proj", "proj")] = tensor
        elif not any(f".attention.{part}." in name for part in ("k_proj", "v_proj")):
            fused[name] = tensor
    save_file(fused, checkpoint / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match="python -m hf_vit_mnist.convert split-qkv"):
        ViTMNISTForImageClassification.from_pretrained(checkpoint)
    assert split_fused_qkv(checkpoint) == model.config.num_hidden_layers
    assert split_fused_qkv(checkpoint) == 0  # already converted: left alone
    converted, info = ViTMNISTForImageClassification.from_pretrained(checkpoint, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    with torch.no_grad():
        torch.testing.assert_close(converted.eval()(pixels).logits, model(pixels).logits, atol=0, rtol=0)
