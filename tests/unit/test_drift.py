"""Drift scores on populations with known shifts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from streamflow.core.errors import InvalidInput
from streamflow.monitoring.drift import Thresholds, categorical_scores, category_shares, compare, js_distance, psi
from streamflow.storage.frames import NULL

RNG = np.random.default_rng(0)
N = 5000


def _pop(shift: float = 0.0, p_fiber: float = 0.44, extra_category: bool = False) -> pd.DataFrame:
    net = RNG.choice(["DSL", "Fiber optic", "No"], size=N, p=[0.8 - p_fiber, p_fiber, 0.2])
    if extra_category:
        net[: N // 5] = "Satellite"
    return pd.DataFrame(
        {
            "user_id": [f"u{i}" for i in range(N)],
            "monthly_fee": RNG.normal(65 + shift * 30, 30, N),
            "failed_payments_90d": RNG.poisson(0.2 + shift, N),
            "net_service": net,
            "paperless_billing": RNG.random(N) < 0.59,
        }
    )


def test_identical_samples_score_about_zero():
    ref = _pop()
    rep = compare(ref, ref.copy())
    assert rep.drifted == [] and rep.share_drifted == 0.0
    assert (rep.table["score"].abs() < 1e-9).all()
    other = _pop()  # a second sample of the same population
    assert compare(ref, other).drifted == []


def test_a_one_sd_mean_shift_is_flagged():
    ref, cur = _pop(), _pop(shift=1.0)
    rep = compare(ref, cur, reference_label="2024-01-31", current_label="2024-02-29")
    row = rep.table.set_index("feature").loc["monthly_fee"]
    assert row["drifted"] and row["method"] == "PSI" and row["score"] > 0.2 and row["second_score"] > 0.1
    assert rep.table["feature"].iloc[0] in rep.drifted  # drifted features first
    assert "failed_payments_90d" in rep.drifted
    assert "paperless_billing" not in rep.drifted


def test_a_new_category_is_flagged():
    rep = compare(_pop(), _pop(extra_category=True))
    row = rep.table.set_index("feature").loc["net_service"]
    assert row["drifted"] and row["method"] == "L-infinity" and row["new_categories"] == "Satellite"
    assert row["second_score"] < 0.05  # chi-square p-value


def test_scores_are_bounded_and_symmetric_where_they_should_be():
    a, b = RNG.normal(0, 1, 4000), RNG.normal(3, 1, 4000)
    assert 0 <= js_distance(a, b) <= 1 and js_distance(a, a) == pytest.approx(0, abs=1e-12)
    assert psi(a, b) > 1
    assert categorical_scores({"x": 10}, {"y": 10}) == (1.0, ["y"])
    assert categorical_scores({"x": 10, "y": 10}, {"x": 1, "y": 1}) == (0.0, [])


def test_category_shares_count_values_as_text_with_nulls_named():
    ref = pd.Series([True, False, None, True], dtype="boolean")
    cur = pd.Series(["True", "True", None, None], dtype="object")
    s = category_shares(ref, cur)
    assert s.loc["True", "reference_count"] == 2 and s.loc["True", "current_count"] == 2
    assert s.loc[NULL, "reference_count"] == 1 and s.loc[NULL, "current_count"] == 2
    assert s.loc["False", "current_count"] == 0 and s["reference"].sum() == pytest.approx(1)


def test_report_downloads_and_histograms():
    rep = compare(_pop(), _pop(shift=1.0), thresholds=Thresholds(psi=0.1))
    assert rep.thresholds.psi == 0.1
    csv = rep.to_csv().decode()
    assert csv.splitlines()[0].startswith("feature,") and "monthly_fee" in csv
    page = rep.to_html()
    assert page.startswith("<!doctype html>") and "monthly_fee" in page and "plotly" in page.lower()
    h = rep.histogram("monthly_fee")
    assert list(h.columns) == ["bin", "reference", "current"] and h["reference"].sum() == pytest.approx(1)
    assert rep.histogram("net_service")["current"].sum() == pytest.approx(1)


def test_bad_requests():
    with pytest.raises(InvalidInput, match="not in both"):
        compare(_pop(), _pop().drop(columns=["monthly_fee"]), features=["monthly_fee"])
    with pytest.raises(InvalidInput, match="at least one row"):
        compare(_pop(), _pop().iloc[:0])


def test_every_verdict_says_its_metric_score_threshold_and_what_moved():
    from streamflow.monitoring.drift import largest_move, reason

    moved = largest_move(
        {"Month-to-month": 55, "One year": 30, "Two year": 15}, {"Month-to-month": 71, "One year": 20, "Two year": 9}
    )
    assert moved == "Month-to-month 55% → 71%"
    said = reason("contract_type", "categorical", 0.16, 0.1, moved=moved)
    assert said == "contract_type drifted: L-infinity 0.16 ≥ 0.1; Month-to-month 55% → 71%"
    assert reason("monthly_fee", "numeric", 0.05, 0.2, 0.04, 0.1).startswith("monthly_fee stable: PSI 0.05 < 0.2")
    assert "Jensen-Shannon 0.12 ≥ 0.1" in reason("monthly_fee", "numeric", 0.05, 0.2, 0.12, 0.1)
    assert "drifted" in reason("monthly_fee", "numeric", 0.05, 0.2, 0.12, 0.1)
    assert "new categories Satellite" in reason("net_service", "categorical", 0.01, 0.1, new="Satellite")
