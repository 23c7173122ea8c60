import json

import pytest

from hf_vit_mnist import ViTMNISTConfig
from hf_vit_mnist.configuration_vit_mnist import AUTO_MAP


def test_defaults_are_for_digits():
    config = ViTMNISTConfig()
    assert config.model_type == "vit_mnist"
    assert (config.image_size, config.num_channels, config.num_labels) == (28, 1, 10)
    assert config.id2label == {i: str(i) for i in range(10)}
    assert config.label2id == {str(i): i for i in range(10)}
    assert config.num_patches == (28 // config.patch_size) ** 2
    assert config.pooling == "cls"


def test_auto_map_is_complete_in_saved_json(tmp_path):
    ViTMNISTConfig().save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["auto_map"] == AUTO_MAP
    assert set(AUTO_MAP) == {"AutoConfig", "AutoModel", "AutoModelForImageClassification", "AutoImageProcessor"}


def test_json_round_trip(tmp_path):
    config = ViTMNISTConfig(hidden_size=48, num_attention_heads=3, pooling="mean", num_labels=3)
    config.save_pretrained(tmp_path)
    loaded = ViTMNISTConfig.from_pretrained(tmp_path)
    assert loaded.to_dict() == config.to_dict()
    assert loaded.id2label == {0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"}


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(patch_size=5), "patch_size"),
        (dict(hidden_size=30, num_attention_heads=4), "hidden_size"),
        (dict(hidden_size=0), "hidden_size"),
        (dict(num_hidden_layers=-1), "num_hidden_layers"),
        (dict(num_attention_heads=0), "num_attention_heads"),
        (dict(intermediate_size=0), "intermediate_size"),
        (dict(image_size=0), "image_size"),
        (dict(patch_size=0), "patch_size"),
        (dict(num_channels=0), "num_channels"),
        (dict(hidden_dropout_prob=1.5), "hidden_dropout_prob"),
        (dict(attention_probs_dropout_prob=-0.1), "attention_probs_dropout_prob"),
        (dict(layer_norm_eps=0.0), "layer_norm_eps"),
        (dict(pooling="max"), "pooling"),
        (dict(stem="resnet"), "stem"),
        (dict(stem="conv", patch_size=7), "power of two"),
    ],
)
def test_invalid_values_raise_value_error_naming_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        ViTMNISTConfig(**kwargs)


def test_a_checkpoint_of_another_model_type_is_refused_clearly(tmp_path):
    from transformers import ViTConfig, ViTForImageClassification

    from hf_vit_mnist import ViTMNISTForImageClassification

    vit = ViTConfig(image_size=28, patch_size=4, num_channels=1, hidden_size=32, num_hidden_layers=1,
                    num_attention_heads=4, intermediate_size=64)
    ViTForImageClassification(vit).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="model_type 'vit', not 'vit_mnist'"):
        ViTMNISTConfig.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match="not saved by hf-vit-mnist"):
        ViTMNISTForImageClassification.from_pretrained(tmp_path)
