"""Pieces of the training job that scripts/train.py and scripts/evaluate.py share: metrics through the shipped
`evaluate` module, the Trainer (evaluation collator, distillation, weight averaging, checkpoint averaging), the
wall-clock callback behind time-to-accuracy, and the checks run before training starts."""

import contextlib
import json
import logging
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import evaluate
import numpy as np
import torch
import transformers
from safetensors.torch import load_file, save_file
from torch import nn
from torch.optim.swa_utils import AveragedModel
from transformers import Trainer, TrainerCallback
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from transformers.utils import SAFE_WEIGHTS_NAME

from .metrics import CLASSIFICATION_REPORT_PATH

MIN_FREE_DISK_BYTES = 200 * 2**20  # checkpoints of a <=1M-parameter model are a few MB; leave room for many
DISTILLATION_TYPES = ("hard", "soft")
AVERAGE_WEIGHTS_NAME = "ema_model.safetensors"  # in each checkpoint beside model.safetensors (the training weights)
CLS_AND_POSITION_PARAMETERS = ("cls_token", "position_embeddings")  # ViTMNISTEmbeddings' own parameters
logger = logging.getLogger(__name__)


def load_classification_metric() -> evaluate.EvaluationModule:
    return evaluate.load(CLASSIFICATION_REPORT_PATH)


def make_compute_metrics(num_classes: int):
    """`compute_metrics` for Trainer: accuracy and macro-F1 of the argmax predictions."""
    metric = load_classification_metric()

    def compute_metrics(eval_prediction) -> dict:
        logits, labels = eval_prediction.predictions, eval_prediction.label_ids
        scores = metric.compute(predictions=np.argmax(logits, axis=-1), references=labels, num_classes=num_classes)
        return {**scores, "num_images": len(labels)}  # each image counted once, also across processes

    return compute_metrics


def moving_average_with_warmup(decay: float):
    """The exponential moving average update for torch's AveragedModel, with TensorFlow's warm-up
    (ExponentialMovingAverage with num_updates): update t uses min(decay, (1 + t) / (10 + t)), so the early average
    follows the weights instead of carrying the random start for thousands of steps."""

    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], num_averaged: torch.Tensor) -> None:
        step_decay = torch.clamp((1 + num_averaged) / (10 + num_averaged), max=decay)  # on the device: no sync
        for average, weight in zip(averaged, current, strict=True):
            average.lerp_(weight, 1 - step_decay)

    return update


def epoch_checkpoints(output_dir: str | Path) -> dict[int, Path]:
    """A run's checkpoint folders saved at the end of an epoch, by epoch. One saved mid-epoch (on SIGTERM) is left
    out: an average of epochs weighs each one equally."""
    checkpoints = {}
    for folder in Path(output_dir).glob(f"{PREFIX_CHECKPOINT_DIR}-*"):
        if (folder / TRAINER_STATE_NAME).exists():
            epoch = json.loads((folder / TRAINER_STATE_NAME).read_text())["epoch"]
            if abs(epoch - round(epoch)) < 1e-6:
                checkpoints[round(epoch)] = folder
    return checkpoints


def uniform_average(checkpoints: list[Path]) -> dict[str, torch.Tensor]:
    """The mean of the checkpoints' training weights (model.safetensors), summed in float64."""
    states = [load_file(folder / SAFE_WEIGHTS_NAME) for folder in checkpoints]
    return {name: (sum(state[name].double() for state in states) / len(states)).to(tensor.dtype)
            if tensor.is_floating_point() else tensor for name, tensor in states[-1].items()}


def check_ema_decay(ema_decay: float) -> None:
    if not 0.0 <= ema_decay < 1.0:
        raise ValueError(f"--ema_decay must be in [0, 1) (0: no weight averaging; 0.999 averages over roughly the "
                         f"last 1,000 steps), got {ema_decay}.")


