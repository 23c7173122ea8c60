"""Train the Vision Transformer on MNIST (or any image-classification dataset) with transformers.Trainer, evaluate
it on the test split, and save the folder the Hub would receive (optionally pushing it).

    accelerate launch scripts/train.py recipes/quick.json        # a few minutes on a laptop CPU
    accelerate launch scripts/train.py recipes/release-all.json  # the released model (hours on 2 cores)
    accelerate launch scripts/train.py recipes/quick.json --num_train_epochs 2 --output_dir runs/try
    python scripts/train.py --output_dir runs/plain                # plain Python works too
    torchrun --nproc_per_node 2 scripts/train.py recipes/quick.json   # 2 data-parallel CPU processes (gloo)
    accelerate launch --mixed_precision bf16 scripts/train.py recipes/quick.json
    accelerate launch scripts/train.py recipes/quick.json --stem conv --output_dir runs/hybrid    # hybrid ViT
    accelerate launch scripts/train.py recipes/quick.json --teacher_model_name_or_path runs/hybrid/final_model
    accelerate launch scripts/train.py recipes/quick.json --elastic_alpha 34 --elastic_sigma 5   # + elastic aug.
    accelerate launch scripts/train.py recipes/quick.json --ema_decay 0.999   # score and keep an average of weights
    accelerate launch scripts/train.py recipes/quick.json --average_last_epochs 2 3   # or the last 2-3 epochs' mean

A recipe is a JSON file of the flags below; flags given after it override it. Training resumes from the last
checkpoint in --output_dir unless --resume_from_checkpoint names another (or "none" to start afresh).
"""

import dataclasses
import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import HfArgumentParser, TrainingArguments, set_seed
from transformers.trainer_utils import IntervalStrategy, get_last_checkpoint

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for model_card/
from push_to_hub import push

from hf_vit_mnist import ViTMNISTConfig, ViTMNISTForImageClassification, ViTMNISTImageProcessor
from hf_vit_mnist.data import (
    DataError,
    DigitCollator,
    DigitTensors,
    load_image_classification_dataset,
    split_train_validation,
)
from hf_vit_mnist.training import (
    DigitTrainer,
    ElapsedTimeCallback,
    NonFiniteTrainingError,
    NonFiniteWeightsCallback,
    StoppedEpochCallback,
    accuracy_history,
    check_ema_decay,
    check_output_dir,
    hardware_summary,
    make_compute_metrics,
    time_to_accuracy,
)
from model_card.build import write_model_card

logger = logging.getLogger("train")
FINAL_MODEL_DIR = "final_model"  # inside --output_dir: exactly what is pushed to the Hub
RECIPE_FILE = "recipe.json"  # inside --output_dir: the run's recipe, written at the start and checked on resume


@dataclass
class ModelArguments:
    model_name_or_path: str | None = field(default=None, metadata={"help": "Start from this checkpoint (fine-tune)."})
    hidden_size: int = field(default=ViTMNISTConfig.hidden_size, metadata={"help": "Token width D."})
    num_hidden_layers: int = field(default=ViTMNISTConfig.num_hidden_layers, metadata={"help": "Encoder depth."})
    num_attention_heads: int = field(default=ViTMNISTConfig.num_attention_heads)
    intermediate_size: int = field(default=ViTMNISTConfig.intermediate_size, metadata={"help": "MLP width."})
    patch_size: int = field(default=ViTMNISTConfig.patch_size)
    hidden_dropout_prob: float = field(default=0.0)
    attention_probs_dropout_prob: float = field(default=0.0)
    pooling: str = field(default="cls", metadata={"help": "'cls' (the paper) or 'mean'."})
    stem: str = field(default="patchify", metadata={"help": "'patchify' (the paper's ViT) or 'conv' (hybrid)."})


