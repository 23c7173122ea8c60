import json

import numpy as np
import PIL.Image
import pytest
import torch
from conftest import photo_of_digit

from hf_vit_mnist import ViTMNISTImageProcessor
from hf_vit_mnist.image_processing_vit_mnist import MNIST_MEAN, MNIST_STD


@pytest.fixture(scope="module")
def processor():
    return ViTMNISTImageProcessor()


def _raw_normalised(images: np.ndarray) -> torch.Tensor:
    return ((torch.from_numpy(images.copy()).float() / 255 - MNIST_MEAN) / MNIST_STD).unsqueeze(1)


def _ink(processor, image, **kwargs) -> np.ndarray:
    """Processed image on the 0..1 scale (normalisation off), (28, 28)."""
    return processor(image, do_normalize=False, return_tensors="np").pixel_values[0, 0]


def test_mnist_passes_through_unchanged(processor, mnist_test):
    """Every MNIST test digit is already in MNIST's format: the processor must give exactly the raw tensors, so the
    model's accuracy through the processor equals its accuracy on the raw test set."""
    images, _ = mnist_test
    pixel_values = processor(images, return_tensors="pt").pixel_values
    assert pixel_values.shape == (10000, 1, 28, 28) and pixel_values.dtype == torch.float32
    assert torch.equal(pixel_values, _raw_normalised(images))


def _as_every_input_kind(digit: np.ndarray) -> dict:
    """The same MNIST digit as each kind of input users have; each must give the same pixel values."""
    rgba_ink_on_transparent = np.zeros((28, 28, 4), np.uint8)
    rgba_ink_on_transparent[..., :3] = 255  # white ink ...
    rgba_ink_on_transparent[..., 3] = digit  # ... opaque where the digit is
    dark_ink_on_transparent = rgba_ink_on_transparent.copy()
    dark_ink_on_transparent[..., :3] = 0  # black ink: must come out the same, composited onto white then inverted
    palette = PIL.Image.fromarray(digit).convert("P")
    return {
        "PIL L": PIL.Image.fromarray(digit),
        "PIL RGB": PIL.Image.fromarray(digit).convert("RGB"),
        "PIL RGBA light ink on transparent": PIL.Image.fromarray(rgba_ink_on_transparent, mode="RGBA"),
        "PIL RGBA dark ink on transparent": PIL.Image.fromarray(dark_ink_on_transparent, mode="RGBA"),
        "PIL LA": PIL.Image.fromarray(digit).convert("LA"),
        "PIL P": palette,
        "PIL I;16": PIL.Image.fromarray(digit.astype(np.uint16) * 257),
        "PIL I": PIL.Image.fromarray(digit.astype(np.int32)),
        "PIL F": PIL.Image.fromarray(digit.astype(np.float32) / 255),
        "numpy HxW uint8": digit,
        "numpy HxW float 0..1": digit.astype(np.float32) / 255,
        "numpy HxW float64 0..255": digit.astype(np.float64),
        "numpy HxWx1": digit[..., None],
        "numpy HxWx3": np.repeat(digit[..., None], 3, axis=-1),
        "numpy HxWx4 opaque": np.concatenate([np.repeat(digit[..., None], 3, -1), np.full((28, 28, 1), 255, np.uint8)],
                                             axis=-1),
        "numpy uint16": digit.astype(np.uint16) * 257,
        "numpy bool": digit > 127,
        "torch CxHxW float": torch.tensor(digit).float().div(255)[None],
        "torch 3xHxW uint8": torch.tensor(digit)[None].repeat(3, 1, 1),
        "torch HxW uint8": torch.tensor(digit),
    }


def test_every_input_kind_gives_the_same_pixels(processor, mnist_test):
    digit = mnist_test[0][0]
    expected = _raw_normalised(digit[None])[0]
    for kind, image in _as_every_input_kind(digit).items():
        result = processor(image, return_tensors="pt").pixel_values
        assert result.shape == (1, 1, 28, 28), kind
        if kind == "numpy bool":
            assert torch.equal(result[0, 0] > result.min(), torch.from_numpy(digit > 127)), kind  # binarised
        else:
            torch.testing.assert_close(result[0], expected, atol=2e-2, rtol=0, msg=kind)


def test_binary_mode_1_keeps_the_digit(processor, mnist_test):
    digit = mnist_test[0][0]
    binary = PIL.Image.fromarray(digit).convert("1")
    ink = _ink(processor, binary)
    assert np.corrcoef(ink.ravel(), digit.ravel())[0, 1] > 0.8