class DigitTrainer(Trainer):
    """Trainer with a second collator for evaluation and prediction (Trainer has one collator for all loaders, and
    evaluation batches must not be augmented), optional knowledge distillation from a teacher model, and optional
    weight averaging.

    Distillation (Hinton et al. 2015; DeiT, Touvron et al. 2021) changes only the training loss, never the student's
    architecture: loss = (1 - alpha) * loss(labels) + alpha * loss(teacher). "hard" is DeiT's hard-label
    distillation, cross-entropy to the teacher's argmax on the same augmented batch; "soft" is Hinton's KL divergence
    between temperature-softened distributions, scaled by T^2. Evaluation losses stay the student's own.

    Weight averaging (`ema_decay` > 0; Polyak averaging, as timm's ModelEma and DeiT use it): after every optimizer
    step an exponential moving average of the weights is updated (torch's AveragedModel), average = decay * average
    + (1 - decay) * weights, with a warm-up (`moving_average_with_warmup`). Evaluation scores the average, so the
    best checkpoint is chosen by it, and training ends with the model holding the average kept (best on validation).
    Each checkpoint stores it beside the training weights, as AVERAGE_WEIGHTS_NAME, and a resumed run takes it back.

    Weight decay reaches every weight matrix, as in Trainer, and the [CLS] token and position embeddings too unless
    `decay_cls_and_positions` is False: timm's ViT exempts them (DeiT and MAE train so), as Trainer exempts biases
    and norms.
    """

    def __init__(self, *args, eval_data_collator=None, teacher=None, distillation_type="hard", distillation_alpha=0.5,
                 distillation_temperature=1.0, ema_decay=0.0, decay_cls_and_positions=True, **kwargs):
        super().__init__(*args, **kwargs)
        self.decay_cls_and_positions = decay_cls_and_positions
        if not torch.accelerator.is_available():  # pinned memory speeds copies to an accelerator; without one,
            self.args.dataloader_pin_memory = False  # torch warns at every loader
        self.eval_data_collator = eval_data_collator
        check_ema_decay(ema_decay)
        self.average = None
        if ema_decay:
            self.average = AveragedModel(self.model, device=self.args.device, use_buffers=True,
                                         multi_avg_fn=moving_average_with_warmup(ema_decay))
            self.add_callback(WeightAverageCallback(self.average))
        self._evaluating_average = False
        if distillation_type not in DISTILLATION_TYPES:
            raise ValueError(f"distillation_type must be one of {DISTILLATION_TYPES}, got {distillation_type!r}.")
        self.teacher = teacher.to(self.args.device).eval().requires_grad_(False) if teacher is not None else None
        self.distillation_type = distillation_type
        self.distillation_alpha = distillation_alpha
        self.distillation_temperature = distillation_temperature

    def get_decay_parameter_names(self, model: nn.Module) -> list[str]:
        names = super().get_decay_parameter_names(model)
        if self.decay_cls_and_positions:
            return names
        kept = [name for name in names if name.rsplit(".", 1)[-1] not in CLS_AND_POSITION_PARAMETERS]
        if len(kept) == len(names):
            raise ValueError(f"decay_cls_and_positions=False exempts parameters named {CLS_AND_POSITION_PARAMETERS} "
                             f"from weight decay, but {type(model).__name__} has none: leave it True for this model.")
        return kept

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        pixel_values = inputs["pixel_values"]  # read first: Trainer's label smoother pops the labels
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
        if self.teacher is not None and model.training:
            with torch.no_grad():
                teacher_logits = self.teacher(pixel_values=pixel_values).logits  # (B, num_labels)
            loss = (1 - self.distillation_alpha) * loss + self.distillation_alpha * self.distillation_loss(
                outputs.logits, teacher_logits)
        return (loss, outputs) if return_outputs else loss

    def distillation_loss(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        if self.distillation_type == "hard":
            return nn.functional.cross_entropy(student_logits, teacher_logits.argmax(-1),
                                               label_smoothing=self.args.label_smoothing_factor)
        temperature = self.distillation_temperature
        return nn.functional.kl_div(nn.functional.log_softmax(student_logits / temperature, dim=-1),
                                    nn.functional.log_softmax(teacher_logits / temperature, dim=-1),
                                    reduction="batchmean", log_target=True) * temperature**2

    def train(self, resume_from_checkpoint=None, **kwargs):
        if self.average is None:
            return super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)
        if resume_from_checkpoint:
            self.load_average(resume_from_checkpoint)
        self._evaluating_average = True
        try:
            output = super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)
        finally:
            self._evaluating_average = False
        # The model leaves with the average that was scored: the best checkpoint's, or the last one.
        kept = self.state.best_model_checkpoint if self.args.load_best_model_at_end else None
        weights = load_file(Path(kept) / AVERAGE_WEIGHTS_NAME) if kept else self.average.module.state_dict()
        self.model.load_state_dict(weights)
        return output

    def load_average(self, checkpoint: str | Path) -> None:
        path = Path(checkpoint) / AVERAGE_WEIGHTS_NAME
        if not path.exists():
            raise ValueError(f"{checkpoint} holds no averaged weights ({AVERAGE_WEIGHTS_NAME}): a run without "
                             "--ema_decay saved it. Resume it with its own flags, or start afresh elsewhere.")
        self.average.module.load_state_dict(load_file(path, device=str(self.args.device)))
        state = json.loads((Path(checkpoint) / TRAINER_STATE_NAME).read_text())
        self.average.n_averaged.fill_(state["global_step"])  # one update per step: the warm-up goes on from here

    @contextlib.contextmanager
    def averaged_weights(self):
        """The model holds the average inside the block and its training weights again after it. Evaluating a dict
        of datasets calls `evaluate` again for each one: those inner calls find the average in place already."""
        training_weights = {name: tensor.clone() for name, tensor in self.model.state_dict().items()}
        self.model.load_state_dict(self.average.module.state_dict())
        self._evaluating_average = False
        try:
            yield
        finally:
            self.model.load_state_dict(training_weights)
            self._evaluating_average = True

    def evaluate(self, *args, **kwargs):
        if not self._evaluating_average:
            return super().evaluate(*args, **kwargs)
        with self.averaged_weights():
            return super().evaluate(*args, **kwargs)

    def _save_checkpoint(self, model, trial):
        # Every checkpoint is written here, the one transformers' JIT checkpoint writes on SIGTERM too.
        super()._save_checkpoint(model, trial)
        if self.average is not None and self.args.should_save:
            folder = Path(self._get_output_dir(trial=trial)) / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            save_file({name: tensor.contiguous() for name, tensor in self.average.module.state_dict().items()},
                      folder / AVERAGE_WEIGHTS_NAME)
        if self.average is not None:
            self.accelerator.wait_for_everyone()  # other processes may read it next (the kept model, at the end)

    def keep_best_checkpoint_average(self, counts: list[int], validation, test=None) -> dict | None:
        """Checkpoint averaging, after training (Vaswani et al. 2017; fairseq's average_checkpoints.py; SWA, Izmailov
        et al. 2018): the model ends up holding whichever scores best on validation of the last epoch's weights and
        the uniform averages of the last K epoch checkpoints, for each K in `counts`; the test split, when given, is
        scored for the record only. The best epoch of the whole run is no candidate: the highest of many noisy
        validation scores is often a fluke (5,000 images: +-0.09 points), while the end of the schedule is steady.
        Without a validation split there is nothing to choose on: `counts` is one K, fixed before training, and the
        mean of the last K epochs is kept. Returns every candidate's scores and the one kept (None when nothing
        was averaged: no epoch checkpoint, or without validation the K epochs' checkpoints are gone)."""
        self.accelerator.wait_for_everyone()  # under data parallelism, the last checkpoint is written by now
        checkpoints = epoch_checkpoints(self.args.output_dir)
        if not checkpoints:
            logger.warning("Not averaging checkpoints: the run saved none at the end of an epoch.")
            return None
        last, candidates = max(checkpoints), []
        for count in [1, *sorted(set(counts))] if validation is not None else counts:  # 1: the last epoch alone
            epochs = list(range(last - count + 1, last + 1))
            missing = [epoch for epoch in epochs if epoch not in checkpoints]
            if missing:  # e.g. a mid-epoch checkpoint (SIGTERM) took a place that save_total_limit counts
                logger.warning("Not averaging the last %d epochs: the checkpoints of epochs %s are gone (raise "
                               "--save_total_limit to keep them).", count, missing)
                continue
            candidates.append({"name": f"mean of epochs {epochs[0]}-{last}" if count > 1 else f"epoch {last}",
                               "epochs": [epochs[0], last],
                               "weights": uniform_average([checkpoints[epoch] for epoch in epochs])})
        for candidate in candidates:
            self.model.load_state_dict(candidate["weights"])
            for split, dataset in (("validation", validation), ("test", test)):
                if dataset is not None:
                    metrics = self.predict(dataset, metric_key_prefix=split).metrics  # predict logs nothing
                    candidate |= {f"{split}_accuracy": metrics[f"{split}_accuracy"],
                                  f"{split}_loss": metrics[f"{split}_loss"]}
            logger.info("Candidate %s: %s", candidate["name"],
                        {key: round(value, 4) for key, value in candidate.items() if key.endswith("_accuracy")})
        if not candidates:  # without validation: the one mean asked for; the model keeps the last epoch's weights
            return None
        best = candidates[0] if validation is None else max(
            candidates, key=lambda candidate: (candidate["validation_accuracy"], -candidate["validation_loss"]))
        self.model.load_state_dict(best["weights"])
        return {"chosen": best["name"], "epochs": best["epochs"],
                "validation_accuracy": best.get("validation_accuracy"),  # None: kept by a rule fixed in advance
                "candidates": [{key: value for key, value in candidate.items() if key != "weights"}
                               for candidate in candidates]}

    def _with_eval_collator(self, make_loader, dataset):
        train_collator = self.data_collator
        self.data_collator = self.eval_data_collator or train_collator
        try:
            return make_loader(dataset)
        finally:
            self.data_collator = train_collator

    def get_eval_dataloader(self, eval_dataset=None):
        return self._with_eval_collator(super().get_eval_dataloader, eval_dataset)

    def get_test_dataloader(self, test_dataset):
        return self._with_eval_collator(super().get_test_dataloader, test_dataset)


