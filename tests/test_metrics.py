import evaluate
import pytest

from hf_vit_mnist.metrics import CLASSIFICATION_REPORT_PATH


@pytest.fixture(scope="module")
def metric():
    return evaluate.load(CLASSIFICATION_REPORT_PATH)


def test_against_hand_computed_values(metric):
    # true:      0  0  0  1  1  2  2  2
    # predicted: 0  0  1  1  2  2  2  0
    result = metric.compute(predictions=[0, 0, 1, 1, 2, 2, 2, 0], references=[0, 0, 0, 1, 1, 2, 2, 2], per_class=True)
    assert result["accuracy"] == pytest.approx(5 / 8)
    # class 0: P = 2/3, R = 2/3; class 1: P = 1/2, R = 1/2; class 2: P = 2/3, R = 2/3
    assert result["precision"] == pytest.approx([2 / 3, 1 / 2, 2 / 3])
    assert result["recall"] == pytest.approx([2 / 3, 1 / 2, 2 / 3])
    assert result["f1"] == pytest.approx([2 / 3, 1 / 2, 2 / 3])
    assert result["macro_f1"] == pytest.approx((2 / 3 + 1 / 2 + 2 / 3) / 3)
    assert result["support"] == [3, 2, 3]
    assert result["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [1, 0, 2]]


def test_classes_never_predicted_or_absent(metric):
    result = metric.compute(predictions=[0, 0, 0], references=[0, 1, 1], num_classes=4, per_class=True)
    assert result["precision"] == pytest.approx([1 / 3, 0, 0, 0])
    assert result["recall"] == pytest.approx([1, 0, 0, 0])
    assert result["macro_f1"] == pytest.approx((0.5 + 0) / 2)  # classes 2 and 3 never occur: not averaged
    assert len(result["confusion_matrix"]) == 4


def test_scalars_only_by_default(metric):
    assert set(metric.compute(predictions=[1, 2], references=[1, 2])) == {"accuracy", "macro_f1"}