@dataclass
class DataArguments:
    dataset_name: str | None = field(default=None, metadata={"help": "A Hub dataset, e.g. ylecun/mnist."})
    dataset_config_name: str | None = field(default=None)
    dataset_dir: str | None = field(default=None, metadata={"help": "A local folder: IDX files or load_dataset's."})
    validation_size: int = field(default=5000, metadata={
        "help": "Images carved from train for model selection; 0: no validation split (not even a dataset's own): "
                "train on all of train and keep the last epoch (or the mean of the last K epochs, "
                "--average_last_epochs K), a choice fixed before training."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Use only the first N training images."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Use only the first N val/test images."})
    augment: bool = field(default=True, metadata={"help": "Random affine augmentation of training batches."})
    rotation_degrees: float = field(default=10.0)
    scale_min: float = field(default=0.9)
    scale_max: float = field(default=1.1)
    translate_fraction: float = field(default=0.1)
    elastic_alpha: float = field(default=0.0, metadata={"help": "Elastic distortion strength in pixels; 0: off."})
    elastic_sigma: float = field(default=4.0, metadata={"help": "Smoothness of the elastic distortion (pixels)."})
    erase_probability: float = field(default=0.0, metadata={"help": "Random erasing: chance per training image."})
    track_test_accuracy: bool = field(
        default=True, metadata={"help": "Also score the test split at each evaluation (logged, never used to choose)."}
    )

    def __post_init__(self):
        if self.validation_size < 0:
            raise ValueError(f"--validation_size is a number of images, 0 or more, got {self.validation_size}.")
        if not 0 < self.scale_min <= self.scale_max:
            raise ValueError(f"--scale_min/--scale_max must satisfy 0 < min <= max, got {self.scale_min}, "
                             f"{self.scale_max}.")
        if not 0.0 <= self.erase_probability <= 1.0:
            raise ValueError(f"--erase_probability must be in [0, 1], got {self.erase_probability}.")
        if self.elastic_alpha < 0 or self.elastic_sigma <= 0:
            raise ValueError(f"--elastic_alpha must be >= 0 (0: off) and --elastic_sigma > 0 pixels, got "
                             f"{self.elastic_alpha}, {self.elastic_sigma}.")


@dataclass
class DistillationArguments:
    teacher_model_name_or_path: str | None = field(
        default=None, metadata={"help": "Distil from this trained classifier (DeiT); the student stays a plain ViT."})
    distillation_type: str = field(default="hard", metadata={"help": "'hard' (DeiT: teacher's argmax) or 'soft'."})
    distillation_alpha: float = field(default=0.5, metadata={"help": "Weight of the teacher's loss, in [0, 1]."})
    distillation_temperature: float = field(default=1.0, metadata={"help": "Softening for 'soft' distillation."})

    def __post_init__(self):
        if not 0.0 <= self.distillation_alpha <= 1.0:
            raise ValueError(f"--distillation_alpha must be in [0, 1], got {self.distillation_alpha}.")
        if self.distillation_temperature <= 0:
            raise ValueError(f"--distillation_temperature must be positive, got {self.distillation_temperature}.")


