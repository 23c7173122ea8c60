import copy

import pytest
import torch
from conftest import make_tiny_config
from safetensors.torch import load_file

from hf_vit_mnist import ViTMNISTForImageClassification, ViTMNISTModel


def _pixels(batch=3, size=28, seed=0):
    return torch.randn(batch, 1, size, size, generator=torch.Generator().manual_seed(seed))


def test_output_shapes_and_dtypes(tiny_config):
    model = ViTMNISTModel(tiny_config).eval()
    out = model(_pixels())
    tokens = 1 + tiny_config.num_patches
    assert out.last_hidden_state.shape == (3, tokens, tiny_config.hidden_size)
    assert out.pooler_output.shape == (3, tiny_config.hidden_size)
    assert out.last_hidden_state.dtype == torch.float32
    torch.testing.assert_close(out.pooler_output, out.last_hidden_state[:, 0])

    classifier = ViTMNISTForImageClassification(tiny_config).eval()
    logits = classifier(_pixels()).logits
    assert logits.shape == (3, 10) and logits.dtype == torch.float32


def test_mean_pooling_averages_patch_tokens():
    model = ViTMNISTModel(make_tiny_config(pooling="mean")).eval()
    out = model(_pixels())
    torch.testing.assert_close(out.pooler_output, out.last_hidden_state[:, 1:].mean(1))


def test_uint8_like_inputs_are_cast_to_the_weights_dtype(tiny_config):
    model = ViTMNISTForImageClassification(tiny_config).eval()
    pixels = _pixels()
    torch.testing.assert_close(model(pixels.double()).logits, model(pixels).logits)


def test_loss_is_cross_entropy(tiny_config):
    model = ViTMNISTForImageClassification(tiny_config).eval()
    labels = torch.tensor([3, 1, 4])
    out = model(_pixels(), labels=labels)
    torch.testing.assert_close(out.loss, torch.nn.functional.cross_entropy(out.logits, labels))
    assert model(_pixels()).loss is None


def test_save_load_round_trip_is_bit_exact_and_safetensors_only(tiny_config, tmp_path):
    model = ViTMNISTForImageClassification(tiny_config).eval()
    model.save_pretrained(tmp_path)
    files = {p.name for p in tmp_path.iterdir()}
    assert "model.safetensors" in files and not any(name.endswith((".bin", ".pt", ".pth")) for name in files)
    assert {"configuration_vit_mnist.py", "modeling_vit_mnist.py"} <= files
    saved = load_file(tmp_path / "model.safetensors")
    for name, tensor in model.state_dict().items():
        assert torch.equal(saved[name], tensor), name
    loaded = ViTMNISTForImageClassification.from_pretrained(tmp_path).eval()
    assert torch.equal(loaded(_pixels()).logits, model(_pixels()).logits)


def test_base_model_loads_from_classifier_checkpoint(tiny_config, tmp_path):
    classifier = ViTMNISTForImageClassification(tiny_config).eval()
    classifier.save_pretrained(tmp_path)
    encoder = ViTMNISTModel.from_pretrained(tmp_path).eval()
    assert torch.equal(encoder(_pixels()).pooler_output, classifier.vit(_pixels()).pooler_output)


def test_eager_and_sdpa_agree(tiny_config):
    torch.manual_seed(0)
    eager = ViTMNISTForImageClassification(tiny_config).eval()
    eager.set_attn_implementation("eager")
    sdpa = copy.deepcopy(eager)
    sdpa.set_attn_implementation("sdpa")
    assert sdpa.config._attn_implementation == "sdpa"
    pixels = _pixels(batch=4)
    torch.testing.assert_close(sdpa(pixels).logits, eager(pixels).logits, atol=1e-5, rtol=0)