class WeightAverageCallback(TrainerCallback):
    """Updates the moving average of the weights after every optimizer step."""

    def __init__(self, average: AveragedModel):
        self.average = average

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.average.update_parameters(model)


class StoppedEpochCallback(TrainerCallback):
    """A run stopped in the middle of an epoch (SIGTERM: transformers' JIT checkpoint has saved it) leaves its epoch
    loop early, and Trainer then evaluates as at an epoch's end: a score at a fractional epoch that a run never
    stopped does not have, standing among the per-epoch figures (time to 99.0%, the best epoch) and delaying the
    exit. That evaluation is skipped; the save that follows it stays, at a whole step: the rerun resumes from it."""

    def on_epoch_end(self, args, state, control, **kwargs):
        if control.should_training_stop and state.global_step < state.max_steps:
            control.should_evaluate = False


class NonFiniteTrainingError(RuntimeError):
    """Training produced NaN or infinite weights; the message says where and what to change."""


class NonFiniteWeightsCallback(TrainerCallback):
    """Stops training when a weight has become NaN or infinite (a NaN or infinite loss does that through its
    gradients), before a checkpoint of broken weights can be written: the last checkpoint stays good.

    It checks only at steps that log, evaluate or save (DefaultFlowCallback, which runs first, has set those flags)
    and at each epoch's end, before its save: NaN weights stay NaN, so nothing is missed, and the CPU does not wait
    for the GPU at every step."""

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if control.should_log or control.should_evaluate or control.should_save:
            self.check(state, model)

    def on_epoch_end(self, args, state, control, model=None, **kwargs):
        self.check(state, model)

    @staticmethod
    def check(state, model) -> None:
        finite = torch.stack([parameter.isfinite().all() for parameter in model.parameters()]).all()
        if not finite:  # one host sync, not one per parameter
            raise NonFiniteTrainingError(
                f"Training diverged by step {state.global_step} (epoch {state.epoch:.2f}): the loss or the "
                "weights became NaN or infinite, so training stopped before saving them. Lower --learning_rate or "
                "raise --warmup_steps, then run again: it resumes from the last good checkpoint."
            )


