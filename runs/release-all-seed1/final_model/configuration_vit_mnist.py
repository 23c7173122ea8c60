"""Configuration of the Vision Transformer for 28x28 handwritten digits."""

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig

# Where each Auto class finds our code inside a saved checkpoint, for loading with
# `trust_remote_code=True` where this package is not installed. `save_pretrained` records only the
# class being saved, and the image processor's entry must live here rather than in
# preprocessor_config.json (see image_processing_vit_mnist.py), so every config carries the full map.
AUTO_MAP = {
    "AutoConfig": "configuration_vit_mnist.ViTMNISTConfig",
    "AutoModel": "modeling_vit_mnist.ViTMNISTModel",
    "AutoModelForImageClassification": "modeling_vit_mnist.ViTMNISTForImageClassification",
    "AutoImageProcessor": "image_processing_vit_mnist.ViTMNISTImageProcessor",
}

POOLING_CHOICES = ("cls", "mean")
STEM_CHOICES = ("patchify", "conv")


@strict
class ViTMNISTConfig(PreTrainedConfig):
    r"""
    Configuration of [`ViTMNISTModel`] and [`ViTMNISTForImageClassification`]: the ViT of Dosovitskiy et al.
    (2021), sized for MNIST. The defaults are the released model.

    Example:

    ```python
    >>> from hf_vit_mnist import ViTMNISTConfig, ViTMNISTForImageClassification
    >>> config = ViTMNISTConfig(hidden_size=64, num_hidden_layers=6)
    >>> model = ViTMNISTForImageClassification(config)
    ```
    """

    model_type = "vit_mnist"

    image_size: int = 28  # digits are 28x28 pixels
    patch_size: int = 4  # 4x4 patches -> a 7x7 grid of 49 tokens
    num_channels: int = 1  # grayscale
    hidden_size: int = 64  # width D of every token
    num_hidden_layers: int = 6  # encoder depth
    num_attention_heads: int = 4  # head size D / heads = 16
    intermediate_size: int = 128  # MLP width, 2x D
    hidden_act: str = "gelu"
    hidden_dropout_prob: float | int = 0.0  # dropout on embeddings, attention output and MLP output
    attention_probs_dropout_prob: float | int = 0.0  # dropout on the attention weights
    layer_norm_eps: float = 1e-6
    qkv_bias: bool = True
    initializer_range: float = 0.02  # std of the truncated normal for weights, [CLS] and positions
    pooling: str = "cls"  # what the classifier reads: "cls" (the paper) or "mean" over patch tokens
    # How pixels become tokens: "patchify" (the paper's ViT: a linear projection of each patch) or "conv" (the
    # paper's hybrid: 1x1 patches of a small CNN's feature map, the stem of Xiao et al. 2021). Same N tokens.
    stem: str = "patchify"

    def __post_init__(self, **kwargs):
        self._validate()
        kwargs.setdefault("auto_map", dict(AUTO_MAP))
        if self.id2label is None and "num_labels" not in kwargs:
            # Digits: so that pipelines answer "7", not "LABEL_7".
            self.id2label = {i: str(i) for i in range(10)}
        super().__post_init__(**kwargs)
        self.label2id = {label: i for i, label in self.id2label.items()}

    def _validate(self):
        sizes = ("image_size", "patch_size", "num_channels", "hidden_size", "num_hidden_layers",
                 "num_attention_heads", "intermediate_size")
        for name in sizes:
            if getattr(self, name) <= 0:
                raise ValueError(f"ViTMNISTConfig.{name} must be a positive integer, got {getattr(self, name)}.")
        if self.image_size % self.patch_size:
            raise ValueError(
                f"ViTMNISTConfig.patch_size ({self.patch_size}) must divide image_size ({self.image_size}) so the "
                f"image tiles into whole patches: for 28x28 digits use 1, 2, 4, 7, 14 or 28."
            )
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"ViTMNISTConfig.hidden_size ({self.hidden_size}) must be divisible by num_attention_heads "
                f"({self.num_attention_heads}): each head gets hidden_size / num_attention_heads dimensions."
            )
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"ViTMNISTConfig.{name} must be in [0, 1), got {getattr(self, name)}.")
        if self.layer_norm_eps <= 0:
            raise ValueError(f"ViTMNISTConfig.layer_norm_eps must be positive, got {self.layer_norm_eps}.")
        if self.pooling not in POOLING_CHOICES:
            raise ValueError(f"ViTMNISTConfig.pooling must be one of {POOLING_CHOICES}, got {self.pooling!r}.")
        if self.stem not in STEM_CHOICES:
            raise ValueError(f"ViTMNISTConfig.stem must be one of {STEM_CHOICES}, got {self.stem!r}.")
        if self.stem == "conv" and self.patch_size & (self.patch_size - 1):
            raise ValueError(
                f"ViTMNISTConfig.stem='conv' halves the image once per stride-2 convolution, so patch_size must be a "
                f"power of two (1, 2, 4, ...), got {self.patch_size}. Use stem='patchify' for other patch sizes."
            )

    @classmethod
    def from_dict(cls, config_dict: dict, **kwargs):
        # transformers only warns when a config of another model type is loaded; the weights would then fail to
        # load with a long report, or load into the wrong places. Say what the checkpoint is instead.
        model_type = config_dict.get("model_type")
        if model_type not in (None, cls.model_type):
            raise ValueError(
                f"This config.json has model_type '{model_type}', not '{cls.model_type}': the checkpoint was not "
                "saved by hf-vit-mnist. Load it with transformers' Auto classes, or train a ViTMNIST model."
            )
        return super().from_dict(config_dict, **kwargs)

    @property
    def num_patches(self) -> int:
        """Number of patch tokens N: (image_size / patch_size) ** 2."""
        return (self.image_size // self.patch_size) ** 2


__all__ = ["ViTMNISTConfig"]
