"""A checkpoint loads with `trust_remote_code=True` in a fresh Python process where `hf_vit_mnist` cannot be
imported, as it would for a Hub user who never installed the package."""

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import PIL.Image
import torch
from conftest import photo_of_digit

import hf_vit_mnist
from hf_vit_mnist import ViTMNISTForImageClassification, ViTMNISTImageProcessor

FRESH_PROCESS = textwrap.dedent(
    """
    import json, sys
    sys.modules["hf_vit_mnist"] = None  # make `import hf_vit_mnist` fail: only the checkpoint's own code is there
    import numpy as np, PIL.Image, torch
    from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoModelForImageClassification, pipeline

    checkpoint, images_file, photo_file = sys.argv[1:]
    images = np.load(images_file)
    config = AutoConfig.from_pretrained(checkpoint, trust_remote_code=True)
    encoder = AutoModel.from_pretrained(checkpoint, trust_remote_code=True).eval()
    classifier = AutoModelForImageClassification.from_pretrained(checkpoint, trust_remote_code=True).eval()
    processor = AutoImageProcessor.from_pretrained(checkpoint, trust_remote_code=True)
    with torch.no_grad():
        pixels = processor(images, return_tensors="pt").pixel_values
        logits = classifier(pixels).logits
        pooled = encoder(pixels).pooler_output
    pipe = pipeline("image-classification", model=checkpoint, trust_remote_code=True)
    loaded = (config, encoder, classifier, processor)
    print(json.dumps({
        "classes": [f"{type(obj).__module__}.{type(obj).__name__}" for obj in loaded],
        "pipeline_classes": [type(pipe.model).__name__, type(pipe.image_processor).__name__],
        "logits": logits.tolist(),
        "pooled": pooled.tolist(),
        "answers": pipe([PIL.Image.fromarray(image) for image in images] + [PIL.Image.open(photo_file)], top_k=10),
    }))
    """
)


def test_fresh_process_loads_checkpoint_through_remote_code(saved_checkpoint, mnist_test, tmp_path):
    images = mnist_test[0][:3]
    np.save(tmp_path / "images.npy", images)
    PIL.Image.fromarray(photo_of_digit(images[0])).save(tmp_path / "photo.png")
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_OFFLINE": "1"}
    run = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS, saved_checkpoint, str(tmp_path / "images.npy"),
         str(tmp_path / "photo.png")],
        capture_output=True, text=True, cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])

    assert all(name.startswith("transformers_modules.") for name in result["classes"]), result["classes"]
    assert [name.rsplit(".", 1)[1] for name in result["classes"]] == [
        "ViTMNISTConfig", "ViTMNISTModel", "ViTMNISTForImageClassification", "ViTMNISTImageProcessor"]
    assert result["pipeline_classes"] == ["ViTMNISTForImageClassification", "ViTMNISTImageProcessor"]

    model = ViTMNISTForImageClassification.from_pretrained(saved_checkpoint).eval()
    with torch.no_grad():
        pixels = ViTMNISTImageProcessor()(images, return_tensors="pt").pixel_values
        out = model(pixels)
        pooled = model.vit(pixels).pooler_output
    torch.testing.assert_close(torch.tensor(result["logits"]), out.logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.tensor(result["pooled"]), pooled, atol=1e-5, rtol=0)
    assert len(result["answers"]) == 4
    for answer, row in zip(result["answers"], out.logits.softmax(-1), strict=False):
        assert {item["label"] for item in answer} == {str(i) for i in range(10)}
        assert answer[0]["label"] == str(int(row.argmax()))


def test_shipped_code_imports_only_torch_transformers_and_their_needs():
    """What runs under trust_remote_code: the three files a checkpoint carries."""
    allowed = {"torch", "transformers", "huggingface_hub", "numpy", "PIL", "collections", "math", "typing"}
    folder = Path(hf_vit_mnist.__file__).parent
    for name in ("configuration_vit_mnist.py", "modeling_vit_mnist.py", "image_processing_vit_mnist.py"):
        tree = ast.parse((folder / name).read_text())
        imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                    for alias in node.names}
        imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                     if isinstance(node, ast.ImportFrom) and node.level == 0}
        assert imported <= allowed, (name, imported - allowed)
