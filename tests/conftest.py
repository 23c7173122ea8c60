"""Shared fixtures: tiny configs (fast), real MNIST digits from the bundled files, a saved tiny checkpoint."""

import gzip

import numpy as np
import pytest
import torch
import train  # scripts/train.py (scripts/ is on pytest's pythonpath)

from hf_vit_mnist import ViTMNISTConfig, ViTMNISTForImageClassification, ViTMNISTImageProcessor
from hf_vit_mnist.data import BUNDLED_MNIST_DIR, read_idx


def make_tiny_config(**overrides) -> ViTMNISTConfig:
    values = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, patch_size=7)
    values.update(overrides)
    return ViTMNISTConfig(**values)


@pytest.fixture
def tiny_config() -> ViTMNISTConfig:
    return make_tiny_config()


@pytest.fixture(scope="session")
def mnist_test() -> tuple[np.ndarray, np.ndarray]:
    """The 10,000 real MNIST test digits (uint8, (N, 28, 28)) and their labels."""
    images = read_idx(BUNDLED_MNIST_DIR / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(BUNDLED_MNIST_DIR / "t10k-labels-idx1-ubyte.gz")
    return images, labels


@pytest.fixture(scope="session")
def saved_checkpoint(tmp_path_factory) -> str:
    """A tiny randomly initialised classifier and its processor, saved as train.py saves them."""
    torch.manual_seed(0)
    directory = tmp_path_factory.mktemp("checkpoint") / "vit-mnist-tiny"
    ViTMNISTForImageClassification(make_tiny_config()).save_pretrained(directory)
    ViTMNISTImageProcessor().save_pretrained(directory)
    return str(directory)


def photo_of_digit(digit: np.ndarray, canvas_size=(480, 640), top_left=(40, 330), scale=10, seed=0) -> np.ndarray:
    """A synthetic "photo": the digit as dark ink, enlarged, placed off-centre on a large, noisy, light,
    slightly coloured canvas. Returns RGB uint8 (H, W, 3)."""
    import PIL.Image

    rng = np.random.default_rng(seed)
    side = digit.shape[0] * scale
    ink = np.asarray(PIL.Image.fromarray(255 - digit).resize((side, side), PIL.Image.Resampling.BICUBIC), np.float32)
    paper = np.full(canvas_size, 215.0) + rng.normal(0, 6, canvas_size)
    top, left = top_left
    region = paper[top : top + side, left : left + side]
    paper[top : top + side, left : left + side] = np.minimum(region, ink * 215 / 255 + rng.normal(0, 6, region.shape))
    return np.stack([paper, paper * 0.97, paper * 0.9], axis=-1).clip(0, 255).astype(np.uint8)


def _write_idx(path, array: np.ndarray, magic: int):
    header = magic.to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


@pytest.fixture
def idx_folder(tmp_path, mnist_test):
    """A small IDX folder in MNIST's layout, cut from the real test digits."""
    images, labels = mnist_test
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", images[:300], 2051)
    _write_idx(tmp_path / "train-labels-idx1-ubyte.gz", labels[:300], 2049)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images[300:400], 2051)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", labels[300:400], 2049)
    return tmp_path


TINY = ["--hidden_size", "32", "--num_hidden_layers", "2", "--num_attention_heads", "2", "--intermediate_size", "64",
        "--patch_size", "7", "--learning_rate", "3e-3", "--warmup_steps", "0.1", "--per_device_train_batch_size", "64",
        "--max_train_samples", "3000", "--max_eval_samples", "1000", "--validation_size", "1000",
        "--logging_steps", "10", "--disable_tqdm", "true", "--report_to", "none", "--seed", "7", "--augment", "false"]


def train_tiny(output_dir, *extra) -> dict:
    return train.main([*TINY, "--output_dir", str(output_dir), *extra])


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """A tiny ViT trained for 3 epochs on 3,000 real MNIST digits by scripts/train.py, in-process."""
    output_dir = tmp_path_factory.mktemp("run")
    results = train_tiny(output_dir, "--num_train_epochs", "3")
    return output_dir, results