def test_batches_of_every_layout(processor, mnist_test):
    images = mnist_test[0][:6]
    expected = _raw_normalised(images)
    batches = {
        "numpy (B, H, W)": images,
        "numpy (4, H, W): four images, not one RGBA image": images[:4],
        "numpy (B, H, W, 1)": images[..., None],
        "torch (B, 1, H, W)": torch.from_numpy(images.copy())[:, None],
        "list of PIL": [PIL.Image.fromarray(image) for image in images],
        "list of mixed kinds": [PIL.Image.fromarray(images[0]), images[1], torch.from_numpy(images[2].copy()),
                                images[3], images[4], images[5]],
        "nested list": [[PIL.Image.fromarray(image) for image in images[:3]], list(images[3:])],
    }
    for layout, batch in batches.items():
        result = processor(batch, return_tensors="pt").pixel_values
        count = 4 if layout.startswith("numpy (4") else 6
        assert torch.equal(result, expected[:count]), layout


def test_file_paths(processor, mnist_test, tmp_path):
    digit = mnist_test[0][0]
    path = tmp_path / "digit.png"
    PIL.Image.fromarray(digit).save(path)
    assert torch.equal(processor(str(path), return_tensors="pt").pixel_values, _raw_normalised(digit[None]))


def _center_of_mass(image):
    rows, cols = np.indices(image.shape)
    return (image * rows).sum() / image.sum(), (image * cols).sum() / image.sum()


@pytest.mark.parametrize("index", range(8))
def test_photo_of_dark_digit_comes_out_in_mnist_format(processor, mnist_test, index):
    digit = mnist_test[0][index]
    photo = PIL.Image.fromarray(photo_of_digit(digit, seed=index))
    ink = _ink(processor, photo)
    ring = np.concatenate([ink[0], ink[-1], ink[:, 0], ink[:, -1]])
    assert ring.max() < 0.05, "background must be dark"
    assert ink.max() > 0.9, "ink must be light"
    com_y, com_x = _center_of_mass(ink)
    assert abs(com_y - 14) <= 1 and abs(com_x - 14) <= 1, "centred by mass"
    rows, cols = np.flatnonzero(ink.max(1) > 0.05), np.flatnonzero(ink.max(0) > 0.05)
    assert 18 <= max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1) <= 22, "scaled into the 20x20 box"
    assert np.corrcoef(ink.ravel(), digit.ravel())[0, 1] > 0.6, "still the same digit"


def test_off_centre_and_small_digits_are_recentred_and_scaled(processor, mnist_test):
    digit = mnist_test[0][1]
    small = np.zeros((64, 64), np.uint8)
    small[2:16, 40:54] = np.asarray(PIL.Image.fromarray(digit).resize((14, 14)))
    ink = _ink(processor, small)
    com_y, com_x = _center_of_mass(ink)
    assert abs(com_y - 14) <= 1 and abs(com_x - 14) <= 1
    assert np.corrcoef(ink.ravel(), digit.ravel())[0, 1] > 0.6


def test_each_step_can_be_switched_off_and_is_saved(mnist_test, tmp_path):
    photo = PIL.Image.fromarray(photo_of_digit(mnist_test[0][0]))
    no_invert = ViTMNISTImageProcessor(do_invert=False, do_center_digit=False)
    assert _ink(no_invert, photo)[0, 0] > 0.5, "without inversion the paper stays light"
    no_centering = ViTMNISTImageProcessor(do_center_digit=False)
    plain_resize = _ink(no_centering, photo)
    strokes = plain_resize * (plain_resize > 0.5)
    assert _center_of_mass(strokes)[1] > 17, "without centring the digit stays off to the right"
    with pytest.raises(ValueError, match="do_convert_grayscale"):
        ViTMNISTImageProcessor(do_convert_grayscale=False)(photo)
    raw = ViTMNISTImageProcessor(do_normalize=False, do_rescale=False)
    assert raw(mnist_test[0][0], return_tensors="np").pixel_values.max() == 255

    no_centering.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert saved["do_center_digit"] is False and saved["do_invert"] is True and saved["do_convert_grayscale"] is True
    assert saved["image_mean"] == [MNIST_MEAN] and saved["image_std"] == [MNIST_STD]
    assert ViTMNISTImageProcessor.from_pretrained(tmp_path).do_center_digit is False


def test_blank_images_are_refused_not_classified(processor):
    for value in (0, 128, 255):
        with pytest.raises(ValueError, match="blank: no ink"):
            processor(np.full((50, 40), value, np.uint8))
    frame = processor(np.zeros((28, 28), np.uint8), do_center_digit=False, return_tensors="np").pixel_values
    assert np.allclose(frame, -MNIST_MEAN / MNIST_STD)  # asked for explicitly: the empty frame as it is


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.full((28, 28), np.nan, np.float32), "NaN"),
        (-np.ones((28, 28), np.float32), "negative"),
        (np.zeros((2, 28, 28, 5), np.uint8), "channels"),
        (np.zeros((0, 28, 28), np.uint8), "No images"),
        ([], "No images"),
        (np.zeros((2, 2, 2, 28, 28), np.uint8), "dimensions"),
        (np.full((28, 28), 1e6, np.float32), "out of range"),
        (np.zeros((0, 28), np.uint8), "empty"),
    ],
)
def test_bad_input_is_a_clear_value_error(processor, bad, message):
    with pytest.raises(ValueError, match=message):
        processor(bad)
