"""Monitoring over time on the real store (embedded PostgreSQL, Feast, Great Expectations): the
demo's price rise flagged and contract_type not, profile scores equal to the Drift page's frame
scores, every kind of alert raised and resolved, `streamflow monitor`'s exit code, a dataset as the
baseline, and the page and the Overview in AppTest."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest

from streamflow import cli
from streamflow.core.errors import InvalidInput, NotFound
from streamflow.features.materialize import materialize
from streamflow.features.training import build_training_frame
from streamflow.ingest import IngestError, ingest_month
from streamflow.monitoring import alerts, distributions, drift, over_time
from streamflow.storage import db
from tests.support import app_page, use_settings

JAN, FEB, MAR, APR = date(2024, 1, 31), date(2024, 2, 29), date(2024, 3, 31), date(2024, 4, 30)


@pytest.fixture
def monitored(fs_embedded, months):
    """Three months ingested, the online store materialized up to February only."""
    settings, store = fs_embedded
    for folder, _ in months:
        ingest_month(folder, settings=settings)
    materialize(end=str(FEB), settings=settings, store=store)
    return settings, store


def _open(settings, kind: str | None = None, states=("open",)) -> set[tuple[str, str, date]]:
    found = alerts.listing(settings, states=states)
    return {(r.kind, r.subject, r.as_of) for r in found.itertuples() if kind is None or r.kind == kind}


def _raised(settings, kind: str | None = None) -> set[tuple[str, str, date]]:
    """Every alert kept, whatever its state now."""
    return _open(settings, kind, alerts.STATES)


def test_the_demos_price_rise_is_flagged_and_profile_scores_equal_the_frames(monitored):
    settings, store = monitored
    found = alerts.check(settings, store)
    drifted = {s for k, s, d in _raised(settings, "feature_drift") if d == FEB}
    assert {"monthly_fee", "failed_payments_90d"} <= drifted, found
    assert "contract_type" not in {s for _, s, _ in _raised(settings, "feature_drift")}
    assert not _raised(settings, "month_drift")  # a few features of twenty, not more than half

    # the same scores and verdicts as the Drift page's on the two months' frames
    g = over_time.grid(settings)
    ours = g.scores[g.scores["month"] == FEB].set_index("feature")
    a = build_training_frame(JAN, settings=settings, store=store).frame
    b = build_training_frame(FEB, settings=settings, store=store).frame
    theirs = drift.compare(a, b, list(ours.index)).table.set_index("feature")
    assert ours["drifted"].to_dict() == theirs["drifted"].to_dict()
    for f, r in ours.iterrows():
        assert r["score"] == pytest.approx(theirs.at[f, "score"], abs=0.01), f
    assert g.months.set_index("month").at[JAN, "scored"] == 0  # the first month has no previous one

    # what matters: the baseline model's importances rank the month's drifted features
    assert g.importance_source == f"month:{JAN}" and len(g.importance) == len(distributions.monitored())
    feb = ours[ours["drifted"]]
    assert feb["impact"].tolist() == sorted(feb["impact"], reverse=True)

    # the month's profile equals the snapshot, and one view's counts sum to its rows
    kept = distributions.load(settings, [distributions.month_source(FEB)])[distributions.month_source(FEB)]
    assert (
        kept["monthly_fee"].rows == len(b) and int(kept["monthly_fee"].counts.sum()) == b["monthly_fee"].notna().sum()
    )
    assert kept["contract_type"].counts == b["contract_type"].value_counts().to_dict()


def test_alerts_are_raised_acknowledged_and_resolved(monitored, months, month_copy, monkeypatch, capsys):
    settings, store = monitored
    alerts.check(settings, store)
    # the online store lags March: one alert per online view, resolved by materializing
    assert {s for _, s, _ in _open(settings, "online_stale")} == {
        "user_profile_fv", "subs_profile_fv", "usage_agg_30d_fv", "payments_agg_90d_fv", "support_agg_90d_fv",
    }  # fmt: skip
    # the CLI: prints them and exits 1 while one is open
    use_settings(monkeypatch, settings)
    assert cli.main(["monitor"]) == 1
    out = capsys.readouterr().out
    assert "failed_payments_90d drifted at 2024-02-29" in out and "online_stale" in out
    assert "monthly_fee drifted" not in out  # resolved by itself: March passed

    # raised, then resolved by itself: the price rise moved the fee in February, March passed against February
    kept = alerts.listing(settings, states=alerts.STATES)
    fee = kept[(kept["subject"] == "monthly_fee") & (kept["as_of"] == FEB)].iloc[0]
    assert fee.state == "resolved" and fee.resolution == "monthly_fee passed the feature_drift check at 2024-03-31"
    assert ("feature_drift", "monthly_fee", MAR) not in _raised(settings)
    # what still holds at the latest month stays open; a month's alert that the next month repeats too
    still = _open(settings, "feature_drift")
    assert all(month == MAR or ("feature_drift", s, MAR) in _raised(settings) for _, s, month in still)

    # acknowledged in bulk, from the CLI: every open drift alert at once
    ids = alerts.listing(settings, states=("open",)).query("kind == 'feature_drift'")["id"].tolist()
    assert len(ids) >= 2
    assert cli.main(["monitor", "--no-check", "--ack", ",".join(map(str, ids)), "--by", "tester"]) == 1
    assert f"alert(s) {', '.join(map(str, ids))} acknowledged by tester" in capsys.readouterr().out
    with pytest.raises(NotFound, match=f"no open alert {ids[0]}"):
        alerts.acknowledge(settings, [ids[0]], "tester")
    alerts.check(settings, store)  # a later check keeps them acknowledged, not open again
    again = alerts.listing(settings).set_index("id").loc[ids]
    assert set(again["state"]) == {"acknowledged"} and set(again["acknowledged_by"]) == {"tester"}

    materialize(settings=settings, store=store)
    alerts.after_change(settings, store)
    assert not _open(settings, "online_stale")
    resolved = alerts.listing(settings, states=("resolved",))
    stale = resolved[resolved["kind"] == "online_stale"]
    assert len(stale) == 5 and set(stale["resolution"]) == {"the online store caught up with the snapshots"}

    # a refused month judges nothing stored: no quality alert, whether it re-sent a stored month or a new one
    bad = month_copy(2)
    usage = pd.read_csv(bad / "usage_agg_30d.csv", dtype=str, keep_default_na=False)
    usage.loc[3, "watch_hours_30d"] = "-4.5"
    usage.to_csv(bad / "usage_agg_30d.csv", index=False)
    with pytest.raises(IngestError):
        ingest_month(bad, settings=settings)
    with pytest.raises(IngestError):
        ingest_month(bad, "2024-04-30", settings=settings)
    alerts.check(settings, store)
    assert not _open(settings, "quality")
    assert APR not in set(over_time.quality(settings)["month"])
    # stored data that fails its suite (found by re-validating it) is a quality alert, resolved when it passes
    from streamflow.quality.revalidate import revalidate_snapshot

    with db.connection(settings) as conn:
        user, hours = conn.execute(
            "SELECT user_id, watch_hours_30d FROM usage_agg_30d_snapshots WHERE as_of = %s ORDER BY user_id LIMIT 1",
            (MAR,),
        ).fetchone()
        conn.execute(
            "UPDATE usage_agg_30d_snapshots SET watch_hours_30d = -4.5 WHERE user_id = %s AND as_of = %s", (user, MAR)
        )
    assert not revalidate_snapshot("usage_agg_30d", MAR, settings).success
    alerts.check(settings, store, as_of=MAR)
    assert ("quality", "usage_agg_30d", MAR) in _open(settings, "quality")
    with db.connection(settings) as conn:
        conn.execute(
            "UPDATE usage_agg_30d_snapshots SET watch_hours_30d = %s WHERE user_id = %s AND as_of = %s",
            (hours, user, MAR),
        )
    assert revalidate_snapshot("usage_agg_30d", MAR, settings).success
    alerts.check(settings, store, as_of=MAR)
    assert not _open(settings, "quality")

    # freshness on the wall clock's date: every view's newest snapshot is past its 35-day SLA
    alerts.check(settings, store, as_of=date(2024, 6, 30))
    stale = _open(settings, "freshness")
    assert ("freshness", "subs_profile_fv", date(2024, 6, 30)) in stale and len(stale) == 6
    assert "91 days before 2024-06-30" in alerts.listing(settings).query("kind == 'freshness'").iloc[0].message

    # acknowledging everything open: the CLI exits 0
    for i in alerts.listing(settings, states=("open",))["id"]:
        assert cli.main(["monitor", "--ack", str(i), "--no-check"]) in (0, 1)
    assert cli.main(["monitor", "--no-check"]) == 0


def test_a_kept_dataset_as_the_baseline(monitored, monkeypatch):
    from streamflow.features.datasets import create

    settings, store = monitored
    ds = create(JAN, settings=settings, store=store)
    before = over_time.load_config(settings)
    with pytest.raises(NotFound, match="no dataset named"):
        over_time.save_config(settings, baseline="no-such-dataset", store=store)
    assert over_time.load_config(settings) == before  # nothing stored

    cfg = over_time.save_config(settings, baseline=ds.name, month_share=0.4, store=store)
    assert cfg.dataset == ds.name and cfg.month_share == 0.4
    g = over_time.grid(settings, store=store)
    jan = g.scores[g.scores["month"] == JAN]
    assert len(jan) == len(distributions.monitored()) and (jan["score"].abs() < 1e-9).all()  # the dataset is January
    assert {"monthly_fee", "failed_payments_90d"} <= set(g.scores.query("month == @FEB and drifted")["feature"])
    h = over_time.distribution(settings, "monthly_fee", FEB)
    assert list(h.columns) == ["bin", "reference", "current"] and h["reference"].sum() == pytest.approx(1.0)

    # a feature's own threshold decides: contract_type at a tiny L-infinity drifts
    over_time.save_config(settings, thresholds={"contract_type": {"linf": 0.0001}})
    g = over_time.grid(settings, store=store)
    assert g.scores.query("month == @FEB and feature == 'contract_type'")["drifted"].item()

    # the baseline is not deleted from under monitoring: refused in one line, the dataset kept
    from streamflow.features import datasets

    with pytest.raises(InvalidInput, match=f"dataset '{ds.name}' is the monitoring baseline: set another first"):
        over_time.delete_dataset(settings, ds.name, store)
    assert datasets.get(ds.name, settings, store).checksum == ds.checksum
    use_settings(monkeypatch, settings)
    assert cli.main(["dataset", "delete", ds.name]) == InvalidInput.exit_code
    # removed outside the studio all the same (a plain Feast client): the check says what to do
    datasets.delete(ds.name, settings, store)
    with pytest.raises(NotFound, match=f"the monitoring baseline, dataset '{ds.name}', is no longer kept: set another"):
        over_time.grid(settings, store=store)
    over_time.save_config(settings, baseline="previous", store=store)
    assert not over_time.grid(settings, store=store).scores.empty


def test_monitoring_page_and_overview(monitored, monkeypatch):
    settings, store = monitored
    alerts.check(settings, store)
    at = app_page(settings, monkeypatch, "monitoring")
    assert not at.exception, at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Baseline"] == "the previous month" and int(metrics["Open alerts"]) >= 2
    messages = " ".join(at.dataframe[0].value["message"])
    assert "failed_payments_90d drifted" in messages and "monthly_fee drifted" not in messages
    assert "contract_type drifted" not in messages

    at.selectbox(key="mon_month").set_value(FEB)
    at.run()
    at.selectbox(key="mon_feature").set_value("monthly_fee").run()
    assert not at.exception, at.exception
    table = next(d.value for d in at.dataframe if "drifted" in d.value.columns)
    assert table.loc[table["drifted"], "feature"].tolist()[:2] != [] and "monthly_fee" in set(table["feature"])

    # acknowledge several at once from the page (open mode on loopback: write access), all but one
    pending = at.multiselect(key="mon_ack_ids").value
    assert len(pending) >= 3
    picked = pending[:-1]
    at.multiselect(key="mon_ack_ids").set_value(picked).run()
    at.button(key="mon_ack").click().run()
    assert not at.exception, at.exception
    with db.connection(settings) as conn:
        states = conn.execute(
            "SELECT DISTINCT state, acknowledged_by FROM monitor_alerts WHERE id = ANY(%s)", (list(picked),)
        ).fetchall()
    assert states == [("acknowledged", "app user")]
    assert any("Resolved by themselves" in e.label for e in at.expander)

    # the settings: a toggle away (listing the baselines opens the Feast store), stored on Save
    assert not at.get("data_editor")  # closed by default
    at.toggle(key="mon_settings").set_value(True).run()
    assert at.selectbox(key="mon_baseline").value == "previous"
    at.number_input(key="mon_share").set_value(0.3)
    at.button(key="mon_save").click().run()
    assert not at.exception, at.exception
    assert over_time.load_config(settings).month_share == 0.3

    over = app_page(settings, monkeypatch, "overview")
    assert not over.exception, over.exception
    assert over.error and "open alert(s)" in over.error[0].value  # open alerts first
    assert over.error[0].value.count("· [open](") == min(5, over.error[0].value.count("\n- "))  # each linked


def test_checks_ending_together_both_succeed(monitored):
    """Two materializations or ingests ending at once each run the checks: one waits for the other,
    and neither fails (their profiles and importances are upserts)."""
    from concurrent.futures import ThreadPoolExecutor

    settings, store = monitored
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: alerts.after_change(settings, store), range(2)))
    assert all(r is not None and not r.empty for r in results)
    assert len(distributions.load(settings)) == 3  # each month profiled once, kept once
    assert results[0][["kind", "subject", "as_of"]].equals(results[1][["kind", "subject", "as_of"]])


def test_the_follow_up_keeps_what_the_pages_open_on(fs_embedded, months, monkeypatch):
    """After an ingest the follow-up keeps the model's frames of the first, second and latest months
    (datasets), the Drift page's first-against-latest report and the Model check's first-against-
    second fit, so those pages open on kept results in any new session (they say so), and a
    follow-up with nothing new keeps nothing. A later month keeps its own frame and Drift's new pair;
    the model check of months it did not change is not fitted again."""
    from streamflow.features.datasets import find
    from streamflow.monitoring import followup, model_check

    settings, store = fs_embedded
    for folder, _ in months[:2]:
        ingest_month(folder, settings=settings)
    said: list[str] = []
    followup.after_ingest(settings, store, say=said.append)
    assert all(find(d, None, True, settings, store) is not None for d in (JAN, FEB))
    assert any("drift 2024-02-29 against 2024-01-31 kept" in s for s in said), said
    assert any("model check trained at 2024-01-31, evaluated at 2024-02-29, kept" in s for s in said), said
    assert drift.between_months(JAN, FEB, settings=settings, store=store).computed_at is not None
    assert model_check.kept_check(JAN, FEB, settings, store) is not None
    said.clear()
    followup.for_pages(settings, store, said.append)
    assert said == []  # everything is current: nothing computed again
    for page, kept in (("drift", "Kept from the comparison of"), ("model_check", "Kept from the fit of")):
        at = app_page(settings, monkeypatch, page)
        assert not at.exception and any(kept in c.value for c in at.caption), page

    ingest_month(months[2][0], settings=settings)
    followup.after_ingest(settings, store, say=said.append)
    assert find(MAR, None, True, settings, store) is not None
    assert any("drift 2024-03-31 against 2024-01-31 kept" in s for s in said), said
    assert not any("model check" in s for s in said), said  # January and February are as they were

    # the CLI's faces of the two pages read the same kept results, on the same default months
    code, out = _cli(monkeypatch, settings, ["drift"])
    assert code == 0 and "drift of churn_model_v1 from 2024-01-31 to 2024-03-31" in out
    assert "kept from the comparison of" in out and "drift_a=2024-01-31&drift_b=2024-03-31" in out
    code, out = _cli(monkeypatch, settings, ["model-check"])
    assert code == 0 and "trained at 2024-01-31" in out and "evaluated at 2024-02-29" in out
    assert "kept from the fit of" in out and "point-in-time" in out
    assert _cli(monkeypatch, settings, ["model-check", "--train", "2024-03-31"])[0] == 2  # no later month
    assert _cli(monkeypatch, settings, ["drift", "--psi", "0"])[0] == 2  # every feature would drift
    assert _cli(monkeypatch, settings, ["drift", "--reference", "2023-06-30"])[0] == 4  # before the first snapshot


def _cli(monkeypatch, settings, argv: list[str]) -> tuple[int, str]:
    """`streamflow ARGV` on these settings: (exit code, what it printed, errors included)."""
    import contextlib
    import io

    use_settings(monkeypatch, settings)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
        code = cli.main(argv)
    return code, buf.getvalue()
