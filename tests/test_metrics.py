"""Evaluation metrics: accuracy, per-class precision/recall/F1 and the confusion matrix, plus their plots."""

import numpy as np

from vidbatch.apps.metrics import (
    classification_report,
    confusion_matrix,
    plot_confusion,
)


def test_report_matches_a_hand_count():
    true, pred = [0, 0, 0, 1, 1, 2], [0, 0, 1, 1, 2, 2]
    report = classification_report(true, pred, ["a", "b", "c"])
    assert np.isclose(report["accuracy"], 4 / 6)
    assert report["confusion"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    b = report["per_class"]["b"]
    assert np.isclose(b["precision"], 0.5) and np.isclose(b["recall"], 0.5) and b["support"] == 2
    assert np.isclose(report["per_class"]["c"]["precision"], 0.5) and report["per_class"]["c"]["recall"] == 1.0


def test_a_class_never_seen_nor_predicted_does_not_count_in_macro_f1():
    report = classification_report([0, 1], [0, 1], ["a", "b", "c"])
    assert report["macro_f1"] == 1.0 and report["per_class"]["c"]["support"] == 0
    assert confusion_matrix([0, 1], [0, 1], 3).shape == (3, 3)


def test_confusion_plot_is_a_png(tmp_path):
    plot_confusion([[2, 1], [0, 3]], ["a", "b"], str(tmp_path / "c.png"))
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
