"""Our ViT as transformers' own `ViTForImageClassification`: the architectures are the same (pre-norm layers,
[CLS] token, learned positions, linear head on [CLS]) and so are the parameter names: the weights load one to one.
Used by scripts/benchmark.py to compare the two on identical weights."""

import torch
from transformers import ViTConfig, ViTForImageClassification

from .modeling_vit_mnist import ViTMNISTForImageClassification


def to_transformers_vit(model: ViTMNISTForImageClassification) -> ViTForImageClassification:
    """A `transformers.ViTForImageClassification` computing the same function as `model`."""
    config = model.config
    if config.pooling != "cls":
        raise ValueError("transformers' ViT classifies from the [CLS] token only; convert a pooling='cls' model.")
    vit_config = ViTConfig(
        image_size=config.image_size, patch_size=config.patch_size, num_channels=config.num_channels,
        hidden_size=config.hidden_size, num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads, intermediate_size=config.intermediate_size,
        hidden_act=config.hidden_act, layer_norm_eps=config.layer_norm_eps, qkv_bias=config.qkv_bias,
        hidden_dropout_prob=config.hidden_dropout_prob,
        attention_probs_dropout_prob=config.attention_probs_dropout_prob,
        id2label=dict(config.id2label), label2id=dict(config.label2id),
    )
    converted = ViTForImageClassification(vit_config)
    converted.load_state_dict(model.state_dict(), strict=True)
    converted.set_attn_implementation(model.config._attn_implementation or "sdpa")
    return converted.to(dtype=next(model.parameters()).dtype).train(model.training).requires_grad_(True)


@torch.no_grad()
def max_logit_difference(a, b, pixel_values: torch.Tensor) -> float:
    return (a(pixel_values).logits - b(pixel_values).logits).abs().max().item()
