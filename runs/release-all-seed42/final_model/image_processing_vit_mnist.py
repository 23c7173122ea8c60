"""Image processor: turns what users have (PIL images of any mode, numpy arrays, torch tensors, file paths; one
or a batch) into the model's input, `pixel_values` of shape (B, 1, 28, 28), normalised like MNIST.

MNIST's own format is light ink on a dark background, the ink's bounding box scaled (aspect kept) to fit 20x20
and placed in the 28x28 frame so that its centre of mass sits at the centre. A photo or scan of a dark digit on
light paper is brought into that format step by step, each step switchable by a flag that is saved in
preprocessor_config.json:

    do_convert_grayscale   any mode / channel count -> one channel (transparency composited onto a background
                           that contrasts with the ink)
    do_invert              invert when the background (the image's outer ring) is lighter than the middle grey
    do_center_digit        crop to the ink, scale into the 20x20 box, centre by mass in 28x28; an image that is
                           already in MNIST's format is left untouched, so MNIST itself passes through unchanged;
                           a blank image (no ink at all) is refused with a ValueError
    do_resize              to `size` (28x28), for images that were not centred
    do_rescale, do_normalize   0..255 -> 0..1 -> (x - 0.1307) / 0.3081, MNIST's train mean and std

The image-classification pipeline converts every image to RGB before it reaches the processor; converting to
one channel here undoes that.
"""

import numpy as np
import PIL.Image
import torch
from transformers.image_processing_backends import PilBackend
from transformers.image_processing_utils import BatchFeature
from transformers.image_utils import PILImageResampling, is_valid_image
from transformers.processing_utils import ImagesKwargs

MNIST_MEAN = 0.1307  # train-set pixel mean on the 0..1 scale
MNIST_STD = 0.3081  # train-set pixel std
DIGIT_BOX_FRACTION = 20 / 28  # MNIST fits each digit's bounding box into 20x20 of the 28x28 frame
INK_FLOOR = 0.2  # after background removal, intensities under this fraction of the ink's peak count as paper
EDGE_MARGIN = 0.03  # soft stroke edge around the half-peak ink box, as a fraction of the box's longer side
CHANNEL_COUNTS = (1, 2, 3, 4)  # gray, gray + alpha, RGB, RGBA
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601-2, what PIL's "L" uses


class ViTMNISTImageProcessorKwargs(ImagesKwargs, total=False):
    do_convert_grayscale: bool | None
    do_invert: bool | None
    do_center_digit: bool | None


