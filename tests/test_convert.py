import copy

import pytest
import torch
from conftest import make_tiny_config

from hf_vit_mnist import ViTMNISTForImageClassification
from hf_vit_mnist.convert import to_transformers_vit


def test_transformers_vit_computes_the_same_function():
    torch.manual_seed(0)
    ours = ViTMNISTForImageClassification(make_tiny_config(patch_size=4)).eval()
    theirs = to_transformers_vit(ours).eval()
    pixels = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(theirs(pixels).logits, ours(pixels).logits, atol=1e-5, rtol=0)


def test_same_gradients_in_training_mode():
    torch.manual_seed(0)
    ours = ViTMNISTForImageClassification(make_tiny_config(patch_size=4)).train()
    theirs = to_transformers_vit(copy.deepcopy(ours)).train()
    pixels, labels = torch.randn(4, 1, 28, 28), torch.tensor([1, 2, 3, 4])
    ours(pixels, labels=labels).loss.backward()
    theirs(pixels, labels=labels).loss.backward()
    torch.testing.assert_close(theirs.classifier.weight.grad, ours.classifier.weight.grad, atol=1e-6, rtol=1e-4)
    theirs_grads = {name: parameter.grad for name, parameter in theirs.named_parameters()}
    for name, parameter in ours.named_parameters():
        torch.testing.assert_close(theirs_grads[name], parameter.grad, atol=1e-6, rtol=1e-4, msg=name)


@pytest.mark.slow
def test_benchmark_quick_run_writes_json_and_table(tmp_path):
    import benchmark  # scripts/benchmark.py

    results = benchmark.main(["--quick", "--output_dir", str(tmp_path)])
    release = results["configs"]["release"]
    assert release["max_logit_difference"] < 1e-4
    assert set(release["variants"]) == {"ours eager fp32", "transformers eager fp32"}
    assert (tmp_path / "results.md").read_text().count("| ours eager fp32 |") == 1


def test_benchmark_profile_lists_the_heaviest_ops_of_both_models():
    import benchmark  # scripts/benchmark.py

    table = benchmark.profile_training_step("release", steps=1, top=4)
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    assert len(rows) == 4
    assert any("aten::" in row for row in rows)
    ours_ms = [float(row.split("|")[2]) for row in rows]
    assert ours_ms == sorted(ours_ms, reverse=True) and ours_ms[0] > 0


@pytest.mark.slow
def test_benchmark_trainer_writes_every_arm(tmp_path):
    import benchmark_trainer  # scripts/benchmark_trainer.py

    results = benchmark_trainer.main(["--steps", "2", "--repeats", "1", "--modes", "eager",
                                      "--output_dir", str(tmp_path)])
    arms = results["images_per_second"]
    assert set(arms) == {"ours eager", "transformers eager", benchmark_trainer.DEFAULTS_ARM}
    assert all(arm[key]["median"] > 0 for arm in arms.values() for key in ("train", "evaluate"))
    table = (tmp_path / "trainer.md").read_text()
    assert table.count("| transformers eager") == 2 and "| 1.00x |" in table
