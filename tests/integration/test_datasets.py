"""Training datasets kept as Feast saved datasets, on the real store: the same frame as a build,
a checksum that holds on rebuild, staleness after a re-ingest, export, delete, and bad input."""

from __future__ import annotations

import pandas as pd
import pytest

from streamflow.core.errors import InvalidInput, NotFound
from streamflow.features import datasets
from streamflow.features.training import build_training_frame
from streamflow.ingest import ingest_month
from streamflow.storage import results
from tests.support import app_page, prepared_store, skew_pairs


@pytest.fixture
def kept(embedded_settings, months):
    settings, store = prepared_store(embedded_settings, months, n_months=2)
    for ds in datasets.list_datasets(settings, store):
        datasets.delete(ds.name, settings, store)
    return settings, store


def test_a_dataset_is_the_frame_kept(kept, tmp_path):
    settings, store = kept
    built = build_training_frame("2024-01-31", settings=settings, store=store)
    ds = datasets.create("2024-01-31", settings=settings, store=store)
    assert ds.name == "churn_model_v1_2024-01-31" and ds.rows == len(built.frame) and not ds.stale
    assert ds.snapshot_as_of == built.snapshot_as_of and ds.features == "churn_model_v1" and ds.labels

    back = datasets.frame(ds.name, settings, store)
    pd.testing.assert_frame_equal(back.frame.to_pandas(), built.frame, check_dtype=True)  # values, order, types
    assert back.features == built.features and back.lineage.equals(built.lineage)

    saved = store.get_saved_dataset(ds.name)  # Feast's own registry holds it, with how it was made
    assert saved.tags["checksum"] == ds.checksum and saved.tags["as_of"] == "2024-01-31"

    again = datasets.rebuild(ds.name, settings, store)
    assert again.checksum == ds.checksum and again.created_at > ds.created_at
    found, from_ds = datasets.frame_for("2024-01-31", settings=settings, store=store)
    assert from_ds is not None and from_ds.name == ds.name
    pd.testing.assert_frame_equal(found.frame.to_pandas(), built.frame, check_dtype=True)

    out = datasets.export(ds.name, tmp_path / "training_df.parquet", settings=settings, store=store)
    pd.testing.assert_frame_equal(pd.read_parquet(out), built.frame, check_dtype=False)
    csv = datasets.export(ds.name, tmp_path / "training_df.csv", settings=settings, store=store)
    assert len(pd.read_csv(csv)) == len(built.frame)

    # features asked across views, interleaved: the kept frame shows them in the order asked, as a fresh one
    mixed = "usage_agg_30d_fv:watch_hours_30d,subs_profile_fv:monthly_fee,usage_agg_30d_fv:skips_7d"
    fresh = build_training_frame("2024-01-31", features=mixed, settings=settings, store=store)
    m = datasets.create("2024-01-31", features=mixed, name="mixed", settings=settings, store=store)
    read = datasets.frame(m.name, settings, store)
    assert list(read.frame.columns) == list(fresh.frame.columns)
    assert list(fresh.frame.columns)[2:5] == ["watch_hours_30d", "monthly_fee", "skips_7d"]
    pd.testing.assert_frame_equal(read.frame.to_pandas(), fresh.frame, check_dtype=True)
    datasets.delete(m.name, settings, store)

    other = datasets.create("2024-02-29", features="subs_profile_fv", labels=False, settings=settings, store=store)
    d = datasets.diff(ds.name, other.name, settings, store)
    assert "churn_label" in d["only_in_a"] and "monthly_fee" in d["statistics"].index

    other_file = settings.feature_repo / other.table
    assert other_file.is_file()
    datasets.delete(other.name, settings, store)
    assert [x.name for x in datasets.list_datasets(settings, store)] == [ds.name]
    assert not other_file.exists()
    assert results.read(settings, datasets.SUMMARY, other.name) is None  # its summary went with it


