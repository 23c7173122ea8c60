import gzip
import shutil

import numpy as np
import pytest
import torch
from datasets import ClassLabel, DatasetDict, Features, Image, load_from_disk

from hf_vit_mnist.data import (
    BUNDLED_MNIST_DIR,
    DIGIT_NAMES,
    MNIST_MD5,
    DataError,
    DigitCollator,
    DigitTensors,
    _save_to_cache,
    load_bundled_mnist,
    load_idx_folder,
    read_idx,
    split_train_validation,
    validate_dataset,
)

HUB_MNIST_FEATURES = Features({"image": Image(), "label": ClassLabel(names=DIGIT_NAMES)})  # ylecun/mnist's schema


def test_bundled_files_match_the_official_md5():
    for stem, md5 in MNIST_MD5.items():
        assert read_idx(BUNDLED_MNIST_DIR / f"{stem}.gz", md5).dtype == np.uint8


@pytest.mark.slow
def test_bundled_mnist_has_the_hub_schema():
    dataset = load_bundled_mnist()
    assert {name: len(split) for name, split in dataset.items()} == {"train": 60000, "test": 10000}
    assert dataset["train"].features == HUB_MNIST_FEATURES
    image = dataset["test"][0]["image"]
    assert image.mode == "L" and image.size == (28, 28)


def test_idx_folder_has_the_hub_schema_and_the_same_pixels(idx_folder, mnist_test):
    dataset = load_idx_folder(idx_folder)
    assert dataset["train"].features == HUB_MNIST_FEATURES
    assert len(dataset["train"]) == 300 and len(dataset["test"]) == 100
    tensors = DigitTensors(dataset["test"])
    assert torch.equal(tensors.images, torch.from_numpy(mnist_test[0][300:400].copy()))
    assert torch.equal(tensors.labels, torch.from_numpy(mnist_test[1][300:400].astype(np.int64)))


def test_cache_is_written_whole_and_a_second_writer_leaves_nothing_behind(idx_folder, tmp_path):
    dataset = load_idx_folder(idx_folder)
    target = tmp_path / "cache" / "mnist-test"
    _save_to_cache(dataset, target)
    _save_to_cache(dataset, target)  # as a second data-parallel rank would: the first copy wins
    assert [path.name for path in target.parent.iterdir()] == ["mnist-test"]
    cached = load_from_disk(str(target))
    assert cached["train"].features == HUB_MNIST_FEATURES
    assert torch.equal(DigitTensors(cached["test"]).images, DigitTensors(dataset["test"]).images)


def test_md5_mismatch_is_reported(tmp_path):
    for path in BUNDLED_MNIST_DIR.glob("*.gz"):
        shutil.copy(path, tmp_path / path.name)
    raw = bytearray(gzip.decompress((tmp_path / "t10k-labels-idx1-ubyte.gz").read_bytes()))
    raw[100] = (raw[100] + 1) % 10
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz does not match the official file"):
        load_idx_folder(tmp_path, check_md5=MNIST_MD5)


