"""An `evaluate` module for single-label classification: accuracy, macro-F1, and on request per-class
precision / recall / F1 and the confusion matrix. It ships with the package and loads by path, offline:

    import evaluate
    from hf_vit_mnist.metrics import CLASSIFICATION_REPORT_PATH
    metric = evaluate.load(CLASSIFICATION_REPORT_PATH)
    metric.compute(predictions=[0, 1, 1], references=[0, 1, 0])  # {'accuracy': 0.667, 'macro_f1': 0.667}
"""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = "Accuracy and macro-averaged F1, optionally per-class precision, recall, F1 and the confusion matrix."
_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[int]`): predicted class ids.
    references (`list[int]`): true class ids.
    num_classes (`int`, optional): number of classes; defaults to 1 + the largest id seen.
    per_class (`bool`, defaults to False): also return per-class lists and the confusion matrix.
Returns:
    accuracy, macro_f1 (floats); with per_class: precision, recall, f1, support (lists, one entry per class) and
    confusion_matrix (rows: true class, columns: predicted class).
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class ClassificationReport(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references, num_classes=None, per_class=False):
        predictions, references = np.asarray(predictions, dtype=np.int64), np.asarray(references, dtype=np.int64)
        if len(predictions) == 0:
            raise ValueError("No predictions to score.")
        num_classes = num_classes or int(max(predictions.max(), references.max())) + 1
        confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
        np.add.at(confusion, (references, predictions), 1)
        true_positives = np.diag(confusion).astype(np.float64)
        predicted, actual = confusion.sum(0), confusion.sum(1)
        precision = np.divide(true_positives, predicted, out=np.zeros(num_classes), where=predicted > 0)
        recall = np.divide(true_positives, actual, out=np.zeros(num_classes), where=actual > 0)
        denominator = precision + recall
        f1 = np.divide(2 * precision * recall, denominator, out=np.zeros(num_classes), where=denominator > 0)
        present = actual > 0  # macro average over the classes that occur, as scikit-learn does with labels given
        result = {"accuracy": float(true_positives.sum() / len(references)), "macro_f1": float(f1[present].mean())}
        if per_class:
            result.update(precision=precision.tolist(), recall=recall.tolist(), f1=f1.tolist(),
                          support=actual.tolist(), confusion_matrix=confusion.tolist())
        return result