class ViTMNISTImageProcessor(PilBackend):
    r"""Prepares digit images for [`ViTMNISTForImageClassification`]; see the module docstring for the steps."""

    valid_kwargs = ViTMNISTImageProcessorKwargs
    model_input_names = ["pixel_values"]
    do_convert_rgb = False
    do_convert_grayscale = True
    do_invert = True
    do_center_digit = True
    do_resize = True
    size = {"height": 28, "width": 28}
    resample = PILImageResampling.BILINEAR
    do_rescale = True
    rescale_factor = 1 / 255
    do_normalize = True
    image_mean = [MNIST_MEAN]
    image_std = [MNIST_STD]

    def to_dict(self):
        # Leave out `image_processor_type` and `auto_map`: the image-classification pipeline also asks
        # AutoVideoProcessor, which turns an `AutoImageProcessor` entry found here into a video-processor
        # reference, finds no local code for it, and stops at the "run custom code? [y/N]" prompt. Without them,
        # AutoImageProcessor falls back to config.json, whose auto_map carries our entry (configuration_vit_mnist).
        processor_dict = super().to_dict()
        processor_dict.pop("image_processor_type", None)
        processor_dict.pop("auto_map", None)
        return processor_dict

    def _prepare_images_structure(self, images, expected_ndims: int = 3) -> list:
        """A flat list of single images from one image, a path, a list, or a stacked batch array/tensor."""
        try:
            images = self.fetch_images(images)  # file paths and URLs -> PIL images
        except (OSError, PIL.Image.DecompressionBombError) as error:  # not an image, truncated, or a pixel bomb
            raise ValueError(f"Could not read the image {images!r}: {error}") from None
        if is_valid_image(images):
            images = [images] if _is_single_image(images) else list(images)
            if not images:
                raise ValueError("No images were given: pass at least one image.")
            return images
        if not isinstance(images, (list, tuple)):
            raise ValueError(
                f"Expected an image (PIL image, numpy array, torch tensor or file path) or a list of them, got "
                f"{type(images).__name__}."
            )
        flat = []
        for image in images:
            if isinstance(image, (list, tuple)) or (is_valid_image(image) and not _is_single_image(image)):
                flat.extend(self._prepare_images_structure(image))
            elif is_valid_image(image):
                flat.append(image)
            else:
                raise ValueError(f"Expected an image but got {type(image).__name__} inside the batch.")
        if not flat:
            raise ValueError("No images were given: pass at least one image.")
        return flat

    def process_image(self, image, do_convert_grayscale: bool | None = None, **kwargs) -> np.ndarray:
        """One raw image -> float32 array (1, H, W), 0..255 on a single channel."""
        pixels = _pil_to_numpy(image) if isinstance(image, PIL.Image.Image) else _array_to_hwc(image)
        limit = PIL.Image.MAX_IMAGE_PIXELS  # PIL's decompression-bomb limit (~89 megapixels), None if disabled
        if limit and pixels.shape[0] * pixels.shape[1] > limit:
            raise ValueError(f"The image is {pixels.shape[1]}x{pixels.shape[0]} pixels, over PIL's limit of {limit} "
                             "(PIL.Image.MAX_IMAGE_PIXELS): downscale it first; a digit needs only 28x28.")
        if pixels.shape[-1] != 1 and not do_convert_grayscale:
            raise ValueError(
                f"Got an image with {pixels.shape[-1]} channels but do_convert_grayscale=False: pass single-channel "
                "images or set do_convert_grayscale=True."
            )
        return _to_grayscale(_to_0_255(pixels))[None]

    def resize(self, image: np.ndarray, size, resample=None, **kwargs) -> np.ndarray:
        """(1, H, W) float 0..255 -> (1, size.height, size.width)."""
        resample = PILImageResampling(resample if resample is not None else self.resample)
        return resize_float(image[0], (size.height, size.width), resample)[None]

    def _preprocess(
        self,
        images: list[np.ndarray],
        do_invert: bool,
        do_center_digit: bool,
        do_resize: bool,
        size,
        resample,
        do_rescale: bool,
        rescale_factor: float,
        do_normalize: bool,
        image_mean,
        image_std,
        return_tensors=None,
        **kwargs,
    ):
        processed = []
        for image in images:
            if do_invert and _background_level(image[0]) > 127.5:
                image = 255.0 - image
            if do_center_digit:
                image = center_digit(image[0], (size.height, size.width))[None]
            if do_resize and image.shape[1:] != (size.height, size.width):
                image = self.resize(image, size=size, resample=resample)
            if do_rescale:
                image = self.rescale(image, rescale_factor)
            if do_normalize:
                image = self.normalize(image, image_mean, image_std)
            processed.append(image.astype(np.float32))
        return BatchFeature(data={"pixel_values": processed}, tensor_type=return_tensors)


def _is_single_image(image) -> bool:
    """PIL images and 2-D arrays are one image. A 3-D numpy array is one image if its last axis holds 1-4
    channels (numpy's (H, W, C)), else a stack of grayscale images (B, H, W); a 3-D torch tensor is one image if
    its first axis holds 1-4 channels (torch's (C, H, W)) or its last one does. 4-D arrays are a stack."""
    if isinstance(image, PIL.Image.Image) or image.ndim == 2:
        return True
    if image.ndim == 3:
        channels_first = isinstance(image, torch.Tensor) and image.shape[0] in CHANNEL_COUNTS
        return channels_first or image.shape[-1] in CHANNEL_COUNTS
    if image.ndim == 4:
        return False
    raise ValueError(f"An image array must have 2 (H, W), 3 or 4 (batch) dimensions, got shape {tuple(image.shape)}.")


