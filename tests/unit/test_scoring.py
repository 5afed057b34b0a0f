"""Explain's score: the kept numbers give scikit-learn's probability, and the contributions add up."""

from __future__ import annotations

from datetime import date


def test_a_kept_model_scores_as_scikit_learn_and_its_contributions_add_up():
    import numpy as np
    import pandas as pd

    from streamflow.monitoring.model_check import MODELS, _model, design_matrix
    from streamflow.monitoring.scoring import KeptModel

    rng = np.random.default_rng(7)
    n = 600
    frame = pd.DataFrame(
        {
            "monthly_fee": rng.normal(60, 20, n),
            "watch_hours_30d": np.where(rng.random(n) < 0.1, np.nan, rng.gamma(2, 10, n)),  # nulls: the median
            "contract_type": rng.choice(["Month-to-month", "One year", "Two year"], n),  # one-hot, catalog values
            "paperless_billing": rng.random(n) < 0.5,
        }
    )
    y = (frame["contract_type"] == "Month-to-month") & (rng.random(n) < 0.6) | (rng.random(n) < 0.1)
    features = list(frame.columns)
    x = design_matrix([frame], features)[0]
    pipeline = _model(MODELS[0]).fit(x, y)
    kept = KeptModel.of(pipeline, list(x.columns), features, date(2024, 1, 31), 0.7, n)

    for i in (0, 1, int(np.flatnonzero(frame["watch_hours_30d"].isna())[0])):
        score, parts = kept.explain(frame.iloc[i])
        assert abs(score - pipeline.predict_proba(x.iloc[[i]])[0, 1]) < 1e-9
        logit = np.log(score / (1 - score))
        assert abs(kept.intercept + parts["contribution"].sum() - logit) < 1e-9
        assert set(parts["feature"]) == set(features)
    # a feature missing from the row takes its median, and the score is still a probability
    score, _ = kept.explain(frame.iloc[0].drop("monthly_fee"))
    assert 0 < score < 1
    assert abs(kept.average_score - 1 / (1 + np.exp(-kept.intercept))) < 1e-12


def test_a_column_the_catalog_does_not_declare_is_one_hot_when_it_holds_text():
    import pandas as pd

    from streamflow.monitoring.scoring import design_matrix

    a = pd.DataFrame({"term": ["long", None, "short"], "ratio": [0.5, None, 2.0], "flag": [True, False, None]})
    b = pd.DataFrame({"term": ["mid", "long", "long"], "ratio": [1.0, 1.0, None], "flag": [None, None, True]})
    b["flag"] = b["flag"].astype("boolean")
    xa, xb = design_matrix([a, b], ["term", "ratio", "flag"])
    assert list(xa.columns) == list(xb.columns) == ["term=long", "term=mid", "term=short", "ratio", "flag"]
    assert xa["term=long"].tolist() == [1.0, 0.0, 0.0] and xb["term=mid"].tolist() == [1.0, 0.0, 0.0]
    assert xa["ratio"].isna().tolist() == [False, True, False] and xb["flag"].tolist()[2] == 1.0
