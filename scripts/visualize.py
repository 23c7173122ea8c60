"""Draw what a trained ViT learned, as the ViT paper does (its Figure 7) plus attention maps on digits. Each figure
is a PNG written into the checkpoint folder (so model_card/build.py shows it in the card):

    python scripts/visualize.py runs/quick/final_model                 # all four figures
    python scripts/visualize.py release/vit-mnist --num_digits 8 --output_dir figures/

    patch_embedding_filters.png     principal components of the Conv2d patch filters
    position_embedding_similarity.png   cosine similarity of each position's embedding to all others (7x7 of 7x7)
    cls_attention.png               the [CLS] token's last-layer attention per head, and the rollout over all layers
    mean_attention_distance.png     how far each head looks, by layer
"""

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from transformers import AutoImageProcessor, AutoModelForImageClassification  # noqa: E402

import hf_vit_mnist  # noqa: E402, F401  (registers the Auto classes)
from hf_vit_mnist.data import BUNDLED_MNIST_DIR, read_idx  # noqa: E402
from hf_vit_mnist.visualization import (  # noqa: E402
    attention_rollout,
    mean_attention_distance,
    patch_filter_components,
    position_similarity,
)


def _save(figure, path: Path) -> None:
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    print(path)


def draw_patch_filters(model, path: Path) -> None:
    components = patch_filter_components(model.vit.embeddings.patch_embeddings.projection.weight.detach())
    columns = min(8, len(components))
    rows = -(-len(components) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(columns * 1.1, rows * 1.2), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for index, (axis, component) in enumerate(zip(axes.flat, components, strict=False)):
        axis.imshow(component[0], cmap="RdBu_r")
        axis.set_title(f"PC {index + 1}", fontsize=7)
    figure.suptitle("Patch-embedding filters: principal components")
    _save(figure, path)


def draw_position_similarity(model, path: Path) -> None:
    similarity = position_similarity(model.vit.embeddings.position_embeddings.detach())
    side = similarity.shape[0]
    figure, axes = plt.subplots(side, side, figsize=(side * 0.9, side * 0.9))
    for row in range(side):
        for col in range(side):
            axes[row, col].imshow(similarity[row, col], cmap="viridis", vmin=-1, vmax=1)
            axes[row, col].set_xticks([])
            axes[row, col].set_yticks([])
    figure.suptitle("Position-embedding similarity (each cell: one position vs all)")
    _save(figure, path)


def draw_cls_attention(model, digits: torch.Tensor, pixel_values: torch.Tensor, path: Path) -> None:
    with torch.no_grad():
        attentions = model(pixel_values, output_attentions=True).attentions
    side = model.config.image_size // model.config.patch_size
    last = attentions[-1][:, :, 0, 1:].reshape(len(digits), -1, side, side)  # (B, H, side, side)
    rollout = attention_rollout(attentions)[:, 0, 1:].reshape(len(digits), side, side)
    heads = last.shape[1]
    figure, axes = plt.subplots(len(digits), heads + 2, figsize=((heads + 2) * 1.3, len(digits) * 1.3),
                                squeeze=False)
    extent = (0, digits.shape[-1], digits.shape[-2], 0)
    for row, digit in enumerate(digits):
        maps = [("digit", None), *[(f"head {h + 1}", last[row, h]) for h in range(heads)],
                ("rollout", rollout[row])]
        for axis, (title, attention) in zip(axes[row], maps, strict=True):
            axis.imshow(digit, cmap="gray", extent=extent)
            if attention is not None:
                axis.imshow(attention, cmap="inferno", alpha=0.6, extent=extent, interpolation="nearest")
            axis.set_title(title, fontsize=7)
            axis.axis("off")
    figure.suptitle("[CLS] attention: last layer per head, and rollout over all layers")
    _save(figure, path)


def draw_attention_distance(model, pixel_values: torch.Tensor, path: Path) -> None:
    with torch.no_grad():
        attentions = model(pixel_values, output_attentions=True).attentions
    distance = mean_attention_distance(attentions, model.config.patch_size)  # (layers, heads)
    figure, axis = plt.subplots(figsize=(5, 4))
    for head in range(distance.shape[1]):
        axis.scatter(range(1, distance.shape[0] + 1), distance[:, head], label=f"head {head + 1}", s=20)
    axis.set_xlabel("layer (network depth)")
    axis.set_ylabel("mean attention distance (pixels)")
    axis.set_ylim(0, model.config.image_size)
    axis.legend(fontsize=7)
    axis.set_title("How far each head looks")
    _save(figure, path)


def main(argv=None) -> list[Path]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", help="A checkpoint folder (or Hub id with --output_dir).")
    parser.add_argument("--output_dir", help="Where to write the PNGs (default: the checkpoint folder).")
    parser.add_argument("--num_digits", type=int, default=6, help="Test digits shown in the attention figure.")
    parser.add_argument("--num_distance_images", type=int, default=500, help="Test images averaged for distances.")
    args = parser.parse_args(argv)
    output_dir = Path(args.output_dir or args.model_dir)
    output_dir.mkdir(parents=True, exist_ok=True)

    model = AutoModelForImageClassification.from_pretrained(args.model_dir, attn_implementation="eager").eval()
    processor = AutoImageProcessor.from_pretrained(args.model_dir)
    images = read_idx(BUNDLED_MNIST_DIR / "t10k-images-idx3-ubyte.gz")[: args.num_distance_images]
    pixel_values = processor(images, return_tensors="pt").pixel_values
    images = torch.from_numpy(images.copy())
    paths = [output_dir / name for name in ("patch_embedding_filters.png", "position_embedding_similarity.png",
                                             "cls_attention.png", "mean_attention_distance.png")]
    draw_patch_filters(model, paths[0])
    draw_position_similarity(model, paths[1])
    draw_cls_attention(model, images[: args.num_digits], pixel_values[: args.num_digits], paths[2])
    draw_attention_distance(model, pixel_values, paths[3])
    return paths


if __name__ == "__main__":
    main()
