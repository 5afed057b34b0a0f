"""The label monitor (issue 39, item 7): the churn rate per month and per feature bin, equal to
pandas over the CSVs; the change explained by the segment that carries it; a jump alerted, with a
link to the page that shows it; the horizon said where labels appear."""

from __future__ import annotations

import numpy as np
import pandas as pd

from streamflow import cli
from streamflow.core.catalog import LABEL_HORIZON
from streamflow.ingest import ingest_month
from streamflow.monitoring import labels
from streamflow.monitoring.alerts import check, listing
from tests.support import app_page, read_csv, use_settings


def _truth(folder) -> pd.DataFrame:
    """Each user's contract and label of a month, from its CSVs."""
    lab = read_csv(folder, "labels.csv")["churn_label"].astype(str).str.lower() == "true"
    subs = read_csv(folder, "subscriptions.csv")
    return subs[["contract_type"]].join(lab.rename("churned"), how="inner")


def test_the_label_monitor_over_three_months(fs_embedded, months, monkeypatch, capsys):
    settings, store = fs_embedded
    for folder, _ in months:
        ingest_month(folder, settings=settings)
    check(settings, store)  # what follows every ingest: the months' label counts, then the alerts
    kept = labels.kept(settings)
    by_month = kept.by_month()
    assert list(by_month["month"]) == [m for _, m in months]

    truths = {m: _truth(folder) for folder, m in months}
    for r in by_month.itertuples():
        t = truths[r.month]
        assert (r.users, r.churned) == (len(t), int(t["churned"].sum()))
        assert abs(r.rate - t["churned"].mean()) < 1e-12
    # a category's churn rate per value, as pandas reads it from the CSVs
    sig = kept.signal("contract_type")
    for m, t in truths.items():
        want = t.groupby("contract_type")["churned"].agg(["mean", "size"])
        got = sig[sig["month"] == m].set_index("bin")
        assert np.allclose(got.loc[want.index, "churn_rate"], want["mean"])
        assert list(got.loc[want.index, "users"]) == list(want["size"])
    # a number's coarse bins hold every labelled user, and their churned add up to the month's
    hours = kept.signal("watch_hours_30d")
    for r in by_month.itertuples():
        h = hours[hours["month"] == r.month]
        assert 3 <= len(h) <= labels.COARSE + 1 and h["users"].sum() <= r.users and h["churned"].sum() <= r.churned

    # the change, explained: one feature's segments carry the whole change between them
    jan, feb = by_month["month"].iloc[0], by_month["month"].iloc[1]
    change = by_month["change"].iloc[1]
    carried = sum(g.points for g in kept.segments(jan, feb) if g.feature == "contract_type")
    assert abs(carried - change) < 1e-9
    why = by_month["why"].iloc[1]
    top = kept.segments(jan, feb)[0]
    assert why.startswith(f"churn rate {by_month['rate'].iloc[0]:.1%} → {by_month['rate'].iloc[1]:.1%}")
    assert f"the largest move: {top.feature} = {top.bin}" in why

    # a jump is alerted with its why and a link to the page that shows it; a month that did not jump is not
    kept_alerts = listing(settings, states=("open", "acknowledged", "resolved"))
    shifts = kept_alerts[kept_alerts["kind"] == "label_shift"]
    assert set(shifts["as_of"]) == set(by_month.loc[by_month["jumped"], "month"])
    assert by_month["jumped"].any(), by_month[["month", "rate", "change"]]  # the generated months do jump
    first = shifts.sort_values("as_of").iloc[0]
    assert "the largest move" in first["message"] and first["link"] == f"monitoring?mon_month={first['as_of']}"

    use_settings(monkeypatch, settings)
    cli.main(["monitor", "--no-check"])
    out = capsys.readouterr().out
    assert f"http://127.0.0.1:8501/monitoring?mon_month={first['as_of']}" in out or first["state"] == "resolved"

    # the Monitoring page draws it, the horizon above; a linked feature opens its bins
    at = app_page(settings, monkeypatch, "monitoring")
    assert not at.exception, [x.value for x in at.exception]
    assert any(LABEL_HORIZON in c.value for c in at.caption)
    at.selectbox(key="mon_label_feature").set_value("contract_type").run()
    assert not at.exception, [x.value for x in at.exception]
