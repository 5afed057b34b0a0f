"""The Training frame page's chart data: a column's distribution by churn label, as a few rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from streamflow.features.training import distribution


def _frame(n: int = 1000) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "contract_type": pd.Series(rng.choice(["Month-to-month", "One year", None], n), dtype="object"),
            "monthly_fee": rng.uniform(10, 100, n),
            "churn_label": pd.array(rng.choice([True, False, None], n), dtype="boolean"),
        }
    )


def test_categories_by_label_sum_to_100_with_nulls_named():
    df = _frame()
    d = distribution(df, "contract_type", by="churn_label")
    assert set(d["group"]) == {"churned", "stayed", "(no label)"}
    assert set(d["value"]) == {"Month-to-month", "One year", "(null)"}
    for _, g in d.groupby("group"):
        assert g["percent"].sum() == pytest.approx(100)
    churned = df[df["churn_label"].fillna(False).astype(bool)]
    share = (churned["contract_type"] == "One year").mean() * 100
    row = d[(d["group"] == "churned") & (d["value"] == "One year")]
    assert row["percent"].iloc[0] == pytest.approx(share)


def test_numbers_share_bins_across_groups():
    d = distribution(_frame(), "monthly_fee", by="churn_label", bins=10)
    assert len(d) == 30 and d.groupby("group")["value"].apply(list).map(tuple).nunique() == 1
    assert d.groupby("group")["percent"].sum().to_numpy() == pytest.approx([100, 100, 100])