def _pil_to_numpy(image: PIL.Image.Image) -> np.ndarray:
    """PIL image of any mode -> (H, W, C) array, keeping the alpha channel and the bit depth."""
    if image.mode in ("La", "RGBa"):  # premultiplied alpha (PIL converts "La" to nothing but "LA")
        image = image.convert(image.mode[:-1] + "A")
    if image.mode in ("LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA")
    elif image.mode in ("1", "P"):
        image = image.convert("L")
    elif image.mode not in ("L", "RGB", "RGBA", "I", "F") and not image.mode.startswith("I;16"):
        image = image.convert("RGB")  # CMYK, YCbCr, LAB, HSV, ...
    return _array_to_hwc(np.asarray(image))


def _array_to_hwc(image) -> np.ndarray:
    """numpy array or torch tensor, (H, W), (H, W, C) or (C, H, W) -> (H, W, C) numpy array."""
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu()
        image = (image.float() if image.dtype == torch.bfloat16 else image).numpy()
    if image.ndim == 2:
        return image[..., None]
    channels_first = image.shape[0] in CHANNEL_COUNTS and image.shape[-1] not in CHANNEL_COUNTS
    return np.moveaxis(image, 0, -1) if channels_first else image


def _to_0_255(image: np.ndarray) -> np.ndarray:
    """Any dtype -> float32 on the 0..255 scale. Floats are read as 0..1 if they stay within it, else 0..255."""
    if image.size == 0:
        raise ValueError(f"Got an empty image of shape {image.shape}.")
    if image.dtype == bool:
        return image.astype(np.float32) * 255
    if image.dtype.kind not in "uif":
        raise ValueError(f"Image arrays must hold numbers, got dtype {image.dtype}.")
    if image.dtype.kind == "f" and not np.isfinite(image).all():
        raise ValueError("The image contains NaN or infinite values: pass finite pixel values.")
    low, high = float(image.min()), float(image.max())
    if low < 0:
        raise ValueError(
            f"The image has negative values (min {low:g}): pass raw pixels (0..1 floats or 0..255 / 0..65535 "
            "integers), not already-normalised ones."
        )
    image = image.astype(np.float32)
    if image.dtype.kind == "f" and high <= 1.0:
        return image * 255
    if high <= 255:
        return image
    if high <= 65535:
        return image / 257  # 16-bit
    raise ValueError(f"Pixel values up to {high:g} are out of range: use 0..1, 0..255 or 0..65535.")


def _to_grayscale(image: np.ndarray) -> np.ndarray:
    """(H, W, C) 0..255 -> (H, W). Transparent pixels become a background that contrasts with the opaque ink, so a
    dark digit on a transparent canvas and a light one both survive."""
    channels = image.shape[-1]
    if channels not in CHANNEL_COUNTS:
        raise ValueError(f"Images must have 1, 2, 3 or 4 channels, got {channels} (shape {image.shape}).")
    has_alpha = channels in (2, 4)
    color = image[..., : channels - has_alpha]
    is_gray = color.shape[-1] == 1 or (color == color[..., :1]).all()  # e.g. a gray image the pipeline made RGB
    gray = color[..., 0] if is_gray else color @ LUMA_WEIGHTS
    if not has_alpha:
        return gray
    alpha = image[..., -1] / 255
    if alpha.sum() == 0:  # fully transparent: nothing drawn
        return np.zeros_like(gray)
    ink_is_dark = (gray * alpha).sum() / alpha.sum() < 127.5
    background = 255.0 if ink_is_dark else 0.0
    return alpha * gray + (1 - alpha) * background


def _background_level(image: np.ndarray) -> float:
    """Median of the outer one-pixel ring: the paper (or the dark MNIST background)."""
    ring = np.concatenate([image[0], image[-1], image[1:-1, 0], image[1:-1, -1]])
    return float(np.median(ring))


