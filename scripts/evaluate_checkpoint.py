"""Evaluate a checkpoint folder (or Hub id) on a dataset split: accuracy, macro-F1, per-class precision / recall /
F1, the confusion matrix (JSON and PNG) and a grid of the most confident mistakes (PNG).

    python scripts/evaluate_checkpoint.py --model release/vit-mnist      # bundled MNIST, test split
    python scripts/evaluate_checkpoint.py --model runs/quick/final_model --output_dir runs/quick/eval
    python scripts/evaluate_checkpoint.py --model runs/fashion/final_model \
        --dataset_dir /usr/share/datasets/fashion-mnist
    python scripts/evaluate_checkpoint.py --model someone/vit-mnist --dataset_name ylecun/mnist --split test

(Not named evaluate.py: that would shadow the `evaluate` library for every script in this folder.)
"""

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from transformers import AutoImageProcessor, AutoModelForImageClassification, TrainingArguments  # noqa: E402

import hf_vit_mnist  # noqa: E402, F401  (registers the Auto classes)
from hf_vit_mnist.data import DataError, DigitCollator, DigitTensors, load_image_classification_dataset  # noqa: E402
from hf_vit_mnist.training import DigitTrainer, load_classification_metric  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="Checkpoint folder or Hub id.")
    parser.add_argument("--dataset_name", help="Hub dataset (default: the bundled MNIST).")
    parser.add_argument("--dataset_config_name")
    parser.add_argument("--dataset_dir", help="Local folder: IDX files or anything load_dataset reads.")
    parser.add_argument("--split", default="test")
    parser.add_argument("--batch_size", type=int, default=1024)
    parser.add_argument("--worst", type=int, default=36, help="How many mistakes to show.")
    parser.add_argument("--output_dir", help="Default: <model>/eval (a folder named after the model for Hub ids).")
    parser.add_argument("--trust_remote_code", action="store_true", help="For Hub models with their own code.")
    return parser.parse_args(argv)


def plot_confusion_matrix(confusion: np.ndarray, names: list[str], path: Path) -> None:
    figure, axis = plt.subplots(figsize=(7, 6))
    shown = axis.imshow(np.log1p(confusion), cmap="Blues")
    for (row, col), count in np.ndenumerate(confusion):
        if count:
            axis.text(col, row, str(count), ha="center", va="center", fontsize=7,
                      color="white" if row == col else "black")
    axis.set_xticks(range(len(names)), names, rotation=45, ha="right")
    axis.set_yticks(range(len(names)), names)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    axis.set_title(f"Confusion matrix ({confusion.sum()} images, {confusion.trace()} correct)")
    figure.colorbar(shown, ax=axis, label="log(1 + count)")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def plot_worst_mistakes(images, labels, probabilities, names, count, path: Path) -> list[dict]:
    """The wrong predictions made with the highest confidence, most confident first."""
    predictions = probabilities.argmax(1)
    wrong = np.flatnonzero(predictions != labels)
    wrong = wrong[np.argsort(-probabilities[wrong, predictions[wrong]])][:count]
    columns = 6
    rows = max(1, -(-len(wrong) // columns))
    figure, axes = plt.subplots(rows, columns, figsize=(columns * 1.6, rows * 1.9), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axis, index in zip(axes.flat, wrong, strict=False):
        axis.imshow(images[index], cmap="gray")
        axis.set_title(f"#{index} true {names[labels[index]]}\npred {names[predictions[index]]} "
                       f"{probabilities[index, predictions[index]]:.2f}", fontsize=7)
    figure.suptitle(f"Most confident mistakes ({len(wrong)} shown)")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return [{"index": int(i), "true": names[labels[i]], "predicted": names[predictions[i]],
             "confidence": float(probabilities[i, predictions[i]])} for i in wrong]


def main(argv=None) -> dict:
    args = parse_args(argv)
    output_dir = Path(args.output_dir or (Path(args.model) / "eval" if Path(args.model).is_dir()
                                          else Path("runs") / args.model.replace("/", "--") / "eval"))
    output_dir.mkdir(parents=True, exist_ok=True)
    model = AutoModelForImageClassification.from_pretrained(args.model, trust_remote_code=args.trust_remote_code)
    processor = AutoImageProcessor.from_pretrained(args.model, trust_remote_code=args.trust_remote_code)
    try:
        dataset = load_image_classification_dataset(args.dataset_name, args.dataset_dir, args.dataset_config_name)
        if args.split not in dataset:
            raise DataError(f"No split '{args.split}'; the dataset has {list(dataset)}.")
        split = DigitTensors(dataset[args.split], image_size=model.config.image_size)
    except DataError as error:
        raise SystemExit(f"Data error: {error}") from None
    names = dataset[args.split].features["label"].names
    if len(names) != model.config.num_labels:
        raise SystemExit(f"The model has {model.config.num_labels} labels but the dataset has {len(names)} classes.")

    trainer = DigitTrainer(
        model=model,
        args=TrainingArguments(output_dir=str(output_dir), per_device_eval_batch_size=args.batch_size,
                               report_to="none", disable_tqdm=True),
        eval_data_collator=DigitCollator(processor.image_mean[0], processor.image_std[0]),
    )
    prediction = trainer.predict(split)
    probabilities = torch.from_numpy(prediction.predictions).float().softmax(-1).numpy()
    labels = prediction.label_ids
    report = load_classification_metric().compute(
        predictions=probabilities.argmax(1), references=labels, num_classes=len(names), per_class=True
    )
    plot_confusion_matrix(np.array(report["confusion_matrix"]), names, output_dir / "confusion_matrix.png")
    mistakes = plot_worst_mistakes(split.images.numpy(), labels, probabilities, names, args.worst,
                                   output_dir / "worst_mistakes.png")
    results = {"model": args.model, "dataset": args.dataset_name or args.dataset_dir or "bundled MNIST",
               "split": args.split, "num_images": len(labels), "class_names": names, **report,
               "worst_mistakes": mistakes}
    (output_dir / "eval_results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"{args.split}: accuracy {report['accuracy']:.4f}, macro-F1 {report['macro_f1']:.4f} "
          f"({len(labels)} images) -> {output_dir}")
    return results


if __name__ == "__main__":
    main()
