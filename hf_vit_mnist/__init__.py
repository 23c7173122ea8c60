"""hf-vit-mnist: the Vision Transformer for handwritten digits, as a first-class transformers model.

Importing the package registers its config, models and image processor with the Auto classes, so
`AutoModelForImageClassification.from_pretrained(path)` and `pipeline("image-classification", model=path)` work
on its checkpoints without `trust_remote_code`. Checkpoints also carry the code for loading without the package.
"""

from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForImageClassification,
)

from .configuration_vit_mnist import ViTMNISTConfig
from .image_processing_vit_mnist import ViTMNISTImageProcessor
from .modeling_vit_mnist import ViTMNISTForImageClassification, ViTMNISTModel, ViTMNISTPreTrainedModel

# Local registration: loading our own checkpoints never asks about remote code.
AutoConfig.register(ViTMNISTConfig.model_type, ViTMNISTConfig, exist_ok=True)
AutoModel.register(ViTMNISTConfig, ViTMNISTModel, exist_ok=True)
AutoModelForImageClassification.register(ViTMNISTConfig, ViTMNISTForImageClassification, exist_ok=True)
AutoImageProcessor.register(ViTMNISTConfig, image_processor_classes={"pil": ViTMNISTImageProcessor}, exist_ok=True)

# Hub registration: save_pretrained copies the code files next to the weights (config.json's auto_map names them).
ViTMNISTConfig.register_for_auto_class()
ViTMNISTModel.register_for_auto_class("AutoModel")
ViTMNISTForImageClassification.register_for_auto_class("AutoModelForImageClassification")
ViTMNISTImageProcessor.register_for_auto_class("AutoImageProcessor")

__all__ = [
    "ViTMNISTConfig",
    "ViTMNISTForImageClassification",
    "ViTMNISTImageProcessor",
    "ViTMNISTModel",
    "ViTMNISTPreTrainedModel",
]