def test_corrupt_headers_are_reported(idx_folder):
    (idx_folder / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x05" + b"\x00" * 20))
    with pytest.raises(DataError, match="magic number"):
        load_idx_folder(idx_folder)
    truncated = gzip.decompress((idx_folder / "train-images-idx3-ubyte.gz").read_bytes())[:-10]
    (idx_folder / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(truncated))
    with pytest.raises(DataError, match="truncated"):
        load_idx_folder(idx_folder)


def test_missing_file_is_reported(idx_folder):
    (idx_folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte"):
        load_idx_folder(idx_folder)


def test_bad_datasets_are_stopped_before_training(idx_folder):
    dataset = load_idx_folder(idx_folder)
    with pytest.raises(DataError, match=r"lacks column\(s\) \['label'\]"):
        validate_dataset(dataset.rename_column("label", "digit"))
    out_of_range = dataset["test"].cast_column("label", ClassLabel(names=DIGIT_NAMES[:5]))
    with pytest.raises(DataError, match=r"Split 'test', row \d+: label \d is outside 0..4"):
        validate_dataset({"train": dataset["train"], "test": out_of_range})
    with pytest.raises(DataError, match="'train' split"):
        validate_dataset({"test": dataset["test"]})


def test_wrong_image_size_is_reported(idx_folder):
    dataset = load_idx_folder(idx_folder)
    with pytest.raises(DataError, match="32x32"):
        DigitTensors(dataset["test"], image_size=32)


def test_validation_split_is_seeded_stratified_and_disjoint(idx_folder):
    dataset = load_idx_folder(idx_folder)
    first = split_train_validation(dataset, validation_size=50, seed=3)
    again = split_train_validation(dataset, validation_size=50, seed=3)
    assert len(first["train"]) == 250 and len(first["validation"]) == 50 and len(first["test"]) == 100
    assert first["validation"]["label"] == again["validation"]["label"]
    expected = np.bincount(dataset["train"]["label"][:], minlength=10) * 50 / 300  # each class in proportion
    assert np.all(np.abs(np.bincount(first["validation"]["label"][:], minlength=10) - expected) <= 1)
    train_pixels = {bytes(np.asarray(image)) for image in first["train"]["image"]}
    assert not any(bytes(np.asarray(image)) in train_pixels for image in first["validation"]["image"])


def test_validation_size_zero_trains_on_all_of_train_and_a_size_out_of_range_is_refused(idx_folder):
    dataset = load_idx_folder(idx_folder)
    whole = split_train_validation(dataset, validation_size=0, seed=3)
    assert set(whole) == {"train", "test"} and len(whole["train"]) == 300
    with_own = DatasetDict({**dataset, "validation": dataset["test"]})  # a Hub dataset with its own split
    assert set(split_train_validation(with_own, validation_size=0, seed=3)) == {"train", "test"}
    for size in (5, 295):  # fewer images than classes; fewer than one of each class left to train on
        with pytest.raises(DataError, match=f"must hold 10 to 290 of the 300 training images .* got {size}"):
            split_train_validation(dataset, validation_size=size, seed=3)


def test_fashion_mnist_gets_its_class_names():
    fashion = "/usr/share/datasets/fashion-mnist"
    if not shutil.os.path.isdir(fashion):
        pytest.skip("apt-get install dataset-fashion-mnist")
    names = load_idx_folder(fashion)["test"].features["label"].names
    assert names[0] == "T-shirt/top" and names[9] == "Ankle boot"


def test_collator_normalises_like_the_processor(mnist_test):
    from hf_vit_mnist import ViTMNISTImageProcessor

    images, labels = mnist_test
    features = [{"pixel_values": torch.from_numpy(images[i].copy()), "labels": torch.tensor(int(labels[i]))}
                for i in range(8)]
    processor = ViTMNISTImageProcessor()
    batch = DigitCollator(processor.image_mean[0], processor.image_std[0])(features)
    torch.testing.assert_close(batch["pixel_values"], processor(images[:8], return_tensors="pt").pixel_values)
    assert batch["labels"].tolist() == labels[:8].tolist()


def test_augmentation_keeps_labels_shapes_and_ink(mnist_test):
    images, labels = mnist_test
    features = [{"pixel_values": torch.from_numpy(images[i].copy()), "labels": torch.tensor(int(labels[i]))}
                for i in range(64)]
    plain = DigitCollator(0.0, 1.0)(features)
    augmented = DigitCollator(0.0, 1.0, augment=True, generator=torch.Generator().manual_seed(0))(features)
    assert augmented["pixel_values"].shape == plain["pixel_values"].shape == (64, 1, 28, 28)
    assert torch.equal(augmented["labels"], plain["labels"])
    assert not torch.allclose(augmented["pixel_values"], plain["pixel_values"])
    ink_ratio = augmented["pixel_values"].sum((1, 2, 3)) / plain["pixel_values"].sum((1, 2, 3))
    assert ((ink_ratio > 0.6) & (ink_ratio < 1.4)).all(), "a small affine change keeps the digit in the frame"
    correlation = torch.nn.functional.cosine_similarity(augmented["pixel_values"].flatten(1),
                                                        plain["pixel_values"].flatten(1))
    assert correlation.mean() > 0.5
    identity = DigitCollator(0.0, 1.0, augment=True, rotation_degrees=0, scale_range=(1, 1), translate_fraction=0)
    torch.testing.assert_close(identity(features)["pixel_values"], plain["pixel_values"], atol=1e-5, rtol=0)


def test_elastic_distortion_bends_digits_with_a_smooth_field_of_the_asked_strength(mnist_test):
    images, labels = mnist_test
    features = [{"pixel_values": torch.from_numpy(images[i].copy()), "labels": torch.tensor(int(labels[i]))}
                for i in range(64)]
    no_affine = dict(augment=True, rotation_degrees=0, scale_range=(1, 1), translate_fraction=0)
    plain = DigitCollator(0.0, 1.0)(features)["pixel_values"]
    bent = DigitCollator(0.0, 1.0, **no_affine, elastic_alpha=34, generator=torch.Generator().manual_seed(0))(features)
    assert bent["labels"].tolist() == labels[:64].tolist() and bent["pixel_values"].shape == plain.shape
    ink_ratio = bent["pixel_values"].sum((1, 2, 3)) / plain.sum((1, 2, 3))
    assert ((ink_ratio > 0.6) & (ink_ratio < 1.7)).all(), "strokes bend, thin or thicken, but the digit stays"
    similarity = torch.nn.functional.cosine_similarity(bent["pixel_values"].flatten(1), plain.flatten(1))
    assert 0.5 < similarity.mean() < 0.98

    def field_in_pixels(alpha):
        collator = DigitCollator(0.0, 1.0, elastic_alpha=alpha, generator=torch.Generator().manual_seed(0))
        return collator.random_elastic_displacement(torch.zeros(256, 1, 28, 28)) * 14  # grid units -> pixels

    field = field_in_pixels(34)  # (B, H, W, 2)
    torch.testing.assert_close(field_in_pixels(17), field / 2)  # strength is linear in alpha
    magnitude = field.norm(dim=-1).mean()
    assert 0.5 < magnitude < 3.0, "a pixel or two, as in Simard et al. 2003"
    step = (field[:, 1:] - field[:, :-1]).norm(dim=-1).mean()
    assert step < magnitude / 4, "neighbouring pixels move together: a smooth field, not noise"


def test_random_erasing_blanks_one_box_per_chosen_image_only(mnist_test):
    images, labels = mnist_test
    features = [{"pixel_values": torch.full((28, 28), 255, dtype=torch.uint8), "labels": torch.tensor(0)}] * 512
    erased = DigitCollator(0.0, 1.0, augment=True, rotation_degrees=0, scale_range=(1, 1), translate_fraction=0,
                           erase_probability=0.5, generator=torch.Generator().manual_seed(0))(features)
    blank = erased["pixel_values"][:, 0] == 0  # (B, H, W): white images, so 0 only where erased
    hit = blank.flatten(1).any(1)
    assert 0.4 < hit.float().mean() < 0.6
    pixels = blank.flatten(1).sum(1)[hit]
    assert pixels.min() >= 0.005 * 28 * 28 and pixels.max() <= 0.25 * 28 * 28
    rows, cols = blank.any(2), blank.any(1)
    assert torch.equal(pixels, (rows.sum(1) * cols.sum(1))[hit])  # a filled rectangle


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a GPU"))])
def test_collator_builds_the_same_augmented_batch_on_a_given_device(mnist_test, device):
    """train.py builds batches on the GPU when it has one: same random draws (CPU generator), same images."""
    images, labels = mnist_test
    features = [{"pixel_values": torch.from_numpy(images[i].copy()), "labels": torch.tensor(int(labels[i]))}
                for i in range(64)]
    settings = dict(augment=True, erase_probability=0.5, elastic_alpha=34)
    here = DigitCollator(0.1, 0.3, **settings, generator=torch.Generator().manual_seed(0))(features)
    there = DigitCollator(0.1, 0.3, **settings, generator=torch.Generator().manual_seed(0), device=device)(features)
    assert there["pixel_values"].device.type == there["labels"].device.type == device
    torch.testing.assert_close(there["pixel_values"].cpu(), here["pixel_values"], atol=1e-4, rtol=0)
    assert torch.equal(there["labels"].cpu(), here["labels"])
