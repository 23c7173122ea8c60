"""ONNX export: the exported graph gives PyTorch's logits for any batch size."""

import export_onnx  # scripts/ is on pytest's pythonpath
import pytest

from hf_vit_mnist import ViTMNISTForImageClassification

pytest.importorskip("onnxruntime", reason='pip install -e ".[onnx]"')


def test_export_matches_pytorch_for_any_batch(saved_checkpoint, tmp_path):
    model = ViTMNISTForImageClassification.from_pretrained(saved_checkpoint).eval()
    path = export_onnx.export(model, tmp_path / "onnx" / "model.onnx")
    onnx_session = export_onnx.session(path)
    digits = export_onnx.test_digits(9)
    for batch in (1, 2, 9):  # exported with an example batch of 2: the batch axis must stay free
        assert export_onnx.max_logit_difference(model, onnx_session, digits[:batch]) < export_onnx.TOLERANCE
    assert [i.name for i in onnx_session.get_inputs()] == ["pixel_values"]
    assert onnx_session.get_outputs()[0].shape[1] == model.config.num_labels
