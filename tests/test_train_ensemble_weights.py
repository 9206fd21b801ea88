"""Per-tag ensemble weights: tuned on one half of validation, judged on the other, kept only if they win."""
from __future__ import annotations

import numpy as np

from hashtag.train.ensemble_weights import MARGIN, simplex_grid, tune_weights, weights_trial


def test_grid_covers_the_simplex_and_the_mean() -> None:
    grid = simplex_grid(3)
    np.testing.assert_allclose(grid.sum(axis=1), 1.0)
    assert len(grid) == 16 and any(np.allclose(w, 1 / 3) for w in grid)
    assert any(np.allclose(w, [1, 0, 0]) for w in grid)
    assert len(simplex_grid(2)) == 5  # 0, .25, .5, .75, 1: the mean is on the grid


def _two_specialists(n: int = 600, seed: int = 0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Model a ranks tag 0 well and tag 1 at random; model b the reverse."""
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, 2)) < 0.3).astype(np.float32)
    noise = rng.random((n, 2))
    a = np.stack([0.6 * labels[:, 0] + 0.4 * rng.random(n), noise[:, 1]], axis=1)
    b = np.stack([noise[:, 0], 0.6 * labels[:, 1] + 0.4 * rng.random(n)], axis=1)
    return labels, {"a": a, "b": b}


def test_tuning_finds_each_tags_specialist() -> None:
    labels, probs = _two_specialists()
    w = tune_weights(labels, np.stack([probs["a"], probs["b"]]), simplex_grid(2))
    assert w[0, 0] > 0.5 and w[1, 1] > 0.5


def test_weights_are_kept_only_when_held_out_photos_say_so() -> None:
    labels, probs = _two_specialists()
    helpful = weights_trial(["a", "b"], labels, probs)
    assert helpful["kept"] and helpful["held_out_mAP_weighted"] > helpful["held_out_mAP_mean"] + MARGIN
    same = weights_trial(["a", "b"], labels, {"a": probs["a"], "b": probs["a"].copy()})
    assert not same["kept"] and same["held_out_mAP_weighted"] == same["held_out_mAP_mean"]


def test_unknown_labels_stay_out_of_the_trial() -> None:
    labels, probs = _two_specialists()
    masked = labels.copy()
    masked[::2, 1] = -1  # unknown on half the photos, as partial labels are
    trial = weights_trial(["a", "b"], masked, probs)
    assert 0 < trial["held_out_mAP_mean"] <= 1 and trial["kept"]