@dataclass
class ViTMNISTTrainingArguments(TrainingArguments):
    """TrainingArguments with defaults for this job; every one can be overridden on the command line."""

    output_dir: str = field(default="runs/vit-mnist")
    eval_strategy: str = field(default="epoch")
    save_strategy: str = field(default="epoch")
    save_total_limit: int | None = field(default=2)
    load_best_model_at_end: bool = field(default=True)
    metric_for_best_model: str | None = field(default="validation_accuracy")
    remove_unused_columns: bool = field(default=False)  # the collator needs the raw columns
    ddp_find_unused_parameters: bool | None = field(default=False)  # every parameter is used: skip the search
    per_device_train_batch_size: int = field(default=128)
    per_device_eval_batch_size: int = field(default=512)
    learning_rate: float = field(default=1e-3)
    weight_decay: float = field(default=0.05)
    decay_cls_and_positions: bool = field(default=True, metadata={
        "help": "Weight decay on the [CLS] token and position embeddings too (Trainer's way); false exempts them, as "
                "timm's ViT (DeiT, MAE) does."})
    warmup_steps: float = field(default=0.05)  # a fraction of all steps
    lr_scheduler_type: str = field(default="cosine")
    label_smoothing_factor: float = field(default=0.1)
    num_train_epochs: float = field(default=10)
    logging_steps: float = field(default=50)
    # NonFiniteWeightsCallback stops on a NaN loss instead of hiding it, and the filter costs a GPU sync every step.
    logging_nan_inf_filter: bool = field(default=False)
    report_to: None | str | list[str] = field(default="tensorboard")
    # SIGTERM (a scheduler's preemption, `kill`, a closing session) saves a checkpoint at the current step, then stops.
    enable_jit_checkpoint: bool = field(default=True)
    resume_from_checkpoint: str | None = field(
        default=None, metadata={"help": "A checkpoint folder; default: the last one in output_dir; 'none': afresh."}
    )
    ema_decay: float = field(default=0.0, metadata={
        "help": "Evaluate and keep a moving average of the weights with this decay per step (0.999: about the last "
                "1,000 steps); 0: off."})

    average_last_epochs: list[int] = field(default_factory=list, metadata={
        "help": "After training, score on validation the last epoch's weights and the uniform averages of the last K "
                "epochs' checkpoints for each K given (e.g. 5 10 20), and keep the best of them instead of the best "
                "epoch. Keeps enough checkpoints for it (save_total_limit raised to max K + 3)."})

    def __post_init__(self):
        super().__post_init__()
        check_ema_decay(self.ema_decay)
        if self.average_last_epochs:
            if min(self.average_last_epochs) < 2:
                raise ValueError(f"--average_last_epochs takes numbers of epochs, 2 or more (the last epoch alone is "
                                 f"always a candidate), got {self.average_last_epochs}.")
            if self.ema_decay:
                raise ValueError("--average_last_epochs averages checkpoints of the training weights; with "
                                 "--ema_decay the model is already a moving average. Choose one.")
            if self.save_strategy != "epoch":
                raise ValueError("--average_last_epochs averages epoch checkpoints: keep --save_strategy epoch.")
            # The last K epochs, the best one (kept whatever its age) and the two that a SIGTERM leaves: the JIT
            # checkpoint, saved inside a step, and Trainer's at the end of that step, which a rerun resumes from.
            if self.save_total_limit is not None:
                self.save_total_limit = max(self.save_total_limit, max(self.average_last_epochs) + 3)


def parse_args(argv: list[str]):
    parser = HfArgumentParser((ModelArguments, DataArguments, DistillationArguments, ViTMNISTTrainingArguments))
    recipe = {}
    if argv and argv[0].endswith(".json"):
        recipe = json.loads(Path(argv[0]).read_text())
        argv = argv[1:]
    # Recipe values become defaults; flags on the command line win.
    flags = [item for key, value in recipe.items() for item in (f"--{key}", *_flag_values(value))]
    return parser.parse_args_into_dataclasses(args=flags + argv)


def _flag_values(value) -> list[str]:
    """A recipe value as command-line words: a list as several (nargs), a dict as JSON, anything else as text."""
    if isinstance(value, list):
        return [str(item) for item in value]
    return [json.dumps(value) if isinstance(value, dict) else str(value)]


def load_splits(data_args: DataArguments, seed: int) -> tuple[dict[str, DigitTensors], list[str]]:
    """The run's train / validation / test splits as tensors, and the class names. The validation split is carved
    from train by `seed`, so a run's own recipe rebuilds exactly the images it was evaluated on."""
    try:
        dataset = load_image_classification_dataset(data_args.dataset_name, data_args.dataset_dir,
                                                    data_args.dataset_config_name)
        dataset = split_train_validation(dataset, data_args.validation_size, seed)
        limits = {"train": data_args.max_train_samples}
        splits = {}
        for name in ("train", "validation", "test"):
            if name not in dataset:
                continue
            limit = limits.get(name, data_args.max_eval_samples)
            part = dataset[name].select(range(min(limit, len(dataset[name])))) if limit else dataset[name]
            splits[name] = DigitTensors(part)
    except DataError as error:
        raise SystemExit(f"Data error: {error}") from None
    return splits, dataset["train"].features["label"].names


def build_model(model_args: ModelArguments, label_names: list[str], image_size: int):
    labels = {"id2label": dict(enumerate(label_names)), "label2id": {n: i for i, n in enumerate(label_names)}}
    if model_args.model_name_or_path:
        return ViTMNISTForImageClassification.from_pretrained(model_args.model_name_or_path, **labels,
                                                              ignore_mismatched_sizes=True)
    architecture = {f.name: getattr(model_args, f.name) for f in dataclasses.fields(model_args)}
    architecture.pop("model_name_or_path")
    config = ViTMNISTConfig(image_size=image_size, **architecture, **labels)
    return ViTMNISTForImageClassification(config)


