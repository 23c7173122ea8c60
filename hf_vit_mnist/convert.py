"""Our ViT as transformers' own `ViTForImageClassification`: the architectures are the same (pre-norm layers,
[CLS] token, learned positions, linear head on [CLS]) and so are the parameter names: the weights load one to one.
Used by scripts/benchmark.py to compare the two on identical weights.

Also converts checkpoints saved before Q, K and V got separate projections (one fused `qkv` weight per layer):

    python -m hf_vit_mnist.convert split-qkv runs/release-seed0/final_model
"""

import argparse
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
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


def split_fused_qkv(checkpoint_dir: str | Path) -> int:
    """Rewrites `model.safetensors` in place: each `attention.qkv` (3D, D) weight, rows laid out [Q; K; V], becomes
    `q_proj`, `k_proj`, `v_proj`, and `attention.proj` becomes `o_proj`. Returns how many layers it split."""
    path = Path(checkpoint_dir) / "model.safetensors"
    with safe_open(path, "pt") as weights:
        metadata = weights.metadata()
    converted, layers = {}, 0
    for name, tensor in load_file(path).items():
        if ".attention.qkv." in name:
            layers += name.endswith(".weight")
            for part, chunk in zip(("q_proj", "k_proj", "v_proj"), tensor.chunk(3, dim=0), strict=True):
                converted[name.replace("qkv", part)] = chunk.contiguous()
        else:
            converted[name.replace(".attention.proj.", ".attention.o_proj.")] = tensor
    if layers:
        save_file(converted, path, metadata=metadata)
    return layers


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Convert an hf-vit-mnist checkpoint in place.")
    parser.add_argument("command", choices=["split-qkv"])
    parser.add_argument("checkpoint_dir", type=Path, help="A folder holding model.safetensors.")
    args = parser.parse_args(argv)
    if not (args.checkpoint_dir / "model.safetensors").is_file():
        raise SystemExit(f"{args.checkpoint_dir} holds no model.safetensors.")
    layers = split_fused_qkv(args.checkpoint_dir)
    print(f"split the fused qkv weights of {layers} layers" if layers else "already in the current format")


if __name__ == "__main__":
    main()