class ElapsedTimeCallback(TrainerCallback):
    """Adds `elapsed_seconds` (training wall-clock, carried across resumes) to every entry of the log history,
    so time-to-accuracy can be read from trainer_state.json."""

    def on_train_begin(self, args, state, control, **kwargs):
        previous = [entry["elapsed_seconds"] for entry in state.log_history if "elapsed_seconds" in entry]
        self.start = time.perf_counter() - (previous[-1] if previous else 0.0)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.log_history:
            state.log_history[-1]["elapsed_seconds"] = round(time.perf_counter() - self.start, 2)


def check_output_dir(output_dir: str | Path) -> None:
    """Fails at start, not after an hour of training, when checkpoints could not be written."""
    output_dir = Path(output_dir)
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=output_dir) as probe:  # a unique name: data-parallel ranks check at once
            probe.write(b"ok")
    except OSError as error:
        raise SystemExit(f"Cannot write to --output_dir {output_dir}: {error}. Choose a writable folder.") from None
    free = shutil.disk_usage(output_dir).free
    if free < MIN_FREE_DISK_BYTES:
        raise SystemExit(
            f"Only {free / 2**20:.0f} MiB free under {output_dir}; checkpoints need at least "
            f"{MIN_FREE_DISK_BYTES / 2**20:.0f} MiB. Free some space or choose another --output_dir."
        )


