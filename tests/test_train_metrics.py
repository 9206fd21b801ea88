"""Metric functions against examples computed by hand (no tensorflow needed)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from hashtag.train.metrics import (
    average_precision,
    best_f1_threshold,
    binary_accuracy,
    choose_thresholds,
    mean_average_precision,
    precision_recall_curve,
    split_metrics,
)


def test_average_precision_by_hand() -> None:
    # Hits at ranks 1, 3, 5: precisions 1, 2/3, 3/5 -> AP = (1 + 2/3 + 3/5) / 3 = 34/45.
    y = np.array([1, 0, 1, 0, 1])
    s = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    assert average_precision(y, s) == pytest.approx(34 / 45)
    # Order of the input rows does not matter, only the ranking.
    perm = np.array([4, 2, 0, 3, 1])
    assert average_precision(y[perm], s[perm]) == pytest.approx(34 / 45)


def test_average_precision_groups_ties() -> None:
    # Tied scores form one threshold: (R 0.5, P 1) then (R 1, P 2/3) -> 0.5 + 0.5 * 2/3, whatever the tie order.
    s = np.array([0.9, 0.5, 0.5, 0.1])
    assert average_precision(np.array([1, 1, 0, 0]), s) == pytest.approx(5 / 6)
    assert average_precision(np.array([1, 0, 1, 0]), s) == pytest.approx(5 / 6)


def test_average_precision_extremes() -> None:
    assert average_precision(np.array([1, 1, 0]), np.array([0.9, 0.8, 0.1])) == 1.0
    assert average_precision(np.array([0, 0, 1]), np.array([0.9, 0.8, 0.1])) == pytest.approx(1 / 3)
    assert math.isnan(average_precision(np.array([0, 0]), np.array([0.3, 0.2])))
    with pytest.raises(ValueError, match="shape"):
        average_precision(np.array([1, 0]), np.array([0.3]))


def test_mean_average_precision_skips_tags_without_positives() -> None:
    y = np.array([[1, 0], [0, 0], [1, 0]])
    p = np.array([[0.9, 0.1], [0.2, 0.5], [0.1, 0.3]])
    # tag 0: positives ranked 1 and 3 -> (1 + 2/3) / 2; tag 1 has no positive and is left out.
    assert mean_average_precision(y, p) == pytest.approx(5 / 6)


def test_precision_recall_curve() -> None:
    precision, recall, thresholds = precision_recall_curve(np.array([1, 0, 1, 0]), np.array([0.8, 0.6, 0.4, 0.2]))
    np.testing.assert_allclose(thresholds, [0.8, 0.6, 0.4, 0.2])
    np.testing.assert_allclose(precision, [1, 1 / 2, 2 / 3, 1 / 2])
    np.testing.assert_allclose(recall, [0.5, 0.5, 1, 1])


def test_best_f1_threshold_midway_to_next_score() -> None:
    # F1 = 2tp / (tp + fp + P) at each cut: .9->.5 .8->.8 .7->.667 .6->.857 .3->.75 .1->.667; best cut at 0.6.
    y = np.array([1, 1, 0, 1, 0, 0])
    s = np.array([0.9, 0.8, 0.7, 0.6, 0.3, 0.1])
    t = best_f1_threshold(y, s)
    assert t == pytest.approx(0.45)
    assert list((s >= t).astype(int)) == [1, 1, 1, 1, 0, 0]


def test_best_f1_threshold_lowest_cut_and_no_positives() -> None:
    # Predicting everything positive is best (F1 .75); there is no lower score, so the threshold is the lowest.
    assert best_f1_threshold(np.array([1, 0, 1, 0, 1]), np.array([0.9, 0.8, 0.7, 0.6, 0.5])) == pytest.approx(0.5)
    assert best_f1_threshold(np.array([0, 0]), np.array([0.9, 0.1]), default=0.5) == 0.5


def test_choose_thresholds_per_tag() -> None:
    y = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    p = np.array([[0.9, 0.2], [0.4, 0.7], [0.6, 0.3], [0.1, 0.6]])
    thresholds = choose_thresholds(y, p, ["a", "b"])
    assert thresholds["a"] == pytest.approx(0.5)  # cut between 0.6 (positive) and 0.4 (negative): F1 = 1
    # b: F1 at cuts .7 -> 2/3, .6 -> 1/2, .3 -> 4/5, .2 -> 2/3; best .3 -> midway to .2.
    assert thresholds["b"] == pytest.approx(0.25)


def test_split_metrics_by_hand() -> None:
    y = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    p = np.array([[0.9, 0.2], [0.4, 0.7], [0.6, 0.3], [0.1, 0.6]])
    m = split_metrics(y, p, ["a", "b"], {"a": 0.5, "b": 0.5})
    # predictions: [[1,0],[0,1],[1,0],[0,1]]
    a, b = m["per_tag"]["a"], m["per_tag"]["b"]
    assert (a["precision"], a["recall"], a["f1"], a["support"], a["ap"]) == (1.0, 1.0, 1.0, 2, 1.0)
    assert (b["precision"], b["recall"], b["f1"], b["support"]) == (0.5, 0.5, 0.5, 2)
    assert b["ap"] == pytest.approx(5 / 6)  # positives at ranks 1 and 3
    assert m["mAP"] == pytest.approx((1 + 5 / 6) / 2)
    assert m["micro_f1"] == pytest.approx(0.75)  # tp 3, fp 1, fn 1
    assert m["macro_f1"] == pytest.approx(0.75)
    assert m["exact_match"] == 0.5
    assert m["hamming_loss"] == 0.25
    assert m["binary_accuracy"] == 0.75
    assert m["do_nothing_accuracy"] == 0.5
    assert m["n_images"] == 4


def test_binary_accuracy_is_keras_strict_threshold() -> None:
    # Keras' binary_accuracy counts p > 0.5 as positive, so exactly 0.5 is a negative.
    y = np.array([[1, 0, 0]])
    assert binary_accuracy(y, np.array([[0.5, 0.5, 0.2]])) == pytest.approx(2 / 3)
    assert binary_accuracy(y, np.array([[0.51, 0.5, 0.2]])) == 1.0


def test_do_nothing_baseline_is_high_on_sparse_labels() -> None:
    rng = np.random.default_rng(0)
    y = (rng.uniform(size=(200, 10)) < 0.15).astype(int)
    m = split_metrics(y, np.zeros((200, 10)), [str(i) for i in range(10)], {str(i): 0.5 for i in range(10)})
    assert m["binary_accuracy"] == m["do_nothing_accuracy"] == pytest.approx(1 - y.mean())
    assert m["micro_f1"] == 0.0


# ---------------------------------------------------------------- partial labels: -1 is unknown, left out

def test_average_precision_leaves_unknown_rows_out() -> None:
    y = np.array([1, -1, 0, 1])
    s = np.array([0.9, 0.8, 0.7, 0.6])
    # Known rows: positives ranked 1 and 3 -> (1 + 2/3) / 2; read as a negative the unknown would give 0.75.
    assert average_precision(y, s) == pytest.approx(5 / 6)
    assert average_precision(np.where(y < 0, 0, y), s) == pytest.approx(0.75)
    assert math.isnan(average_precision(np.array([-1, 0]), np.array([0.9, 0.1])))
    # A column of all-unknown labels has no AP and does not count in the mean.
    assert mean_average_precision(np.array([[1, -1], [0, -1]]), np.array([[0.9, 0.8], [0.1, 0.2]])) == 1.0


def test_thresholds_are_tuned_on_known_rows_only() -> None:
    y = np.array([1, -1, -1, 1, 0])
    s = np.array([0.9, 0.8, 0.7, 0.6, 0.3])
    # Known: (0.9, 1), (0.6, 1), (0.3, 0): F1 is 1 at the cut 0.6 -> midway to 0.3.
    assert best_f1_threshold(y, s) == pytest.approx(0.45)
    # Unknowns read as negatives would tie F1 2/3 at 0.9 and 0.6 and keep the higher: midway to 0.8.
    assert best_f1_threshold(np.where(y < 0, 0, y), s) == pytest.approx(0.85)
    assert choose_thresholds(np.c_[y, y], np.c_[s, s], ["a", "b"]) == {"a": pytest.approx(0.45),
                                                                        "b": pytest.approx(0.45)}


def test_split_metrics_by_hand_with_unknown_labels() -> None:
    y = np.array([[1, -1], [0, 1], [-1, 0], [0, 0]])
    p = np.array([[0.9, 0.8], [0.6, 0.7], [0.8, 0.2], [0.1, 0.6]])
    m = split_metrics(y, p, ["a", "b"], {"a": 0.5, "b": 0.5})
    # predictions [[1,1],[1,1],[1,0],[0,1]]; known: a rows 0,1,3 (y 1,0,0), b rows 1,2,3 (y 1,0,0)
    a, b = m["per_tag"]["a"], m["per_tag"]["b"]
    assert (a["precision"], a["recall"], a["support"], a["known"], a["ap"]) == (0.5, 1.0, 1, 3, 1.0)
    assert (b["precision"], b["recall"], b["support"], b["known"], b["ap"]) == (0.5, 1.0, 1, 3, 1.0)
    assert a["f1"] == pytest.approx(2 / 3) and m["micro_f1"] == pytest.approx(2 / 3)  # tp 2, fp 2, fn 0
    assert m["exact_match"] == 0.5  # rows 0 and 2: every known label right
    assert m["hamming_loss"] == pytest.approx(2 / 6)  # two wrong of six known
    assert m["binary_accuracy"] == pytest.approx(4 / 6)
    assert m["do_nothing_accuracy"] == pytest.approx(4 / 6)
    assert m["unknown_labels"] == 2 and m["mAP"] == 1.0
