"""Backup and restore round trips on the embedded store and on a server."""

from __future__ import annotations

import tarfile
import time
import uuid

import pandas as pd
import psycopg
import pytest

from streamflow.core.config import load_settings
from streamflow.core.errors import InvalidInput, NotFound
from streamflow.features import datasets, derived
from streamflow.features.derived import Derived
from streamflow.features.online import online_features
from streamflow.features.store import get_store
from streamflow.monitoring.alerts import check, listing
from streamflow.storage import db
from streamflow.storage.backup import DUMP, backup, restore
from tests.support import SERVER_URL, fingerprint, home_for, prepared_store

USERS = ["7590-VHVEG"]


def _lookups(settings, store) -> list:
    return [(r.user_id, r.found, r.features) for r in online_features(USERS, settings=settings, store=store)]


@pytest.fixture
def target(request, tmp_path_factory, backend):
    """An empty store of the same kind to restore into."""
    if backend == "embedded":
        settings = load_settings({"STREAMFLOW_HOME": str(home_for(tmp_path_factory.mktemp("rst")))})
        yield settings
        db.stop_embedded(settings)
        return
    request.getfixturevalue("server_settings")  # skips, or fails in CI, without a configured server
    name = f"sf_restore_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(SERVER_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    home = home_for(tmp_path_factory.mktemp("rsts"))
    yield load_settings(
        {"STREAMFLOW_HOME": str(home), "STREAMFLOW_DATABASE_URL": SERVER_URL.rsplit("/", 1)[0] + f"/{name}"}
    )
    with psycopg.connect(SERVER_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["embedded", "server"])
def backend(request):
    return request.param


def test_round_trip(request, backend, target, months, tmp_path, record):
    settings, store = prepared_store(request.getfixturevalue(f"{backend}_settings"), months, n_months=2)
    declared = [Derived("fee_twice", "monthly_fee * 2")]  # the feature lab's file of the repo goes with the store
    derived.write(settings.feature_repo, declared)
    try:
        _round_trip(settings, store, backend, target, tmp_path, record)
    finally:
        derived.write(settings.feature_repo, [])


def _round_trip(settings, store, backend, target, tmp_path, record):
    declarations = derived.declarations_path(target.feature_repo)
    kept = check(settings, store)  # the monitor's profiles, importances and alerts are part of the store
    assert not kept.empty
    kept_ds = datasets.create("2024-01-31", name="in_the_backup", settings=settings, store=store, again=True)
    frame = datasets.frame(kept_ds.name, settings, store).frame.to_pandas()  # its rows now, not its file
    before = fingerprint(settings, online=True)
    lookups = _lookups(settings, store)
    assert lookups[0][1]
    file = tmp_path / "store.dump"
    r = backup(file, settings)
    assert r.bytes > 10_000 and r.tables >= 15 and r.datasets >= 1
    datasets.delete(kept_ds.name, settings, store)

    restore(file, target)  # into an empty store: registry, runs, snapshots and online tables come back
    assert fingerprint(target, online=True) == before
    restored = get_store(target)
    assert _lookups(target, restored) == lookups
    assert restored.get_feature_service("churn_model_v1").name == "churn_model_v1"
    assert derived.read(target.feature_repo) == derived.read(settings.feature_repo)
    assert listing(target).to_dict("records") == kept.to_dict("records")
    # the dataset's file came back with the registry that names it, under the target's own repo
    back = datasets.get(kept_ds.name, target, restored)
    assert back.checksum == kept_ds.checksum and not back.stale
    pd.testing.assert_frame_equal(datasets.frame(kept_ds.name, target, restored).frame.to_pandas(), frame)

    # a backup made before datasets were files (pg_dump's file alone) restores as it did
    with tarfile.open(file) as tar:
        tar.extract(DUMP, tmp_path / "old", filter="data")
    restore(tmp_path / "old" / DUMP, target, force=True)
    assert fingerprint(target, online=True) == before
    # it held no declarations: the repo's are gone with the store they described, kept aside first
    assert not declarations.exists()
    (aside,) = (target.state_dir / "backups").glob("before-restore-*-derived_features.yaml")
    assert "fee_twice" in aside.read_text()

    with pytest.raises(InvalidInput, match="not empty"):
        restore(file, target)
    restore(file, target, force=True)
    assert fingerprint(target, online=True) == before
    assert derived.read(target.feature_repo) == derived.read(settings.feature_repo)
    record(
        f"{backend}: backup {r.bytes / 1e6:.1f} MB, {r.tables} tables; restore -> equal checksums and lookups; "
        "non-empty refused without --force"
    )


def test_bad_files(embedded_settings, tmp_path, record):
    with pytest.raises(NotFound):
        restore(tmp_path / "nope.dump", embedded_settings)
    junk = tmp_path / "junk.dump"
    junk.write_bytes(b"not a dump")
    with pytest.raises(InvalidInput, match="not a StreamFlow backup"):
        restore(junk, embedded_settings, force=True)
    # a tar that reaches outside its folder, or holds no dump, is refused before anything is touched
    evil = tmp_path / "evil.dump"
    with tarfile.open(evil, "w") as tar:
        tar.add(junk, arcname="../../escape.parquet")
    with pytest.raises(InvalidInput, match="unexpected entry"):
        restore(evil, embedded_settings, force=True)
    empty = tmp_path / "empty.dump"
    with tarfile.open(empty, "w") as tar:
        tar.add(junk, arcname="datasets/x.parquet")
    with pytest.raises(InvalidInput, match="no store.dump"):
        restore(empty, embedded_settings, force=True)
    assert not (tmp_path.parent / "escape.parquet").exists()
    record("a missing file, a non-dump file and a tar with foreign entries are refused with a message")


def test_refused_while_a_write_runs(embedded_settings, tmp_path, record):
    """A materialization (or an ingest) holding its lock: backup and restore are refused in one line,
    no file written, nothing restored; the lock given back, both work again."""
    from streamflow.core.errors import Busy

    out = tmp_path / "busy.dump"
    for key, what in ((db.LOCK_MATERIALIZE, "a materialization"), (db.LOCK_INGEST, "an ingest")):
        holder = db.connect(embedded_settings, autocommit=True)
        try:
            assert db.try_lock(holder, key)
            with pytest.raises(Busy, match=f"{what} is running"):
                backup(out, embedded_settings)
            assert not out.exists()
            db.unlock(holder, key)
        finally:
            holder.close()
    assert backup(out, embedded_settings).bytes > 0  # given back: both work again
    out.unlink()
    # A holder that dies without giving its lock back (a killed process) frees it when its backend
    # exits, a moment after the connection closes: refused until then, never for good.
    holder = db.connect(embedded_settings, autocommit=True)
    assert db.try_lock(holder, db.LOCK_INGEST)
    holder.close()
    deadline = time.monotonic() + 10
    while True:
        try:
            assert backup(out, embedded_settings).bytes > 0
            break
        except Busy:
            assert time.monotonic() < deadline, "a closed session's lock was never freed"
            time.sleep(0.05)
    holder = db.connect(embedded_settings, autocommit=True)
    try:
        db.try_lock(holder, db.LOCK_MATERIALIZE)
        with pytest.raises(Busy, match="a materialization is running"):
            restore(out, embedded_settings, force=True)
    finally:
        holder.close()
    record("backup and restore refused while a materialization or an ingest holds its lock")
