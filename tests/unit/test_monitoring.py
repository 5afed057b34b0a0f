"""Monitoring's scores and verdicts at their edges, on profiles built in memory (no database):
a score equal to its threshold, a month's share equal to its, missing months, a new category,
a feature added to the catalog later, and profile scores against the frames' own."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from streamflow.core.dates import parse_days
from streamflow.core.errors import InvalidInput
from streamflow.monitoring import drift
from streamflow.monitoring.alerts import drift_alerts, quality_alerts
from streamflow.monitoring.distributions import PERCENTILES, Distribution
from streamflow.monitoring.over_time import (
    MonitorConfig,
    MonitorGrid,
    _checked_thresholds,
    coarse_starts,
    month_verdict,
    score,
    score_month,
)
from streamflow.storage.frames import NULL

JAN, FEB, MAR = date(2024, 1, 31), date(2024, 2, 29), date(2024, 3, 31)


def fine_edges(values: np.ndarray) -> np.ndarray:
    """What `distributions._fix_edges` computes in SQL: percentile_disc at every percentile, the range,
    and ten steps beyond each end over half of it."""
    s = np.sort(values)
    qs = [s[max(int(np.ceil(p * len(s))) - 1, 0)] for p in PERCENTILES]  # percentile_disc
    lo, hi = s[0], s[-1]
    step = ((hi - lo) or abs(hi) or 1.0) / 2 / 10
    return np.unique(np.concatenate([lo - step * np.arange(10, 0, -1), [lo], qs, [hi], hi + step * np.arange(1, 11)]))


def numeric(values, edges, feature="f", nulls=0) -> Distribution:
    """A profile as the SQL counts it: width_bucket(value, edges) = searchsorted(edges, value, 'right')."""
    values = np.asarray(values, dtype=float)
    counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)
    return Distribution(feature, "v", "numeric", len(values) + nulls, nulls, counts)


def categorical(counts: dict, feature="c") -> Distribution:
    return Distribution(feature, "v", "categorical", sum(counts.values()), counts.get(NULL, 0), counts)


def test_profile_scores_equal_the_frames_scores():
    """Scored on fixed fine bins, a month pair gives the Drift page's PSI and JS: exactly for a
    discrete feature, to the fine bins' resolution for a continuous one."""
    rng = np.random.default_rng(0)
    cases = {
        "discrete": (rng.poisson(0.4, 20_000), rng.poisson(0.7, 20_000)),
        "continuous": (rng.gamma(3, 20, 20_000), rng.gamma(3, 20, 20_000) * 1.12),
    }
    for name, (a, b) in cases.items():
        edges = fine_edges(a)
        got = score(numeric(a, edges), numeric(b, edges), MonitorConfig())
        psi, js = drift.psi(a.astype(float), b.astype(float)), drift.js_distance(a.astype(float), b.astype(float))
        tol = 1e-12 if name == "discrete" else 0.01
        assert got["score"] == pytest.approx(psi, abs=tol), name
        assert got["second_score"] == pytest.approx(js, abs=tol), name


def test_a_score_equal_to_its_threshold_drifts_and_a_months_share_equal_to_its_does_not():
    edges = np.array([1.0, 2.0])
    ref = numeric([0.5] * 50 + [1.5] * 50, edges)
    cur = numeric([0.5] * 30 + [1.5] * 70, edges)
    exact = score(ref, cur, MonitorConfig())
    at_psi = MonitorConfig(thresholds={"f": {"psi": exact["score"], "js": 1.0}})
    assert score(ref, cur, at_psi)["drifted"]  # equal to the threshold: drifted (the Drift page's >=)
    above = MonitorConfig(thresholds={"f": {"psi": exact["score"] + 1e-9, "js": 1.0}})
    assert not score(ref, cur, above)["drifted"]

    half = pd.DataFrame({"drifted": [True, False]})
    assert month_verdict(half, 0.5) == {"scored": 2, "drifted": 1, "share": 0.5, "month_drifted": False}
    assert month_verdict(half, 0.49)["month_drifted"]
    assert month_verdict(pd.DataFrame({"drifted": []}), 0.5)["month_drifted"] is False


def test_a_new_category_drifts_however_small_its_share():
    ref = categorical({"Month-to-month": 500, "One year": 300, "Two year": 200})
    cur = categorical({"Month-to-month": 500, "One year": 300, "Two year": 199, "Weekly": 1})
    got = score(ref, cur, MonitorConfig())
    assert got["score"] < 0.01 and got["drifted"] and got["new_categories"] == "Weekly"
    same = score(ref, categorical({"Month-to-month": 5, "One year": 3, "Two year": 2}), MonitorConfig())
    assert same["score"] == pytest.approx(0.0) and not same["drifted"]


