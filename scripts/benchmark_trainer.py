"""Training throughput through `transformers.Trainer` as scripts/train.py drives it (augmenting collator, AdamW,
cosine schedule, label smoothing, gradient clipping, our callbacks), for our model and for transformers' own
`ViTForImageClassification` with the identical architecture and weights. The wall clock of `trainer.train()`
counts everything, compile time included, so it is the speed a user sees over a whole (short) run.

    python scripts/benchmark_trainer.py                          # 200 steps, eager and compiled, 2 repeats
    python scripts/benchmark_trainer.py --steps 400 --modes eager --repeats 3

Variants alternate (ours, theirs, ours, ...). Besides the same-settings comparison, one more arm runs transformers'
ViT with `TrainingArguments`' own defaults (batch 8 for training and evaluation), which is what a user who plugs
that model into `Trainer` gets; evaluation throughput (`trainer.evaluate` on test images) is measured the same way.
Writes benchmarks/trainer.json and benchmarks/trainer.md.
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
from transformers import Trainer, TrainingArguments

from hf_vit_mnist.data import DigitCollator, DigitTensors, load_bundled_mnist
from hf_vit_mnist.image_processing_vit_mnist import MNIST_MEAN, MNIST_STD
from hf_vit_mnist.training import ElapsedTimeCallback, NonFiniteWeightsCallback, cpu_name

DEFAULTS_ARM = "transformers eager (Trainer defaults)"


def make_args(output_dir: str, steps: int, compiled: bool, trainer_defaults: bool) -> TrainingArguments:
    common = dict(output_dir=output_dir, max_steps=steps, eval_strategy="no", save_strategy="no", report_to=[],
                  disable_tqdm=True, torch_compile=compiled)
    if trainer_defaults:  # everything else as TrainingArguments leaves it (batch 8 for training and evaluation)
        return TrainingArguments(**common)
    return ViTMNISTTrainingArguments(**common, per_device_train_batch_size=BATCH, load_best_model_at_end=False)


def trainer_images_per_second(model, train: DigitTensors, test: DigitTensors, steps: int, compiled: bool,
                              trainer_defaults: bool) -> tuple[float, float]:
    """Images per second of `trainer.train()` (whole wall clock) and of `trainer.evaluate()` on `test`."""
    with tempfile.TemporaryDirectory() as output_dir:
        args = make_args(output_dir, steps, compiled, trainer_defaults)
        trainer = Trainer(model=model, args=args, train_dataset=train,
                          data_collator=DigitCollator(MNIST_MEAN, MNIST_STD, augment=True),
                          callbacks=[ElapsedTimeCallback(), NonFiniteWeightsCallback()])
        start = time.perf_counter()
        trainer.train()
        train_speed = steps * args.per_device_train_batch_size / (time.perf_counter() - start)
        trainer.data_collator = DigitCollator(MNIST_MEAN, MNIST_STD)
        start = time.perf_counter()
        trainer.evaluate(test)
        return train_speed, len(test) / (time.perf_counter() - start)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--modes", nargs="+", default=["eager", "compiled"], choices=["eager", "compiled"])
    parser.add_argument("--output_dir", default="benchmarks")
    args = parser.parse_args(argv)
    mnist = load_bundled_mnist()
    train, test = DigitTensors(mnist["train"].select(range(args.steps * BATCH))), DigitTensors(mnist["test"])
    names = [f"{kind} {mode}" for mode in args.modes for kind in ("ours", "transformers")]
    names.append(DEFAULTS_ARM)
    runs = {name: {"train": [], "evaluate": []} for name in names}
    for _ in range(args.repeats):
        for name in runs:
            kind, mode = name.split()[:2]
            model = build_pair("release")[kind]  # fresh weights each run, identical for both kinds
            speeds = trainer_images_per_second(model, train, test, args.steps, mode == "compiled",
                                               trainer_defaults=name == DEFAULTS_ARM)
            for key, speed in zip(("train", "evaluate"), speeds, strict=True):
                runs[name][key].append(speed)
    results = {"machine": {"cpu": cpu_name(), "threads": torch.get_num_threads(), "torch": torch.__version__},
               "steps": args.steps, "batch": BATCH, "test_images": len(test),
               "images_per_second": {name: {key: {"median": statistics.median(v), "min": min(v), "max": max(v)}
                                            for key, v in series.items()} for name, series in runs.items()}}
    speeds = results["images_per_second"]
    lines = [f"Trainer, {args.steps} steps, whole `trainer.train()` wall clock (compile included), then "
             f"`trainer.evaluate()` on the {len(test):,} test images; {results['machine']['cpu']}, "
             f"{results['machine']['threads']} threads, torch {torch.__version__}. Batch {BATCH} (evaluation 512, "
             "train.py's settings) except the last row, which keeps TrainingArguments' defaults (batch 8).", "",
             "| variant | train img/s median (range) | vs transformers eager | vs Trainer defaults | "
             "evaluate img/s | vs transformers eager | vs Trainer defaults |", "|" + " --- |" * 7]
    for name, value in speeds.items():
        cells = [name]
        for key in ("train", "evaluate"):
            median = value[key]["median"]
            cells += [f"{median:.0f} ({value[key]['min']:.0f}-{value[key]['max']:.0f})" if key == "train"
                      else f"{median:.0f}",
                      f"{median / speeds['transformers eager'][key]['median']:.2f}x",
                      f"{median / speeds[DEFAULTS_ARM][key]['median']:.2f}x"]
        lines.append("| " + " | ".join(cells) + " |")
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "trainer.json").write_text(json.dumps(results, indent=2) + "\n")
    (output_dir / "trainer.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return results


if __name__ == "__main__":
    main()
