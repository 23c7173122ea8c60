"""Training throughput through `transformers.Trainer` as scripts/train.py drives it (augmenting collator, AdamW,
cosine schedule, label smoothing, gradient clipping, our callbacks), for our model and for transformers' own
`ViTForImageClassification` with the identical architecture and weights. The wall clock of `trainer.train()`
counts everything, compile time included, so it is the speed a user sees over a whole (short) run.

    python scripts/benchmark_trainer.py                          # 200 steps, eager and compiled, 2 repeats
    python scripts/benchmark_trainer.py --steps 400 --modes eager --repeats 3

Variants alternate (ours, theirs, ours, ...). Writes benchmarks/trainer.json and benchmarks/trainer.md.
"""

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from benchmark import TRAIN_BATCH as BATCH
from benchmark import build_pair  # ours and transformers' ViT, same architecture and weights
from train import ViTMNISTTrainingArguments  # train.py's defaults: optimizer, schedule, label smoothing, clipping
from transformers import Trainer

from hf_vit_mnist.data import DigitCollator, DigitTensors, load_bundled_mnist
from hf_vit_mnist.image_processing_vit_mnist import MNIST_MEAN, MNIST_STD
from hf_vit_mnist.training import ElapsedTimeCallback, NonFiniteWeightsCallback, cpu_name


def trainer_images_per_second(model, images: DigitTensors, steps: int, compiled: bool) -> float:
    with tempfile.TemporaryDirectory() as output_dir:
        args = ViTMNISTTrainingArguments(
            output_dir=output_dir, max_steps=steps, per_device_train_batch_size=BATCH, eval_strategy="no",
            save_strategy="no", load_best_model_at_end=False, report_to=[], disable_tqdm=True,
            torch_compile=compiled)
        trainer = Trainer(model=model, args=args, train_dataset=images,
                          data_collator=DigitCollator(MNIST_MEAN, MNIST_STD, augment=True),
                          callbacks=[ElapsedTimeCallback(), NonFiniteWeightsCallback()])
        start = time.perf_counter()
        trainer.train()
        return steps * BATCH / (time.perf_counter() - start)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--modes", nargs="+", default=["eager", "compiled"], choices=["eager", "compiled"])
    parser.add_argument("--output_dir", default="benchmarks")
    args = parser.parse_args(argv)
    images = DigitTensors(load_bundled_mnist()["train"].select(range(args.steps * BATCH)))
    runs = {f"{kind} {mode}": [] for mode in args.modes for kind in ("ours", "transformers")}
    for _ in range(args.repeats):
        for name in runs:
            kind, mode = name.split()
            model = build_pair("release")[kind]  # fresh weights each run, identical for both kinds
            runs[name].append(trainer_images_per_second(model, images, args.steps, mode == "compiled"))
    results = {"machine": {"cpu": cpu_name(), "threads": torch.get_num_threads(), "torch": torch.__version__},
               "steps": args.steps, "batch": BATCH,
               "images_per_second": {name: {"median": statistics.median(v), "min": min(v), "max": max(v)}
                                     for name, v in runs.items()}}
    baseline = results["images_per_second"]["transformers eager"]["median"]
    lines = [f"Trainer, {args.steps} steps of batch {BATCH}, whole `trainer.train()` wall clock (compile included); "
             f"{results['machine']['cpu']}, {results['machine']['threads']} threads, torch {torch.__version__}.", "",
             "| variant | img/s median (range) | vs transformers eager |", "| --- | --- | --- |"]
    for name, value in results["images_per_second"].items():
        lines.append(f"| {name} | {value['median']:.0f} ({value['min']:.0f}-{value['max']:.0f}) | "
                     f"{value['median'] / baseline:.2f}x |")
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "trainer.json").write_text(json.dumps(results, indent=2) + "\n")
    (output_dir / "trainer.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return results


if __name__ == "__main__":
    main()