def test_a_dataset_keeps_its_summary(kept):
    """What the Training frame and Datasets pages show of a kept frame (its per-feature summary) is
    computed when the dataset is kept and read back after, made from its checksum: equal to the
    frame's own summary, and computed again for a dataset kept anew with other rows."""
    from streamflow.features.training import feature_summary

    settings, store = kept
    ds = datasets.create("2024-01-31", settings=settings, store=store)
    summary = results.current(settings, datasets.SUMMARY, ds.name, ds.checksum)
    assert summary is not None  # kept at write, before any reader
    expected = feature_summary(datasets.frame(ds.name, settings, store).frame)
    pd.testing.assert_frame_equal(summary.frames["summary"], expected)
    pd.testing.assert_frame_equal(datasets.summary(ds, settings, store), expected)
    # a reader of a dataset whose summary was not kept (kept before this) computes and keeps it
    results.forget(settings, datasets.SUMMARY, ds.name)
    pd.testing.assert_frame_equal(datasets.summary(ds, settings, store), expected)
    assert results.current(settings, datasets.SUMMARY, ds.name, ds.checksum) is not None
    # a name holding another frame is never overwritten (it was, silently, with again=True): refused
    with pytest.raises(InvalidInput, match=f"dataset '{ds.name}' holds another frame .the frame at 2024-01-31"):
        datasets.create("2024-02-29", name=ds.name, settings=settings, store=store, again=True)
    assert datasets.get(ds.name, settings, store).checksum == ds.checksum
    # the same name kept again with other rows (deleted first): its summary is of those rows
    datasets.delete(ds.name, settings, store)
    other = datasets.create("2024-02-29", name=ds.name, settings=settings, store=store, again=True)
    assert other.checksum != ds.checksum
    fresh = feature_summary(datasets.frame(ds.name, settings, store).frame)
    pd.testing.assert_frame_equal(datasets.summary(other, settings, store), fresh)
    assert not fresh.equals(expected)


def test_a_dataset_is_a_parquet_file_feast_reads(kept):
    """A dataset is a Parquet file under the Feast repo, not a table: Feast's registry holds it as
    a file saved dataset, a plain `FeatureStore(repo_path=...)` reads it through this project's
    offline store class with the values and types of the frame, its footer holds the checksum
    PostgreSQL computes over the same rows, and the database holds no copy of it."""
    import feast
    import pyarrow.parquet as pq
    from feast.infra.offline_stores.file_source import SavedDatasetFileStorage

    from streamflow.feast_ext.pg_saved import table_checksum
    from streamflow.features.store import write_client_yaml
    from streamflow.storage import db

    settings, store = kept
    built = build_training_frame("2024-01-31", settings=settings, store=store)
    ds = datasets.create("2024-01-31", settings=settings, store=store)
    path = settings.feature_repo / ds.table
    assert ds.table.startswith("data/datasets/") and path.is_file()
    assert pq.ParquetFile(path).metadata.num_row_groups >= 1
    saved = store.get_saved_dataset(ds.name)
    assert isinstance(saved.storage, SavedDatasetFileStorage)
    assert saved.storage.file_options.uri == ds.table  # relative: the repo's folder can move with it

    write_client_yaml(settings)  # what `make run` writes: the plain client's door
    plain = feast.FeatureStore(repo_path=str(settings.feature_repo))
    df = plain.get_saved_dataset(ds.name).to_df()
    assert len(df) == len(built.frame)
    by_user = df.set_index("user_id").loc[built.frame["user_id"]]
    for column in ["monthly_fee", "watch_hours_30d", "contract_type", "churn_label"]:
        assert by_user[column].tolist() == built.frame[column].tolist()
        assert by_user[column].dtype == built.frame[column].dtype

    with db.connection(settings) as conn:  # no copy in the database
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE tablename LIKE 'sf_dataset_%'").fetchone()[0] == 0
    _old_style(settings, store, "same_rows", "sf_same_rows")  # the same rows kept as a table: the same checksum
    with db.connection(settings) as conn:
        assert table_checksum(conn, "sf_same_rows", ["user_id"]) == (ds.rows, ds.checksum)
        conn.execute("DROP TABLE sf_same_rows")
    store.registry.delete_saved_dataset("same_rows", store.project, commit=True)

    path.unlink()  # a file lost outside the studio: said, not served, and rebuilt from the store
    gone = datasets.get(ds.name, settings, store)
    assert gone.stale and "is missing" in gone.stale_because[0]
    assert datasets.find(ds.as_of, None, True, settings, store) is None
    with pytest.raises(NotFound, match="cannot be read: its file .* is missing"):
        datasets.frame(ds.name, settings, store)
    assert datasets.rebuild(ds.name, settings, store).checksum == ds.checksum and path.is_file()