def test_missing_months_and_a_feature_added_later_are_not_scored():
    edges = np.array([1.0, 2.0])
    cur = {"f": numeric([0.5, 1.5, 2.5], edges), "late": numeric([1.0, 2.0], edges, feature="late")}
    # the first month against "the previous month": no baseline at all
    assert score_month(None, cur, MonitorConfig()).empty
    # a feature the catalog gained later: absent from the baseline, or all null there
    ref = {"f": numeric([0.5, 1.5, 2.5], edges)}
    assert score_month(ref, cur, MonitorConfig())["feature"].tolist() == ["f"]
    ref["late"] = Distribution("late", "v", "numeric", 3, 3, np.zeros(0, dtype=np.int64))
    assert score_month(ref, cur, MonitorConfig())["feature"].tolist() == ["f"]
    # the other way round, a month that lost every value of a feature drifts (infinitely)
    emptied = Distribution("f", "v", "numeric", 3, 3, np.zeros(3, dtype=np.int64))
    lost = score(ref["f"], emptied, MonitorConfig())
    assert lost["drifted"] and lost["score"] == float("inf") and lost["ratio"] == 10.0


def test_drifted_features_are_ordered_by_drift_times_importance():
    edges = np.array([1.0, 2.0])
    ref = {f: numeric([0.5] * 50 + [1.5] * 50, edges, feature=f) for f in ("a", "b", "c")}
    cur = {
        "a": numeric([0.5] * 10 + [1.5] * 90, edges, feature="a"),  # strong drift, unimportant
        "b": numeric([0.5] * 30 + [1.5] * 70, edges, feature="b"),  # milder drift, important
        "c": numeric([0.5] * 50 + [1.5] * 50, edges, feature="c"),  # no drift, important
    }
    out = score_month(ref, cur, MonitorConfig(), importance={"a": 0.001, "b": 0.2, "c": 0.3})
    assert out["feature"].tolist() == ["b", "a", "c"]
    assert out.loc[0, "impact"] == pytest.approx(out.loc[0, "ratio"] * 0.2)


def test_coarse_bins_follow_the_reference_quantiles():
    counts = np.array([0, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 0])  # each decile ends a fine bin
    assert coarse_starts(counts, 10).tolist() == [0, *range(2, 11)]
    lumpy = np.array([90, 5, 5])  # one value holds 90%: the frames cut it from the rest at the 90th percentile
    assert coarse_starts(lumpy, 10).tolist() == [0, 1]
    assert drift.quantile_edges(np.repeat([0.0, 1.0, 2.0], [90, 5, 5]), 10).tolist() == pytest.approx([0.0, 0.1])


def test_alerts_from_a_grid_and_from_quality():
    edges = np.array([1.0, 2.0])
    cfg = MonitorConfig()
    ref = {"f": numeric([0.5] * 50 + [1.5] * 50, edges), "g": numeric([0.5] * 50 + [1.5] * 50, edges, feature="g")}
    cur = {"f": numeric([0.5] * 10 + [1.5] * 90, edges), "g": numeric([0.5] * 50 + [1.5] * 50, edges, feature="g")}
    s = score_month(ref, cur, cfg).assign(month=FEB)
    months = pd.DataFrame([{"month": FEB, "baseline": "month:2024-01-31", **month_verdict(s, cfg.month_share)}])
    grid = MonitorGrid(cfg, "the previous month", s, months, "month:2024-01-31", {})
    alerts = drift_alerts(grid)
    assert [(a.kind, a.subject, a.as_of) for a in alerts] == [("feature_drift", "f", FEB)]  # 1 of 2: not > half
    assert "Jensen-Shannon" in alerts[0].message and alerts[0].value >= alerts[0].threshold
    assert drift_alerts(grid, months=[MAR]) == []

    q = pd.DataFrame(
        {"table": ["usage"] * 3 + ["users"], "month": [JAN, FEB, MAR, JAN], "pass_rate": [1.0, 1.0, 0.9, 1.0]}
    )
    got = quality_alerts(q)
    assert [(a.subject, a.as_of, a.value, a.threshold) for a in got] == [("usage", MAR, 0.9, 1.0)]
    assert quality_alerts(q, months=[FEB]) == []  # equal to its usual: no alert


def test_threshold_settings_are_checked_before_anything_is_stored():
    kinds = {"monthly_fee": "numeric", "contract_type": "categorical"}
    assert _checked_thresholds({"monthly_fee": {"psi": 0.3}}, kinds) == {"monthly_fee": {"psi": 0.3}}
    for bad, match in (
        ({"nope": {"psi": 0.3}}, "no monitored feature"),
        ({"contract_type": {"psi": 0.3}}, "its thresholds are linf"),
        ({"monthly_fee": {"psi": 0}}, "positive number"),
        ({"monthly_fee": {"js": float("nan")}}, "positive number"),
        ({"monthly_fee": {"js": True}}, "positive number"),
    ):
        with pytest.raises(InvalidInput, match=match):
            _checked_thresholds(bad, kinds)


def test_freshness_sla_durations():
    assert parse_days("35d") == 35 and parse_days(" 5w ") == 35
    for bad in ("35", "d", "3 months", "-1d"):
        with pytest.raises(InvalidInput, match="not a duration"):
            parse_days(bad)