def load_teacher(distillation_args: DistillationArguments, label_names: list[str]):
    """The trained classifier to distil from, checked to predict the same classes in the same order."""
    path = distillation_args.teacher_model_name_or_path
    teacher = ViTMNISTForImageClassification.from_pretrained(path)
    teacher_labels = [teacher.config.id2label[i] for i in range(teacher.config.num_labels)]
    if teacher_labels != label_names:
        raise SystemExit(f"The teacher {path} predicts {teacher_labels}, but the dataset's labels are {label_names}: "
                         "distil from a model trained on the same dataset.")
    return teacher


RECIPE_TRAINING_FIELDS = ("learning_rate", "weight_decay", "decay_cls_and_positions", "warmup_steps",
                          "lr_scheduler_type", "optim", "label_smoothing_factor", "num_train_epochs",
                          "per_device_train_batch_size", "gradient_accumulation_steps", "max_grad_norm", "seed",
                          "bf16", "torch_compile", "ema_decay", "average_last_epochs")
# Applied after training, so a finished run may be finished again with another choice (it retrains nothing).
POST_TRAINING_FIELDS = ("average_last_epochs",)


def _field_defaults(arguments_class) -> dict:
    return {f.name: f.default for f in dataclasses.fields(arguments_class) if f.default is not dataclasses.MISSING}


RECIPE_DEFAULTS = {"model": _field_defaults(ModelArguments), "data": _field_defaults(DataArguments),
                   "training": {name: value for name, value in _field_defaults(ViTMNISTTrainingArguments).items()
                                if name in RECIPE_TRAINING_FIELDS},
                   "distillation": _field_defaults(DistillationArguments)}


def run_recipe(model_args, data_args, distillation_args, training_args) -> dict:
    """The arguments that shape a run's result (JSON values): model, data, training schedule, distillation."""
    distillation = dataclasses.asdict(distillation_args) if distillation_args.teacher_model_name_or_path else None
    return json.loads(json.dumps({
        "model": dataclasses.asdict(model_args), "data": dataclasses.asdict(data_args),
        "training": {name: getattr(training_args, name) for name in RECIPE_TRAINING_FIELDS},
        "distillation": distillation}))


def check_resumed_recipe(run_dir: Path, recipe: dict) -> None:
    """A resumed run must go on with the recipe it started with: resuming a 45-epoch cosine schedule as a
    100-epoch one, say, would silently mix two runs into one model."""
    if not (run_dir / RECIPE_FILE).exists():
        return
    started, changed = json.loads((run_dir / RECIPE_FILE).read_text()), []
    for group in ("model", "data", "training", "distillation"):
        before, now = started.get(group) or {}, recipe.get(group) or {}
        if before:  # a field its recipe.json lacks came to train.py after the run started: it ran at the default
            before = {**RECIPE_DEFAULTS[group], **before}
        changed += [f"{group}.{name}: {before.get(name)!r} -> {now.get(name)!r}"
                    for name in sorted(set(before) | set(now))
                    if before.get(name) != now.get(name) and name not in POST_TRAINING_FIELDS]
    if changed:
        raise SystemExit(f"{run_dir} was started with another recipe ({'; '.join(changed)}), so it cannot be "
                         "resumed with this one. Give the run's own flags again, or a new --output_dir, or "
                         "--resume_from_checkpoint none to start afresh there.")


def training_summary(recipe, training_args, trainer, label_names) -> dict:
    """Everything the model card reports about how the model was made, from this run's own records."""
    history = accuracy_history(trainer.state.log_history)
    if trainer.teacher is not None:  # the card also names what kind of model taught this one
        recipe = {**recipe, "distillation": {**recipe["distillation"], "teacher_stem": trainer.teacher.config.stem,
                                             "teacher_num_parameters": trainer.teacher.num_parameters()}}
    return {
        "recipe": recipe,
        "global_batch_size": training_args.train_batch_size * training_args.world_size
        * training_args.gradient_accumulation_steps,
        "num_parameters": trainer.model.num_parameters(),
        "label_names": label_names,
        "hardware": hardware_summary(training_args),
        "train_wall_clock_seconds": history[-1]["elapsed_seconds"] if history else None,
        "time_to_test_accuracy_seconds": time_to_accuracy(history),
        "history": history,
    }