def _old_style(settings, store, name: str, table: str) -> str:
    """A dataset kept as before files: Feast's PostgreSQL saved-dataset table, tagged as `create`
    tagged it then (rows and the md5 over its rows in key order)."""
    from datetime import UTC, datetime

    from feast.infra.offline_stores.contrib.postgres_offline_store.postgres_source import (
        SavedDatasetPostgreSQLStorage,
    )

    from streamflow.feast_ext.pg_saved import table_checksum
    from streamflow.features.training import plan_training_frame
    from streamflow.storage import db

    plan = plan_training_frame("2024-01-31", ["churn_model_v1"], True, settings, store)
    tags = {
        datasets.TAG: "1",
        "as_of": "2024-01-31",
        "snapshot_as_of": plan.snapshot_as_of.isoformat(),
        "features": "churn_model_v1",
        "labels": "true",
        "created_at": datetime.now(UTC).isoformat(),
        "definitions": datasets._definitions(store, plan.wanted),
        "seconds": "1.0",
    }
    with datasets.feast_quiet():
        saved = store.create_saved_dataset(
            from_=plan.job, name=name, storage=SavedDatasetPostgreSQLStorage(table), tags=tags, allow_overwrite=True
        )
    with db.connection(settings) as conn:
        rows, checksum = table_checksum(conn, table, ["user_id"])
    saved.tags.update({"rows": str(rows), "checksum": checksum})
    store.registry.apply_saved_dataset(saved, store.project, commit=True)
    return name


def test_a_dataset_kept_as_a_table_opens_and_moves_to_a_file(kept):
    """A dataset written before the files (a table) is listed, read back with the frame's values,
    and moved on that first read: the same checksum in a file, the registry pointing at it, the
    table gone; a second read reads the file."""
    from feast.infra.offline_stores.file_source import SavedDatasetFileStorage

    from streamflow.storage import db

    settings, store = kept
    built = build_training_frame("2024-01-31", settings=settings, store=store)
    _old_style(settings, store, "before_files", "sf_dataset_before_files")
    listed = datasets.get("before_files", settings, store)
    assert listed.table == "sf_dataset_before_files" and listed.rows == len(built.frame) and not listed.stale

    back = datasets.frame("before_files", settings, store)  # read, and moved
    pd.testing.assert_frame_equal(back.frame.to_pandas(), built.frame, check_dtype=True)
    moved = datasets.get("before_files", settings, store)
    assert moved.table == "data/datasets/sf_dataset_before_files.parquet"
    assert moved.checksum == listed.checksum and moved.rows == listed.rows
    assert datasets.offline_of(settings).checksum(moved.table, store) == (listed.rows, listed.checksum)
    assert isinstance(store.get_saved_dataset("before_files").storage, SavedDatasetFileStorage)
    with db.connection(settings) as conn:
        assert conn.execute("SELECT to_regclass('sf_dataset_before_files')").fetchone()[0] is None
    again = datasets.frame("before_files", settings, store)
    pd.testing.assert_frame_equal(again.frame.to_pandas(), built.frame, check_dtype=True)
    # and a page's read of a few users' rows reads the file's matching row groups
    rows = datasets.kept_rows(moved.as_of, ["monthly_fee"], ["7590-VHVEG"], settings, store)
    assert rows["monthly_fee"].tolist() == built.frame.set_index("user_id").loc[["7590-VHVEG"], "monthly_fee"].tolist()
    datasets.delete("before_files", settings, store)
    assert not (settings.feature_repo / moved.table).exists()


