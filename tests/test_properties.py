"""Property-based tests (hypothesis): whatever a user hands the image processor or the pipeline, the answer is a
valid result of the right shape or a ValueError whose message says what was wrong; never a crash, a hang, or a
silently wrong shape. Examples are derandomized so that CI sees the same ones on every run."""

import io

import numpy as np
import PIL.Image
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from transformers import pipeline

from hf_vit_mnist import ViTMNISTImageProcessor
from hf_vit_mnist.image_processing_vit_mnist import MNIST_MEAN, MNIST_STD

PROPERTY = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
LOWEST, HIGHEST = (0 - MNIST_MEAN) / MNIST_STD, (1 - MNIST_MEAN) / MNIST_STD  # normalised background and full ink
PIL_MODES = ["1", "L", "P", "PA", "LA", "La", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV", "I",
             "I;16", "I;16B", "F"]
NUMPY_DTYPES = [np.bool_, np.uint8, np.int8, np.uint16, np.int16, np.int32, np.uint32, np.int64, np.float16,
                np.float32, np.float64]

processor = ViTMNISTImageProcessor()


def check_valid_or_clear_error(images, expected_count: int):
    """The property itself: a (count, 1, 28, 28) float batch within the normalised pixel range, or a ValueError
    with a sentence in it."""
    try:
        pixel_values = processor(images, return_tensors="np").pixel_values
    except ValueError as error:
        assert len(str(error)) > 25, f"unhelpful message: {error!r}"
        return str(error)
    assert pixel_values.shape == (expected_count, 1, 28, 28)
    assert pixel_values.dtype == np.float32 and np.isfinite(pixel_values).all()
    assert pixel_values.min() >= LOWEST - 1e-4 and pixel_values.max() <= HIGHEST + 1e-4
    return None


sizes = st.one_of(
    st.tuples(st.integers(1, 120), st.integers(1, 120)),
    st.tuples(st.integers(1, 3), st.integers(500, 4000)),  # extreme aspect ratios, both ways
    st.tuples(st.integers(500, 4000), st.integers(1, 3)),
)


@st.composite
def pil_images(draw):
    """Any PIL mode and size; random, constant, or sparse ("a stroke on paper") content."""
    mode, (width, height) = draw(st.sampled_from(PIL_MODES)), draw(sizes)
    raw_size = len(PIL.Image.new(mode, (width, height)).tobytes())
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    content = draw(st.sampled_from(["random", "constant", "sparse"]))
    if content == "constant":
        raw = bytes([draw(st.integers(0, 255))]) * raw_size
    else:
        data = rng.integers(0, 256, raw_size, dtype=np.uint8)
        if content == "sparse":
            data[rng.random(raw_size) < 0.9] = 0
        raw = data.tobytes()
    return PIL.Image.frombytes(mode, (width, height), raw), content


@PROPERTY
@given(pil_images())
def test_any_pil_image(image_and_content):
    image, content = image_and_content
    error = check_valid_or_clear_error(image, expected_count=1)
    if content == "constant" and image.mode not in ("F", "I"):  # one byte repeated: one colour, a blank image
        assert error is not None and "blank" in error


shapes_and_counts = st.one_of(
    st.tuples(st.integers(1, 64), st.integers(1, 64)).map(lambda hw: (hw, 1)),  # (H, W)
    st.tuples(st.integers(5, 64), st.integers(5, 64), st.integers(1, 6)).map(lambda s: (s, 1 if s[2] <= 4 else 0)),
    st.tuples(st.integers(0, 4), st.integers(5, 40), st.integers(5, 40)).map(lambda s: (s, s[0])),  # (B, H, W)
    st.tuples(st.integers(0, 3), st.integers(5, 40), st.integers(5, 40), st.integers(1, 4)).map(lambda s: (s, s[0])),
    st.tuples(st.integers(1, 2), st.integers(1, 3), st.integers(1, 3), st.integers(1, 3), st.integers(1, 3)).map(
        lambda s: (s, 0)),  # 5-D: no meaning
)


@PROPERTY
@given(st.sampled_from(NUMPY_DTYPES).flatmap(lambda dtype: shapes_and_counts.flatmap(
    lambda shape_count: st.tuples(hnp.arrays(dtype, shape_count[0]), st.just(shape_count[1])))))
def test_any_numpy_array(array_and_count):
    array, expected_count = array_and_count
    if array.ndim == 3 and array.shape[-1] not in (1, 2, 3, 4):
        expected_count = array.shape[0]  # (B, H, W): a stack of gray images
    error = check_valid_or_clear_error(array, expected_count=max(expected_count, 1))
    if expected_count == 0 or array.ndim == 5:
        assert error is not None  # nothing to classify, or an array with no image meaning
    elif array.dtype.kind == "f" and not np.isfinite(array).all():
        assert error is not None  # NaN/inf, or another fault found first in an earlier image of the stack


@PROPERTY
@given(st.binary(max_size=2000), st.sampled_from(["PNG", "JPEG", "BMP", "GIF"]), st.integers(1, 2000))
def test_corrupt_truncated_and_non_image_files(tmp_path_factory, garbage, image_format, cut):
    folder = tmp_path_factory.mktemp("files")
    buffer = io.BytesIO()
    PIL.Image.fromarray(np.random.default_rng(cut).integers(0, 256, (40, 30), dtype=np.uint8)).convert("RGB").save(
        buffer, format=image_format)
    for name, content in (("garbage.png", garbage), ("truncated." + image_format.lower(), buffer.getvalue()[:cut])):
        path = folder / name
        path.write_bytes(content)
        check_valid_or_clear_error(str(path), expected_count=1)


def test_decompression_bombs_and_huge_arrays_are_refused_without_allocating(tmp_path):
    bomb = tmp_path / "bomb.png"
    PIL.Image.new("1", (20000, 20000)).save(bomb)  # 400 megapixels in a few kilobytes
    with pytest.raises(ValueError, match="decompression bomb"):
        processor(str(bomb))
    with pytest.raises(ValueError, match="MAX_IMAGE_PIXELS"):
        processor(np.broadcast_to(np.uint8(0), (20000, 20000)))  # a view: 400 MB only if someone copies it


@pytest.fixture(scope="module")
def classifier(saved_checkpoint):
    return pipeline("image-classification", model=saved_checkpoint)


@settings(max_examples=40, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(pil_images())
def test_pipeline_answers_or_explains(classifier, image_and_content):
    image, content = image_and_content
    try:
        predictions = classifier(image, top_k=10)
    except ValueError as error:  # ours, or PIL's own from the pipeline's RGB conversion ("conversion from La ...")
        assert len(str(error)) > 25, f"unhelpful message: {error!r}"
        return
    assert sorted(p["label"] for p in predictions) == [str(d) for d in range(10)]
    assert abs(sum(p["score"] for p in predictions) - 1) < 1e-4


def test_pipeline_refuses_blank_and_unreadable_inputs(classifier, tmp_path):
    for colour in ("white", "black"):
        with pytest.raises(ValueError, match="blank"):
            classifier(PIL.Image.new("RGB", (64, 48), colour))
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(OSError, match="cannot identify image file"):  # transformers' load_image, before us
        classifier(str(tmp_path / "notes.txt"))
