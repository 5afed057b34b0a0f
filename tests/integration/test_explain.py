"""Explain one user (issue 39): a user with a gap month, through the library, the CLI and the page."""

from __future__ import annotations

import shutil
from datetime import date

import pandas as pd
import pytest

from streamflow import cli
from streamflow.core.catalog import TABLES
from streamflow.core.errors import InvalidInput, NotFound
from streamflow.features.materialize import materialize
from streamflow.ingest import ingest_month
from streamflow.monitoring.explain import explain
from tests.support import app_page, read_csv, use_settings

JAN, FEB, MAR = date(2024, 1, 31), date(2024, 2, 29), date(2024, 3, 31)


@pytest.fixture
def gap(fs_embedded, months, tmp_path):
    """Three months; one user absent from February's six files (a gap month), present in January and March."""
    settings, store = fs_embedded
    feb = tmp_path / "feb"
    shutil.copytree(months[1][0], feb)
    users = read_csv(months[0][0], "users.csv").index
    march = read_csv(months[2][0], "users.csv").index
    user = next(u for u in users[1:] if u in march)
    for t in TABLES:
        frame = pd.read_csv(feb / t.csv, dtype=str, keep_default_na=False)
        frame[frame["user_id"] != user].to_csv(feb / t.csv, index=False)
    for folder in (months[0][0], feb, months[2][0]):
        ingest_month(folder, settings=settings)
    materialize(settings=settings, store=store)
    return settings, store, user


def test_a_user_with_a_gap_month(gap, monkeypatch, capsys):
    settings, store, user = gap
    e = explain(user, FEB, settings=settings, store=store)
    row = e.timeline.set_index("view").loc["subs_profile_fv"]
    assert (row[str(JAN)], row[str(FEB)], row[str(MAR)]) == (True, False, True)
    assert e.snapshot_as_of == FEB and any("no row at 2024-02-29" in n for n in e.notes)
    fee = e.values.set_index("feature").loc["monthly_fee"]
    # at February the frame reads January's row (within the TTL): the value and where it came from
    assert fee["from_snapshot"] == JAN
    # online serves March, which differs from nothing at February: said per feature
    assert fee["online_snapshot"] == MAR and fee["status"] in {"equal", "ahead"}
    assert fee["in_month"] and "of the month's users" in fee["in_month"]
    assert e.label is None or isinstance(e.label, bool)
    assert "churn_label at an as_of" in e.label_note

    at_march = explain(user, None, settings=settings, store=store)
    assert at_march.as_of == MAR and (at_march.values["from_snapshot"].dropna() == MAR).all()
    with pytest.raises(NotFound, match="no user 0000-NOONE in any snapshot"):
        explain("0000-NOONE", settings=settings, store=store)
    with pytest.raises(InvalidInput):
        explain("'; drop", settings=settings, store=store)

    use_settings(monkeypatch, settings)
    assert cli.main(["explain", user, "--as-of", str(FEB)]) == 0
    out = capsys.readouterr().out
    assert f"{user} at 2024-02-29" in out and "subs_profile_fv        x  .  x" in out
    assert "no row at 2024-02-29" in out and "monthly_fee" in out

    at = app_page(settings, monkeypatch, "explain")
    at.text_input(key="ex_user").set_value(user).run()
    at.selectbox(key="ex_as_of").set_value(FEB).run()
    assert not at.exception, [x.value for x in at.exception]
    assert any("no row at 2024-02-29" in i.value for i in at.info)
    at.text_input(key="ex_user").set_value("0000-NOONE").run()
    assert not at.exception and any("no user 0000-NOONE" in x.value for x in at.error)


def test_the_score_and_each_features_contribution_once_a_model_check_ran(gap, monkeypatch, capsys):
    """Issue 39, item 11: with the model check's kept model, a user's churn score and each feature's
    contribution, which add up (with the intercept) to the score's log-odds; without one, said."""
    import math

    from streamflow.monitoring.model_check import model_check

    settings, store, user = gap
    before = explain(user, FEB, settings=settings, store=store)
    assert before.score is None and "No model yet" in before.model and before.values["contribution"].isna().all()
    from streamflow.features.datasets import create

    for day in (JAN, FEB):  # the model check reads kept frames: it changes no registry entry, keeps a model only
        create(day, settings=settings, store=store)
    at = app_page(settings, monkeypatch, "explain")  # the page keeps what it showed, per data version
    at.text_input(key="ex_user").set_value(user).run()
    at.selectbox(key="ex_as_of").set_value(FEB).run()
    assert any("No model yet" in i.value for i in at.info) and not at.metric

    mc = model_check(JAN, FEB, settings=settings, store=store)
    at.run()  # a model kept since is a new data version: the page scores at once
    assert [m.label for m in at.metric] == ["Churn probability"], [i.value for i in at.info]
    e = explain(user, FEB, settings=settings, store=store)
    assert e.score is not None and 0 < e.score < 1 and "trained at 2024-01-31" in e.model
    parts = e.contributions
    assert set(parts["feature"]) == set(mc.kept.features) and len(parts) > 5
    assert abs(mc.kept.intercept + parts["contribution"].sum() - math.log(e.score / (1 - e.score))) < 1e-9
    assert parts["contribution"].abs().is_monotonic_decreasing
    other = explain(user, MAR, settings=settings, store=store)  # another month's values, the same model
    assert other.score is not None and other.score != e.score

    use_settings(monkeypatch, settings)
    assert cli.main(["explain", user, "--as-of", str(FEB)]) == 0
    out = capsys.readouterr().out
    assert f"churn score: {e.score:.1%}" in out and "largest contributions: " in out
    assert f"/explain?ex_user={user}&ex_as_of=2024-02-29" in out  # the same view in the studio

    at = app_page(settings, monkeypatch, "explain")
    at.text_input(key="ex_user").set_value(user).run()
    at.selectbox(key="ex_as_of").set_value(FEB).run()
    assert not at.exception, [x.value for x in at.exception]
    assert [m.value for m in at.metric] == [f"{e.score:.1%}"]