def test_a_dataset_goes_stale_when_its_month_is_reingested(kept, month_copy, monkeypatch):
    import time

    settings, store = kept
    ds = datasets.create("2024-01-31", settings=settings, store=store)
    at = app_page(settings, monkeypatch, "datasets")
    assert not at.exception and not [w.value for w in at.warning if "Stale" in w.value]
    folder = month_copy(0)
    subs = pd.read_csv(folder / "subscriptions.csv", dtype=str, keep_default_na=False)
    subs.loc[0, "monthly_fee"] = str(float(subs.loc[0, "monthly_fee"]) + 1)
    subs.to_csv(folder / "subscriptions.csv", index=False)
    ingest_month(folder, settings=settings)  # as the CLI would, outside the app
    time.sleep(2.1)  # the app reads the data version at most every 2 s; no cache is cleared
    at.run()  # the page's list says so at once (it was kept 30 s, whatever was written meanwhile)
    assert any("Stale: the 2024-01-31 snapshot was re-ingested" in w.value for w in at.warning), at.warning

    stale = datasets.get(ds.name, settings, store)
    assert stale.stale and "2024-01-31 snapshot was re-ingested" in stale.stale_because[0]
    assert datasets.find(ds.as_of, None, True, settings, store) is None  # a stale dataset is not served
    fresh = datasets.rebuild(ds.name, settings, store)
    assert not datasets.get(ds.name, settings, store).stale and fresh.checksum != ds.checksum


def test_an_apply_keeps_a_dataset_current_unless_a_view_it_reads_changes(kept):
    """Every apply registers each view's source anew (its registration times in the view's spec):
    a dataset stays current through one that changes nothing it reads (every `feature add` applies),
    goes stale when a view it reads is redefined, and is current again once the definition is back."""
    from streamflow.features.apply import apply

    settings, store = kept
    ds = datasets.create("2024-01-31", settings=settings, store=store)
    apply(settings, store)
    assert not datasets.get(ds.name, settings, store).stale
    assert datasets.frame_for("2024-01-31", settings=settings, store=store)[1] is not None  # served from the file
    view = store.get_feature_view("subs_profile_fv")
    view.description = "redefined by hand"
    store.apply([view])
    assert datasets.get(ds.name, settings, store).stale_because == [
        "a feature view it reads was redefined (streamflow apply) since"
    ]
    apply(settings, store)  # the repo's definition again
    assert not datasets.get(ds.name, settings, store).stale
    # a dataset kept by an earlier version (a fingerprint with the registration times) says it cannot tell
    saved = store.get_saved_dataset(ds.name)
    saved.tags["definitions"] = "98db2c53cbfcfe94"
    store.registry.apply_saved_dataset(saved, store.project, commit=True)
    (why,) = datasets.get(ds.name, settings, store).stale_because
    assert "fingerprinted by an earlier StreamFlow" in why and f"streamflow dataset rebuild {ds.name}" in why
    datasets.rebuild(ds.name, settings, store)
    assert not datasets.get(ds.name, settings, store).stale


