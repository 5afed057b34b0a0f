"""The lift's paired bootstrap: its AUC of a resampling is scikit-learn's, ties included."""

from __future__ import annotations


def test_the_lift_bootstrap_auc_equals_scikit_learn():
    import numpy as np
    from sklearn.metrics import roc_auc_score

    from streamflow.monitoring.lift import _SortedScores, paired_auc_differences

    rng = np.random.default_rng(3)
    y = rng.random(3000) < 0.3
    p = np.round(rng.random(3000) + 0.3 * y, 2)  # rounded: ties
    s = _SortedScores(y, p)
    assert abs(s.auc(np.ones(3000, dtype=int)) - roc_auc_score(y, p)) < 1e-12
    idx = rng.integers(0, 3000, 3000)
    assert abs(s.auc(np.bincount(idx, minlength=3000)) - roc_auc_score(y[idx], p[idx])) < 1e-12
    diffs = paired_auc_differences(y, p, p, 20, rng)
    assert len(diffs) == 20 and np.allclose(diffs, 0)