def accuracy_history(log_history: list[dict]) -> list[dict]:
    """Per evaluation: epoch, training wall-clock so far, validation and (if tracked) test accuracy and loss."""
    rows: dict[float, dict] = {}
    for entry in log_history:
        for split in ("validation", "test"):
            if f"eval_{split}_accuracy" in entry:
                row = rows.setdefault(entry["epoch"], {"epoch": entry["epoch"]})
                row[f"{split}_accuracy"] = entry[f"eval_{split}_accuracy"]
                row[f"{split}_loss"] = entry.get(f"eval_{split}_loss")
                row["elapsed_seconds"] = max(row.get("elapsed_seconds", 0), entry.get("elapsed_seconds", 0))
    return [rows[epoch] for epoch in sorted(rows)]


def first_evaluation_reaching(history: list[dict], threshold: float, split: str = "test") -> dict | None:
    """The first row of `accuracy_history` whose accuracy on `split` is at least `threshold`; None if none is."""
    return next((row for row in history if row.get(f"{split}_accuracy", 0) >= threshold), None)


def time_to_accuracy(history: list[dict], thresholds=(0.99, 0.995), split: str = "test") -> dict:
    """Training wall-clock (seconds) at the first evaluation reaching each accuracy; None if never reached."""
    result = {}
    for threshold in thresholds:
        row = first_evaluation_reaching(history, threshold, split)
        result[str(threshold)] = row["elapsed_seconds"] if row else None
    return result


def cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def usable_cpu_cores() -> int:
    """Cores this process may run on (a container or taskset can allow fewer than the machine has)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def hardware_summary(training_args) -> dict:
    """What the run ran on, for the model card."""
    return {"device": str(training_args.device), "cpu": cpu_name(), "cpu_cores": usable_cpu_cores(),
            "processes": training_args.world_size, "threads_per_process": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "torch": torch.__version__, "transformers": transformers.__version__}