def keep_fixed_choice(training_args: ViTMNISTTrainingArguments) -> None:
    """Without a validation split (--validation_size 0) nothing is held out to choose on, so the model kept is fixed
    before training: the last epoch's weights, or the mean of the last K epochs given as --average_last_epochs K."""
    counts = training_args.average_last_epochs
    if len(counts) > 1:
        raise ValueError(f"--average_last_epochs {' '.join(map(str, counts))} asks to choose between checkpoint "
                         "averages on validation, but --validation_size 0 holds none out. Give one number of epochs "
                         "(its mean is kept), or a validation size.")
    training_args.load_best_model_at_end, training_args.metric_for_best_model = False, None
    logger.info("No validation split: the model kept is %s.",
                f"the mean of the last {counts[0]} epochs" if counts else "the last epoch's")


def use_cpu_processes_without_gpu() -> None:
    """Under torchrun on a machine without a GPU, accelerate runs its CPU data parallelism (MULTI_CPU, gloo) only
    when told the job is on CPU, as `accelerate launch --cpu` tells it; otherwise every process trains alone."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available():
        os.environ.setdefault("ACCELERATE_USE_CPU", "true")


def main(argv: list[str] | None = None) -> dict:
    use_cpu_processes_without_gpu()
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    try:
        model_args, data_args, distillation_args, training_args = parse_args(sys.argv[1:] if argv is None else argv)
        if data_args.validation_size == 0:
            keep_fixed_choice(training_args)
    except ValueError as error:  # our own checks and TrainingArguments' own: one line, no traceback
        raise SystemExit(f"Bad argument: {error}") from None
    check_output_dir(training_args.output_dir)
    recipe = run_recipe(model_args, data_args, distillation_args, training_args)
    resume = training_args.resume_from_checkpoint
    if resume is None:
        resume = get_last_checkpoint(training_args.output_dir)
    elif resume.lower() == "none":
        resume = None
    if resume:
        check_resumed_recipe(Path(resume).parent, recipe)
    if training_args.should_save:  # written whole, then renamed: other data-parallel ranks may be reading it
        recipe_file = Path(training_args.output_dir) / RECIPE_FILE
        recipe_file.with_suffix(".tmp").write_text(json.dumps(recipe, indent=2) + "\n")
        recipe_file.with_suffix(".tmp").replace(recipe_file)
    set_seed(training_args.seed)

    splits, label_names = load_splits(data_args, training_args.seed)
    image_size = splits["train"].images.shape[-1]
    logger.info("Data: %s", {name: len(split) for name, split in splits.items()})

    model = build_model(model_args, label_names, image_size)
    teacher = load_teacher(distillation_args, label_names) if distillation_args.teacher_model_name_or_path else None
    processor = ViTMNISTImageProcessor(size={"height": image_size, "width": image_size})
    mean, std = processor.image_mean[0], processor.image_std[0]
    augmentation = dict(augment=data_args.augment, rotation_degrees=data_args.rotation_degrees,
                        scale_range=(data_args.scale_min, data_args.scale_max),
                        translate_fraction=data_args.translate_fraction,
                        elastic_alpha=data_args.elastic_alpha, elastic_sigma=data_args.elastic_sigma,
                        erase_probability=data_args.erase_probability)
    eval_datasets = {"validation": splits["validation"]} if "validation" in splits else {}
    if data_args.track_test_accuracy and "test" in splits:
        eval_datasets["test"] = splits["test"]
    if not eval_datasets:
        training_args.eval_strategy = IntervalStrategy.NO
    # On a GPU with the loader in the main process, batches are built and augmented on the GPU (the CPU, often
    # two cores, is the bottleneck for a model this small). Pinning is for CPU tensors, so it is turned off.
    collate_device = None
    if training_args.device.type == "cuda" and training_args.dataloader_num_workers == 0:
        collate_device, training_args.dataloader_pin_memory = training_args.device, False
    # We push the final folder ourselves, once, with its model card; Trainer would push every checkpoint.
    # (Set in place: re-creating TrainingArguments would reset accelerate's distributed state under torchrun.)
    push_to_hub, training_args.push_to_hub = training_args.push_to_hub, False

    trainer = DigitTrainer(
        model=model,
        args=training_args,
        train_dataset=splits["train"],
        eval_dataset=eval_datasets or None,
        data_collator=DigitCollator(mean, std, **augmentation, device=collate_device),
        eval_data_collator=DigitCollator(mean, std),
        processing_class=processor,
        compute_metrics=make_compute_metrics(len(label_names)),
        callbacks=[ElapsedTimeCallback(), NonFiniteWeightsCallback(), StoppedEpochCallback()],
        teacher=teacher,
        distillation_type=distillation_args.distillation_type,
        distillation_alpha=distillation_args.distillation_alpha,
        distillation_temperature=distillation_args.distillation_temperature,
        ema_decay=training_args.ema_decay,
        decay_cls_and_positions=training_args.decay_cls_and_positions,
    )
    logger.info("Model: %d parameters; %d process(es), %s", model.num_parameters(), training_args.world_size,
                training_args.distributed_state.distributed_type)

    if resume:
        logger.info("Resuming from %s", resume)
    try:
        train_result = trainer.train(resume_from_checkpoint=resume)
    except NonFiniteTrainingError as error:
        last = get_last_checkpoint(training_args.output_dir)
        raise SystemExit(f"{error} Last good checkpoint: {last or 'none yet'}.") from None
    except KeyboardInterrupt:
        last = get_last_checkpoint(training_args.output_dir)
        raise SystemExit(f"Interrupted at step {trainer.state.global_step}. Run the same command again to resume from "
                         f"the last checkpoint ({last or 'none yet: it starts afresh'}); `kill -TERM` instead of "
                         "Ctrl-C saves one at the current step first.") from None
    if trainer.state.global_step < trainer.state.max_steps:  # a SIGTERM stopped it after saving (see above)
        raise SystemExit(f"Stopped by SIGTERM at step {trainer.state.global_step} of {trainer.state.max_steps}, "
                         f"saved as {get_last_checkpoint(training_args.output_dir)}. Run the same command again "
                         "to go on from there.")
    trainer.save_metrics("train", train_result.metrics)
    averaging = None
    if training_args.average_last_epochs:
        averaging = trainer.keep_best_checkpoint_average(training_args.average_last_epochs, splits.get("validation"),
                                                         eval_datasets.get("test"))
        if averaging:
            logger.info("Kept: %s", averaging["chosen"])

    results = dict(train_result.metrics)
    if "test" in splits:
        test_metrics = trainer.evaluate(splits["test"], metric_key_prefix="test")
        trainer.save_metrics("test", test_metrics)
        results.update(test_metrics)
    final_dir = Path(training_args.output_dir) / FINAL_MODEL_DIR
    if trainer.is_world_process_zero():
        trainer.model.save_pretrained(final_dir)  # weights (safetensors), config, code files; no pickles
        processor.save_pretrained(final_dir)
        (final_dir / "all_results.json").write_text(json.dumps(results, indent=2) + "\n")
        summary = training_summary(recipe, training_args, trainer, label_names)
        summary["split_sizes"] = {name: len(split) for name, split in splits.items()}
        summary["dataset"] = data_args.dataset_name or data_args.dataset_dir or "bundled MNIST"
        if averaging:
            summary["checkpoint_averaging"] = averaging
        (final_dir / "training_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        repo_id = training_args.hub_model_id or final_dir.parent.name
        write_model_card(final_dir, repo_id=repo_id)
        logger.info("Saved %s: the folder the Hub receives", final_dir)
        if push_to_hub:
            logger.info("Pushed: %s", push(final_dir, repo_id, private=training_args.hub_private_repo,
                                           token=training_args.hub_token))
    return results


if __name__ == "__main__":
    torch.set_float32_matmul_precision("high")
    main()
