"""Knowledge distillation (DeiT / Hinton): the loss against hand-computed values on real digits, and a student that
learns from a trained teacher alone through scripts/train.py."""

import json

import pytest
import torch
import train
from conftest import make_tiny_config, train_tiny
from torch.nn import functional as F
from transformers import TrainingArguments

from hf_vit_mnist import ViTMNISTForImageClassification
from hf_vit_mnist.training import DigitTrainer


@pytest.fixture
def batch(mnist_test):
    images, labels = mnist_test
    pixels = torch.tensor(images[:16]).float().unsqueeze(1) / 255 - 0.5  # (16, 1, 28, 28)
    return {"pixel_values": pixels, "labels": torch.tensor(labels[:16]).long()}


def _trainer(tmp_path, label_smoothing=0.0, **distillation):
    torch.manual_seed(0)
    student = ViTMNISTForImageClassification(make_tiny_config())
    teacher = ViTMNISTForImageClassification(make_tiny_config(stem="conv", patch_size=4))
    args = TrainingArguments(output_dir=str(tmp_path), label_smoothing_factor=label_smoothing, report_to="none",
                             use_cpu=True)
    return DigitTrainer(model=student, args=args, teacher=teacher, **distillation), student, teacher


def _loss(trainer, student, batch):
    return trainer.compute_loss(student, dict(batch), return_outputs=True)


def test_hard_distillation_is_cross_entropy_to_the_teachers_argmax(tmp_path, batch):
    trainer, student, teacher = _trainer(tmp_path, label_smoothing=0.1, distillation_type="hard",
                                         distillation_alpha=0.3)
    loss, outputs = _loss(trainer, student.train(), batch)
    teacher_labels = teacher(pixel_values=batch["pixel_values"]).logits.argmax(-1)
    assert not torch.equal(teacher_labels, batch["labels"])  # an untrained teacher: the two terms differ
    expected = (0.7 * F.cross_entropy(outputs.logits, batch["labels"], label_smoothing=0.1)
                + 0.3 * F.cross_entropy(outputs.logits, teacher_labels, label_smoothing=0.1))
    torch.testing.assert_close(loss, expected)


def test_soft_distillation_is_temperature_scaled_kl(tmp_path, batch):
    trainer, student, teacher = _trainer(tmp_path, distillation_type="soft", distillation_alpha=1.0,
                                         distillation_temperature=2.0)
    loss, outputs = _loss(trainer, student.train(), batch)
    teacher_probs = F.softmax(teacher(pixel_values=batch["pixel_values"]).logits / 2, dim=-1)
    student_probs = F.softmax(outputs.logits / 2, dim=-1)
    expected = (teacher_probs * (teacher_probs.log() - student_probs.log())).sum(-1).mean() * 4
    torch.testing.assert_close(loss, expected)


def test_evaluation_loss_is_the_students_own(tmp_path, batch):
    trainer, student, _ = _trainer(tmp_path, distillation_alpha=1.0)
    loss, outputs = _loss(trainer, student.eval(), batch)
    torch.testing.assert_close(loss, F.cross_entropy(outputs.logits, batch["labels"]))
    assert not any(parameter.requires_grad for parameter in trainer.teacher.parameters())


def test_a_student_learns_from_the_teacher_alone(trained, tmp_path):
    """alpha = 1: the student never sees a label, only the trained teacher's answers on the augmented digits."""
    teacher_dir = trained[0] / train.FINAL_MODEL_DIR
    results = train_tiny(tmp_path, "--num_train_epochs", "3", "--teacher_model_name_or_path", str(teacher_dir),
                         "--distillation_alpha", "1.0")
    assert results["test_accuracy"] > 0.35, results  # chance is 0.1
    summary = json.loads((tmp_path / train.FINAL_MODEL_DIR / "training_summary.json").read_text())
    distillation = summary["recipe"]["distillation"]
    assert distillation["teacher_model_name_or_path"] == str(teacher_dir)
    assert distillation["distillation_type"] == "hard" and distillation["teacher_stem"] == "patchify"
    card = (tmp_path / train.FINAL_MODEL_DIR / "README.md").read_text()
    teacher_size = f"{distillation['teacher_num_parameters']:,}"
    assert f"| distillation | hard (weight 1.0) from a {teacher_size}-parameter plain ViT teacher" in card


def test_a_teacher_for_other_labels_is_refused(trained, tmp_path):
    teacher = ViTMNISTForImageClassification.from_pretrained(trained[0] / train.FINAL_MODEL_DIR)
    teacher.config.id2label = {i: name for i, name in enumerate("abcdefghij")}
    teacher.save_pretrained(tmp_path / "teacher")
    with pytest.raises(SystemExit, match="same dataset"):
        train_tiny(tmp_path / "run", "--teacher_model_name_or_path", str(tmp_path / "teacher"))


def test_distillation_weight_outside_0_1_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="Bad argument: --distillation_alpha must be in"):
        train_tiny(tmp_path, "--distillation_alpha", "1.5")
