"""Export a trained checkpoint to ONNX (dynamic batch axis), check it against PyTorch on real MNIST digits, and
time it with onnxruntime against eager PyTorch.

    pip install -e ".[onnx]"
    python scripts/export_onnx.py release/vit-mnist             # -> release/vit-mnist/onnx/model.onnx (+ .json)
    python scripts/export_onnx.py runs/quick/final_model --output exported/model.onnx --repeats 500

The graph takes `pixel_values` (B, 1, 28, 28), already processed (ViTMNISTImageProcessor), and returns `logits`
(B, num_labels). `onnx/model.onnx` is where the Hub's ONNX runtimes (Optimum, transformers.js) look for it.
"""

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from hf_vit_mnist import ViTMNISTForImageClassification, ViTMNISTImageProcessor
from hf_vit_mnist.data import BUNDLED_MNIST_DIR, IDX_FILES, MNIST_MD5, read_idx

TOLERANCE = 1e-4  # max abs logit difference accepted between onnxruntime and PyTorch


class LogitsOnly(torch.nn.Module):
    """The classifier with a plain tensor in and out, which is what an ONNX graph holds."""

    def __init__(self, model: ViTMNISTForImageClassification):
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=pixel_values).logits


def export(model: ViTMNISTForImageClassification, output: Path) -> Path:
    output.parent.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(2, model.config.num_channels, model.config.image_size, model.config.image_size)
    torch.onnx.export(LogitsOnly(model).eval(), (example,), str(output), input_names=["pixel_values"],
                      output_names=["logits"], dynamic_shapes={"pixel_values": {0: torch.export.Dim("batch")}},
                      dynamo=True, external_data=False)  # one file: the weights are small
    return output


def session(path: Path):
    try:
        import onnxruntime
    except ImportError:
        raise SystemExit('onnxruntime is not installed: pip install -e ".[onnx]"') from None
    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def max_logit_difference(model, onnx_session, pixel_values: torch.Tensor) -> float:
    with torch.no_grad():
        expected = model(pixel_values=pixel_values).logits.numpy()
    got = onnx_session.run(None, {"pixel_values": pixel_values.numpy()})[0]
    return float(np.abs(got - expected).max())


def median_seconds(function, repeats: int) -> float:
    function()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def test_digits(count: int) -> torch.Tensor:
    images = read_idx(BUNDLED_MNIST_DIR / f"{IDX_FILES['test'][0]}.gz", MNIST_MD5[IDX_FILES["test"][0]])[:count]
    return ViTMNISTImageProcessor()(list(images), return_tensors="pt").pixel_values


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="A checkpoint folder (or Hub id) of ViTMNISTForImageClassification.")
    parser.add_argument("--output", type=Path, help="Default: <model>/onnx/model.onnx")
    parser.add_argument("--repeats", type=int, default=200, help="Timed runs per measurement (median reported).")
    args = parser.parse_args(argv)
    model = ViTMNISTForImageClassification.from_pretrained(args.model).eval()
    output = args.output or Path(args.model) / "onnx" / "model.onnx"
    export(model, output)
    onnx_session = session(output)

    digits = test_digits(256)
    report = {"model": str(args.model), "onnx": str(output), "torch": torch.__version__,
              "threads": torch.get_num_threads(),
              "max_abs_logit_difference": {f"batch_{n}": max_logit_difference(model, onnx_session, digits[:n])
                                           for n in (1, 7, 256)}}
    worst = max(report["max_abs_logit_difference"].values())
    if worst > TOLERANCE:
        raise SystemExit(f"ONNX logits differ from PyTorch by {worst:.2e} (> {TOLERANCE:g}): do not use {output}.")
    one, batch = digits[:1], digits
    with torch.no_grad():
        report["latency_one_image_ms"] = {
            "pytorch_eager": 1e3 * median_seconds(lambda: model(pixel_values=one), args.repeats),
            "onnxruntime": 1e3 * median_seconds(lambda: onnx_session.run(None, {"pixel_values": one.numpy()}),
                                                args.repeats),
        }
        repeats = max(3, args.repeats // 20)
        report["images_per_second_batch_256"] = {
            "pytorch_eager": 256 / median_seconds(lambda: model(pixel_values=batch), repeats),
            "onnxruntime": 256 / median_seconds(lambda: onnx_session.run(None, {"pixel_values": batch.numpy()}),
                                                repeats),
        }
    output.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