def test_attention_is_bidirectional(tiny_config):
    """The [CLS] token must see the last patch: with a causal mask it could not."""
    model = ViTMNISTModel(tiny_config).eval()
    model.set_attn_implementation("sdpa")
    pixels = _pixels(batch=1)
    changed = pixels.clone()
    changed[..., -tiny_config.patch_size :, -tiny_config.patch_size :] += 5.0  # only the last patch
    assert not torch.allclose(model(pixels).pooler_output, model(changed).pooler_output)


def test_attention_weights_and_hidden_states(tiny_config):
    model = ViTMNISTForImageClassification(tiny_config).eval()
    model.set_attn_implementation("eager")
    out = model(_pixels(batch=2), output_attentions=True, output_hidden_states=True)
    tokens = 1 + tiny_config.num_patches
    assert len(out.attentions) == tiny_config.num_hidden_layers
    for weights in out.attentions:
        assert weights.shape == (2, tiny_config.num_attention_heads, tokens, tokens)
        torch.testing.assert_close(weights.sum(-1), torch.ones(2, tiny_config.num_attention_heads, tokens))
    assert len(out.hidden_states) == tiny_config.num_hidden_layers + 1  # embeddings, then each layer
    assert all(h.shape == (2, tokens, tiny_config.hidden_size) for h in out.hidden_states)


def test_gradient_checkpointing_gives_the_same_gradients(tiny_config):
    torch.manual_seed(0)
    plain = ViTMNISTForImageClassification(tiny_config).train()
    checkpointed = copy.deepcopy(plain)
    checkpointed.gradient_checkpointing_enable()
    assert checkpointed.is_gradient_checkpointing
    pixels, labels = _pixels(batch=4), torch.tensor([0, 1, 2, 3])
    plain(pixels, labels=labels).loss.backward()
    checkpointed(pixels, labels=labels).loss.backward()
    for (name, a), (_, b) in zip(plain.named_parameters(), checkpointed.named_parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, msg=name)


def test_interpolate_pos_encoding(tiny_config):
    model = ViTMNISTForImageClassification(tiny_config).eval()
    pixels = _pixels()
    same = model(pixels, interpolate_pos_encoding=True).logits
    torch.testing.assert_close(same, model(pixels).logits)  # native size: positions unchanged
    big = model(_pixels(size=56), interpolate_pos_encoding=True, output_hidden_states=True)
    assert big.logits.shape == (3, 10)
    assert big.hidden_states[-1].shape[1] == 1 + (56 // tiny_config.patch_size) ** 2
    with pytest.raises(ValueError, match="interpolate_pos_encoding"):
        model(_pixels(size=56))


def test_wrong_channel_count_is_a_clear_error(tiny_config):
    model = ViTMNISTForImageClassification(tiny_config).eval()
    with pytest.raises(ValueError, match="ViTMNISTImageProcessor"):
        model(torch.randn(2, 3, 28, 28))


def test_initialisation(tiny_config):
    model = ViTMNISTModel(tiny_config)
    std = tiny_config.initializer_range
    for parameter in (model.embeddings.cls_token, model.embeddings.position_embeddings):
        assert parameter.abs().max() <= 2 * std + 1e-6  # truncated at two standard deviations
        assert 0.5 * std < parameter.std() < 1.5 * std


def test_conv_stem_gives_the_same_tokens_and_round_trips(tmp_path):
    """The hybrid stem: two stride-2 convolutions turn 28x28 into the 7x7 grid that 4x4 patches give; its
    BatchNorm running statistics are saved and loaded with the weights."""
    config = make_tiny_config(stem="conv", patch_size=4)
    model = ViTMNISTForImageClassification(config)
    model.train()(_pixels(batch=8))  # one training-mode pass moves BatchNorm's running statistics off their start
    model.eval()
    out = model(_pixels(), output_hidden_states=True)
    assert out.hidden_states[0].shape == (3, 1 + 7 * 7, config.hidden_size)
    model.save_pretrained(tmp_path)
    loaded = ViTMNISTForImageClassification.from_pretrained(tmp_path).eval()
    assert loaded.config.stem == "conv"
    assert torch.equal(loaded(_pixels()).logits, out.logits)
