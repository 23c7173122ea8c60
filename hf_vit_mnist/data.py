"""Data for training and evaluation: MNIST bundled with the package (the four official IDX files, md5-checked),
any folder of IDX files (e.g. Fashion-MNIST from Debian), or any Hub / local dataset with `image` and `label`
columns. Everything comes out as a `datasets.DatasetDict` with the schema of the Hub's `ylecun/mnist`:
`image` (an `Image` feature) and `label` (a `ClassLabel`).

For training, images are decoded once into a uint8 tensor ([`DigitTensors`]) and whole batches are augmented
with vectorised torch ops in [`DigitCollator`], so data handling stays a small part of a step on 2 cores.
"""

import functools
import gzip
import hashlib
import io
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import datasets.config
import numpy as np
import PIL.Image
import torch
from datasets import ClassLabel, Dataset, DatasetDict, Features, Image, load_dataset, load_from_disk
from datasets.utils.stratify import stratified_shuffle_split_generate_indices

BUNDLED_MNIST_DIR = Path(__file__).parent / "bundled" / "mnist"
IDX_FILES = {  # split -> (images file, labels file), as the official distributions name them
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
MNIST_MD5 = {  # of the uncompressed files, as published with MNIST
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
DIGIT_NAMES = [str(i) for i in range(10)]
# Fashion-MNIST ships no names file; its IDX folder is recognised by the md5 of its test labels (data bytes).
FASHION_MNIST_TEST_LABELS_MD5 = "8dea97a4e78c1bd1b5a6e8efbb870b6e"
FASHION_MNIST_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                       "Ankle boot"]
IDX_MAGIC = {2049: 1, 2051: 3}  # magic number -> number of dimensions (labels: count; images: count, rows, cols)


class DataError(ValueError):
    """The data cannot be used; the message says what is wrong and how to fix it."""


def read_idx(path: str | Path, expected_md5: str | None = None) -> np.ndarray:
    """Reads one IDX file (optionally gzipped) into a uint8 array, checking its header, size and md5."""
    path = Path(path)
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    if expected_md5 is not None and hashlib.md5(raw).hexdigest() != expected_md5:
        raise DataError(
            f"{path} does not match the official file (md5 {hashlib.md5(raw).hexdigest()}, expected {expected_md5}):"
            " it is corrupt or a different data set. Restore it from a fresh copy of the repository."
        )
    if len(raw) < 8:
        raise DataError(f"{path} is too short to be an IDX file ({len(raw)} bytes).")
    magic = int.from_bytes(raw[:4], "big")
    if magic not in IDX_MAGIC:
        raise DataError(f"{path} has IDX magic number {magic}; expected 2049 (labels) or 2051 (uint8 images).")
    ndim = IDX_MAGIC[magic]
    header_size = 4 + 4 * ndim
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if len(raw) != header_size + math.prod(shape):
        raise DataError(
            f"{path}: its header announces shape {shape} ({math.prod(shape)} bytes of data) but it holds "
            f"{len(raw) - header_size}: the file is truncated or corrupt."
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header_size).reshape(shape)


def _find_idx_file(directory: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        if (directory / name).exists():
            return directory / name
    raise DataError(f"{directory} has no {stem}[.gz]: an IDX folder needs the four files of MNIST's layout.")


def _png_image_column(images: np.ndarray) -> list[dict]:
    """uint8 (N, H, W) -> the `Image` feature's storage: PNG bytes, as the Hub's MNIST stores them."""

    def encode(pixels):
        buffer = io.BytesIO()
        PIL.Image.fromarray(pixels).save(buffer, format="PNG", compress_level=1)
        return {"bytes": buffer.getvalue(), "path": None}

    return [encode(pixels) for pixels in images]


def load_idx_folder(
    directory: str | Path, label_names: list[str] | None = None, check_md5: dict | None = None
) -> DatasetDict:
    """A folder of IDX files (MNIST's layout: train-images-idx3-ubyte[.gz], ...) -> DatasetDict(train, test)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"--dataset_dir {directory} is not a folder.")
    md5 = check_md5 or {}
    splits = {}
    for split, (images_stem, labels_stem) in IDX_FILES.items():
        images = read_idx(_find_idx_file(directory, images_stem), md5.get(images_stem))
        labels = read_idx(_find_idx_file(directory, labels_stem), md5.get(labels_stem))
        if images.ndim != 3 or labels.ndim != 1:
            raise DataError(f"{directory}: expected images (N, H, W) and labels (N,), got {images.shape} and "
                            f"{labels.shape}: are the images and labels files swapped?")
        if len(images) != len(labels):
            raise DataError(f"{directory}, {split}: {len(images)} images but {len(labels)} labels.")
        splits[split] = (images, labels)
    if label_names is None:
        test_labels_md5 = hashlib.md5(np.ascontiguousarray(splits["test"][1]).tobytes()).hexdigest()
        num_labels = int(max(labels.max() for _, labels in splits.values())) + 1
        is_fashion = test_labels_md5 == FASHION_MNIST_TEST_LABELS_MD5
        label_names = FASHION_MNIST_NAMES if is_fashion else [str(i) for i in range(num_labels)]
    features = Features({"image": Image(), "label": ClassLabel(names=list(label_names))})
    dataset = DatasetDict(
        {
            split: Dataset.from_dict({"image": _png_image_column(images), "label": labels.astype(np.int64)},
                                     features=features)
            for split, (images, labels) in splits.items()
        }
    )
    validate_dataset(dataset)
    return dataset


@functools.cache
def load_bundled_mnist() -> DatasetDict:
    """MNIST from the copy inside the package: works offline, md5-checked against the official files. Built once
    (PNG-encoding 70,000 images takes ~15 s) and saved in the datasets cache, keyed by the files' checksum, so later
    runs memory-map it in well under a second; shared within a process (datasets ops return new objects)."""
    files_md5 = hashlib.md5(b"".join(path.read_bytes() for path in sorted(BUNDLED_MNIST_DIR.glob("*.gz"))))
    cached = Path(datasets.config.HF_DATASETS_CACHE) / "hf_vit_mnist" / f"mnist-{files_md5.hexdigest()}"
    if cached.is_dir():
        return load_from_disk(str(cached))
    dataset = load_idx_folder(BUNDLED_MNIST_DIR, label_names=DIGIT_NAMES, check_md5=MNIST_MD5)
    _save_to_cache(dataset, cached)
    return dataset


def _save_to_cache(dataset: DatasetDict, target: Path) -> None:
    """Writes a complete copy next to `target`, then renames it into place: concurrent processes (data-parallel
    ranks) never read a half-written cache. An unwritable cache only costs the rebuild next time."""
    partial = target.with_name(f"{target.name}.partial-{os.getpid()}")
    try:
        dataset.save_to_disk(str(partial))
        partial.rename(target)
    except OSError:  # read-only cache, full disk, or another process renamed its copy first
        shutil.rmtree(partial, ignore_errors=True)


def load_image_classification_dataset(
    dataset_name: str | None = None, dataset_dir: str | None = None, dataset_config_name: str | None = None
) -> DatasetDict:
    """The bundled MNIST by default; a Hub dataset by name; or a local folder (IDX files, or anything
    `load_dataset` reads, e.g. an imagefolder)."""
    if dataset_name and dataset_dir:
        raise DataError("Give either --dataset_name (a Hub dataset) or --dataset_dir (a local folder), not both.")
    if not dataset_name and not dataset_dir:
        return load_bundled_mnist()
    if dataset_dir:
        directory = Path(dataset_dir)
        if not directory.exists():
            raise DataError(f"--dataset_dir {directory} does not exist.")
        if directory.is_dir() and any(path.name.startswith("train-images") for path in directory.iterdir()):
            return load_idx_folder(directory)
    source = dataset_name or dataset_dir
    try:
        dataset = load_dataset(source, dataset_config_name)
    except Exception as error:  # offline Hub, unknown name, unreadable files: one clear line, not a traceback
        raise DataError(
            f"Could not load {source!r} with datasets.load_dataset: {type(error).__name__}: {error}. Without "
            "network, use the bundled MNIST (no dataset flag) or --dataset_dir with local files."
        ) from error
    validate_dataset(dataset)
    return dataset


def validate_dataset(dataset: DatasetDict) -> None:
    """Stops with a clear message on data that training cannot use: missing columns or splits, labels that are
    not a ClassLabel or out of range."""
    if "train" not in dataset:
        raise DataError(f"The dataset has splits {list(dataset)}; it needs a 'train' split.")
    for split, part in dataset.items():
        missing = {"image", "label"} - set(part.column_names)
        if missing:
            raise DataError(
                f"Split '{split}' lacks column(s) {sorted(missing)}; it has {part.column_names}. Rename the "
                "columns to 'image' and 'label' (Dataset.rename_column)."
            )
        if not isinstance(part.features["label"], ClassLabel):
            raise DataError(f"Split '{split}': 'label' must be a ClassLabel feature (it names the classes), got "
                            f"{part.features['label']}. Cast it with Dataset.cast_column('label', ClassLabel(...)).")
        labels = column_as_numpy(part, "label")
        num_classes = part.features["label"].num_classes
        bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
        if len(bad):
            raise DataError(
                f"Split '{split}', row {bad[0]}: label {labels[bad[0]]} is outside 0..{num_classes - 1} "
                f"({len(bad)} such rows)."
            )


def split_train_validation(dataset: DatasetDict, validation_size: int, seed: int) -> DatasetDict:
    """Carves a seeded, class-stratified validation split out of train; the test split is never used to choose.
    A dataset with its own validation split keeps it; `validation_size` 0 means no validation split at all (nothing
    is chosen on one), so train is used whole and a dataset's own validation split is left out."""
    if validation_size == 0:
        return DatasetDict({name: split for name, split in dataset.items() if name != "validation"})
    if "validation" in dataset:
        return dataset
    train = dataset["train"]
    num_classes = train.features["label"].num_classes
    if not num_classes <= validation_size <= len(train) - num_classes:
        raise DataError(f"The validation split must hold {num_classes} to {len(train) - num_classes} of the "
                        f"{len(train)} training images (one of each class, and as many left to train on), got "
                        f"{validation_size}. Give another --validation_size, or 0 to train on all of them.")
    # The indices Dataset.train_test_split(test_size=validation_size, seed=seed, stratify_by_column="label") picks,
    # without its row-by-row read of the labels (tens of seconds for MNIST in datasets 5).
    train_indices, validation_indices = next(stratified_shuffle_split_generate_indices(
        column_as_numpy(train, "label"), len(train) - validation_size, validation_size,
        rng=np.random.default_rng(seed)))
    return DatasetDict({"train": train.select(train_indices), "validation": train.select(validation_indices),
                        **{k: v for k, v in dataset.items() if k != "train"}})


def column_as_numpy(split: Dataset, column: str) -> np.ndarray:
    """One column in one batched read: iterating a datasets 5 Column formats each row (~0.3 ms a row)."""
    return np.asarray(split.select_columns(column).with_format("numpy")[:][column])


class DigitTensors(torch.utils.data.Dataset):
    """A split decoded once: images as one uint8 tensor (N, H, W), labels as int64 (N,)."""

    def __init__(self, split: Dataset, image_size: int | None = None):
        decoded = split.select_columns("image")[:]["image"]  # one batched read
        images = [np.asarray(image if image.mode == "L" else image.convert("L")) for image in decoded]
        shapes = {image.shape for image in images}
        if len(shapes) != 1 or (image_size and shapes != {(image_size, image_size)}):
            raise DataError(
                f"All images must be {image_size}x{image_size} grayscale; found sizes {sorted(shapes)[:5]}. "
                "Resize the dataset first or choose a model whose image_size matches."
            )
        self.images = torch.from_numpy(np.stack(images))
        self.labels = torch.from_numpy(column_as_numpy(split, "label").astype(np.int64))

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict:
        return {"pixel_values": self.images[index], "labels": self.labels[index]}


@dataclass
class DigitCollator:
    """Stacks uint8 images into a float batch (B, 1, H, W), optionally warps each image at random (an affine
    transform: rotation, scale, translation, no flips since a flipped 2 is not a 2; optionally an elastic distortion
    on top), and normalises like the processor."""

    mean: float
    std: float
    augment: bool = False
    rotation_degrees: float = 10.0
    scale_range: tuple[float, float] = (0.9, 1.1)
    translate_fraction: float = 0.1  # of the image side
    elastic_alpha: float = 0.0  # elastic distortion strength in pixels (Simard et al. 2003 used 34); 0: none
    elastic_sigma: float = 4.0  # smoothness of the elastic displacement field: Gaussian std in pixels
    erase_probability: float = 0.0  # chance that an image loses a random rectangle (random erasing), after the affine
    erase_area: tuple[float, float] = (0.02, 0.15)  # the rectangle's share of the image
    generator: torch.Generator | None = None  # a CPU generator: random parameters are drawn on the CPU
    device: torch.device | str | None = None  # build the batch here: on a GPU, augmenting there frees the CPU

    def __call__(self, features: list[dict]) -> dict:
        images = torch.stack([f["pixel_values"] for f in features]).unsqueeze(1)  # (B, 1, H, W) uint8
        labels = torch.stack([f["labels"] for f in features])
        if self.device is not None:  # moved as uint8: a quarter of the bytes of float
            images, labels = images.to(self.device), labels.to(self.device)
        images = images.float().div_(255)
        if self.augment:
            images = self.random_warp(images)
            if self.erase_probability > 0:
                images = self.random_erase(images)
        return {"pixel_values": images.sub_(self.mean).div_(self.std), "labels": labels}

    def random_warp(self, images: torch.Tensor) -> torch.Tensor:
        """Resamples each image once through its random affine grid plus, if elastic_alpha > 0, a random elastic
        displacement field."""
        grid = self.random_affine_grid(images)  # (B, H, W, 2): where each output pixel reads the input, in [-1, 1]
        if self.elastic_alpha > 0:
            grid = grid + self.random_elastic_displacement(images)
        return torch.nn.functional.grid_sample(images, grid, mode="bilinear", padding_mode="zeros",
                                               align_corners=False)

    def random_affine_grid(self, images: torch.Tensor) -> torch.Tensor:
        batch = images.shape[0]

        def uniform(low, high):
            return torch.rand(batch, generator=self.generator) * (high - low) + low

        angle = torch.deg2rad(uniform(-self.rotation_degrees, self.rotation_degrees))
        scale = uniform(*self.scale_range)
        # affine_grid maps output coordinates in [-1, 1] to input ones: the inverse transform, so divide by scale.
        shift = 2 * self.translate_fraction
        theta = torch.zeros(batch, 2, 3)
        theta[:, 0, 0], theta[:, 0, 1] = torch.cos(angle) / scale, -torch.sin(angle) / scale
        theta[:, 1, 0], theta[:, 1, 1] = torch.sin(angle) / scale, torch.cos(angle) / scale
        theta[:, 0, 2], theta[:, 1, 2] = uniform(-shift, shift), uniform(-shift, shift)
        return torch.nn.functional.affine_grid(theta.to(images.device), list(images.shape), align_corners=False)

    def random_elastic_displacement(self, images: torch.Tensor) -> torch.Tensor:
        """Simard et al. 2003: uniform noise in [-1, 1] per pixel and axis, smoothed by a Gaussian of std
        elastic_sigma, scaled by elastic_alpha pixels; returned in grid units (2 / side per pixel), (B, H, W, 2)."""
        batch, _, height, width = images.shape
        noise = torch.rand(batch * 2, 1, height, width, generator=self.generator) * 2 - 1
        radius = math.ceil(3 * self.elastic_sigma)
        offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
        kernel = torch.exp(-offsets**2 / (2 * self.elastic_sigma**2))
        kernel = (kernel / kernel.sum()).to(images.device)
        field = noise.to(images.device)
        field = torch.nn.functional.conv2d(field, kernel.view(1, 1, -1, 1), padding=(radius, 0))  # along H
        field = torch.nn.functional.conv2d(field, kernel.view(1, 1, 1, -1), padding=(0, radius))  # along W
        field = field.view(batch, 2, height, width).permute(0, 2, 3, 1) * self.elastic_alpha  # (B, H, W, 2) pixels
        # grid_sample's last axis is (x, y): x spans the width, y the height, each 2 units end to end.
        return field * torch.tensor([2 / width, 2 / height], device=images.device)

    def random_erase(self, images: torch.Tensor) -> torch.Tensor:
        """Sets one random rectangle per chosen image to the background (0), as torchvision's RandomErasing does
        one image at a time; aspect ratios 1/3..3, log-uniform."""
        batch, _, height, width = images.shape
        rand = functools.partial(torch.rand, batch, generator=self.generator)
        low, high = self.erase_area
        area = (rand() * (high - low) + low) * height * width
        aspect = torch.exp((rand() * 2 - 1) * math.log(3))
        box_h = (area * aspect).sqrt().round().clamp(1, height)
        box_w = (area / aspect).sqrt().round().clamp(1, width)
        top = (rand() * (height - box_h + 1)).floor()
        left = (rand() * (width - box_w + 1)).floor()
        chosen = rand() < self.erase_probability
        per_image = (t.to(images.device).view(-1, 1, 1) for t in (top, box_h, left, box_w, chosen))  # (B, 1, 1)
        top, box_h, left, box_w, chosen = per_image
        rows = torch.arange(height, device=images.device).view(1, height, 1)
        cols = torch.arange(width, device=images.device).view(1, 1, width)
        inside = (rows >= top) & (rows < top + box_h) & (cols >= left) & (cols < left + box_w)  # (B, H, W)
        return images.masked_fill((inside & chosen).unsqueeze(1), 0.0)