def test_a_frame_kept_already_is_offered_not_copied(kept, monkeypatch, capsys):
    """Keeping a frame a current dataset already holds names that dataset instead of a silent second
    copy: the same request under another name, or another request whose rows are the same (content
    checksum); `again` keeps a copy on purpose."""
    from streamflow import cli
    from streamflow.features.refs import resolve_features
    from tests.support import use_settings

    settings, store = kept
    first = datasets.create("2024-01-31", settings=settings, store=store)
    with pytest.raises(datasets.AlreadyKept, match=f"already kept as '{first.name}'") as same:
        datasets.create("2024-01-31", name="copy", settings=settings, store=store)
    assert same.value.dataset.name == first.name
    view = datasets.create("2024-01-31", features="subs_profile_fv", labels=False, settings=settings, store=store)
    listed = ",".join(resolve_features(store, "subs_profile_fv"))  # the same rows, asked another way
    with pytest.raises(datasets.AlreadyKept, match=f"same rows .* already kept as '{view.name}'"):
        datasets.create("2024-01-31", features=listed, labels=False, name="listed", settings=settings, store=store)
    names = {d.name for d in datasets.list_datasets(settings, store)}
    assert names == {first.name, view.name}, "nothing of the refused copies is left"
    copy = datasets.create("2024-01-31", name="copy", settings=settings, store=store, again=True)
    assert copy.checksum == first.checksum
    use_settings(monkeypatch, settings)
    assert cli.main(["dataset", "create", "--as-of", "2024-01-31", "dup"]) == InvalidInput.exit_code
    assert "already kept as" in capsys.readouterr().err


def test_a_default_name_taken_by_another_frame_gets_the_next_free_one(kept):
    """A user may name February's frame as January's default name: January's frame (kept by the
    follow-up after an ingest, with no name given) is then kept as `<default>_2`, and February's
    dataset is left as it was; named on purpose, the taken name is refused."""
    settings, store = kept
    feb = datasets.create("2024-02-29", name="churn_model_v1_2024-01-31", settings=settings, store=store)
    jan = datasets.create("2024-01-31", settings=settings, store=store)
    assert jan.name == "churn_model_v1_2024-01-31_2" and jan.as_of.isoformat() == "2024-01-31"
    assert datasets.get(feb.name, settings, store).checksum == feb.checksum
    assert datasets.find(jan.as_of, None, True, settings, store).name == jan.name
    with pytest.raises(InvalidInput, match="holds another frame"):
        datasets.create("2024-01-31", name=feb.name, settings=settings, store=store, again=True)


def test_bad_dataset_requests_change_nothing(kept):
    settings, store = kept
    with pytest.raises(InvalidInput, match="dataset name"):
        datasets.create("2024-01-31", name="no spaces; DROP TABLE", settings=settings, store=store)
    with pytest.raises(NotFound, match="no snapshot|available"):
        datasets.create("2030-01-31", settings=settings, store=store)
    with pytest.raises(NotFound, match="no dataset named 'nope'"):
        datasets.frame("nope", settings, store)
    with pytest.raises(InvalidInput, match="format"):
        datasets.export("nope", "x.xlsx", settings=settings, store=store)
    assert datasets.list_datasets(settings, store) == []


def test_skew_reads_a_kept_dataset_and_finds_what_feast_finds(kept):
    """The skew check's offline values at a snapshot's instant come from a current kept dataset of
    that month when there is one (its table read by key, for the sampled users only), else from
    Feast's retrieval: the same report either way, and a user the dataset lacks still found."""
    from streamflow.features.materialize import materialize
    from streamflow.monitoring.skew import skew_report

    settings, store = kept
    materialize(settings=settings, store=store)
    users = ["7590-VHVEG", "0000-NOONE"]
    by_feast = skew_report(users=users, settings=settings, store=store)
    sample = skew_report(sample=40, settings=settings, store=store)
    ds = datasets.create("2024-02-29", settings=settings, store=store)
    assert datasets.kept_rows(ds.as_of, ["monthly_fee"], ["7590-VHVEG"], settings, store)["monthly_fee"].tolist() == [
        29.85
    ]
    pd.testing.assert_frame_equal(
        skew_pairs(skew_report(users=users, settings=settings, store=store)), skew_pairs(by_feast)
    )
    pd.testing.assert_frame_equal(
        skew_pairs(skew_report(sample=40, settings=settings, store=store)), skew_pairs(sample)
    )