def _center_of_mass(image: np.ndarray) -> tuple[float, float]:
    total = image.sum()
    rows, cols = np.arange(image.shape[0]), np.arange(image.shape[1])
    return float(image.sum(1) @ rows / total), float(image.sum(0) @ cols / total)


def _ink_bbox(ink: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
    return rows[0], rows[-1] + 1, cols[0], cols[-1] + 1


def _is_mnist_format(image: np.ndarray, box: int) -> bool:
    """Already as MNIST stores digits: frame-sized, ink bbox filling the box, centre of mass within a pixel of the
    centre. (All 10,000 MNIST test digits qualify.)"""
    height, width = image.shape
    if not image.any():
        return False
    top, bottom, left, right = _ink_bbox(image > 0)
    com_y, com_x = _center_of_mass(image)
    return (
        box - 1 <= max(bottom - top, right - left) <= box
        and abs(com_y - height / 2) <= 1
        and abs(com_x - width / 2) <= 1
    )


def resize_float(image: np.ndarray, size: tuple[int, int], resample=PIL.Image.Resampling.BILINEAR) -> np.ndarray:
    """(H, W) float 0..255 -> `size`, through PIL's 32-bit float mode (no rounding to uint8 on the way)."""
    resized = PIL.Image.fromarray(image.astype(np.float32)).resize((size[1], size[0]), resample)
    return np.clip(np.asarray(resized), 0, 255)  # Lanczos and bicubic overshoot a little


def center_digit(image: np.ndarray, size: tuple[int, int] = (28, 28)) -> np.ndarray:
    """Light-on-dark (H, W) 0..255 -> `size` in MNIST's format: background removed, ink cropped, scaled so its
    longer side fills the 20/28 box, placed with its centre of mass at the centre."""
    height, width = size
    box = round(min(size) * DIGIT_BOX_FRACTION)
    if image.shape == size and _is_mnist_format(image, box):
        return image
    background, peak = _background_level(image), float(image.max())
    if peak - background < 1:  # a model shown an empty frame still picks a digit: refuse instead
        raise ValueError(
            "The image is blank: no ink stands out from its background, so there is no digit to classify. Draw "
            "or photograph a digit (or set do_center_digit=False to pass the frame to the model as it is)."
        )
    floor = background + INK_FLOOR * (peak - background)
    ink = np.clip((image - floor) / (peak - floor), 0, 1) * 255  # paper -> 0, strongest ink -> 255
    # The box is found on the strokes' cores (half the peak), which paper texture and noise never reach, then
    # widened by the soft edge that MNIST's anti-aliased strokes have.
    top, bottom, left, right = _ink_bbox(ink > 127.5)
    margin = round(EDGE_MARGIN * max(bottom - top, right - left))
    top, left = max(0, top - margin), max(0, left - margin)
    bottom, right = min(ink.shape[0], bottom + margin), min(ink.shape[1], right + margin)
    crop = ink[top:bottom, left:right]
    scale = box / max(crop.shape)
    new_h, new_w = max(1, round(crop.shape[0] * scale)), max(1, round(crop.shape[1] * scale))
    glyph = resize_float(crop, (new_h, new_w), PIL.Image.Resampling.LANCZOS)
    # Paste so that the glyph's centre of mass lands on the frame's centre; whatever would fall outside is cut.
    com_y, com_x = _center_of_mass(glyph) if glyph.any() else (new_h / 2, new_w / 2)
    top, left = round(height / 2 - com_y), round(width / 2 - com_x)
    canvas = np.zeros(size, dtype=np.float32)
    src_top, src_left = max(0, -top), max(0, -left)
    dst_top, dst_left = max(0, top), max(0, left)
    rows = min(new_h - src_top, height - dst_top)
    cols = min(new_w - src_left, width - dst_left)
    canvas[dst_top : dst_top + rows, dst_left : dst_left + cols] = glyph[
        src_top : src_top + rows, src_left : src_left + cols
    ]
    return canvas


__all__ = ["ViTMNISTImageProcessor"]
