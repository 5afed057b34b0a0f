"""Fixtures: real PostgreSQL backends (embedded pgserver, and a server when configured), Redis,
Feast stores; the helpers they use live in tests/support.py (test files import them from there)."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import psycopg
import pytest

from streamflow.core.config import Settings, load_settings
from streamflow.ingest.demo import generate_months
from streamflow.storage import db
from tests.support import (
    REDIS_URL,
    REQUIRE_REDIS,
    REQUIRE_SERVER,
    SERVER_URL,
    TEST_USERS,
    home_for,
    reset_database,
    reset_online_store,
    store_for,
)


@pytest.fixture(scope="session")
def embedded_settings(tmp_path_factory) -> Settings:
    # pgserver's socket path must stay short; tmp_path_factory paths are short enough
    home = home_for(tmp_path_factory.mktemp("emb"))
    settings = load_settings({"STREAMFLOW_HOME": str(home)})
    db.ping(settings)
    yield settings
    db.stop_embedded(settings)


@pytest.fixture(scope="session")
def server_settings(tmp_path_factory) -> Settings:
    if not SERVER_URL:
        if REQUIRE_SERVER:
            pytest.fail("STREAMFLOW_TEST_REQUIRE_SERVER=1 but STREAMFLOW_TEST_SERVER_URL is not set")
        pytest.skip("no STREAMFLOW_TEST_SERVER_URL: server-backend tests skipped")
    dbname = f"sf_test_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(SERVER_URL, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'CREATE DATABASE "{dbname}"')
    except psycopg.OperationalError as exc:
        if REQUIRE_SERVER:
            pytest.fail(f"PostgreSQL server at {SERVER_URL} is unreachable: {exc}")
        pytest.skip(f"PostgreSQL server unreachable: {exc}")
    base = SERVER_URL.rsplit("/", 1)[0]
    home = home_for(tmp_path_factory.mktemp("srv"))
    settings = load_settings({"STREAMFLOW_HOME": str(home), "STREAMFLOW_DATABASE_URL": f"{base}/{dbname}"})
    yield settings
    with psycopg.connect(SERVER_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


@pytest.fixture(params=["embedded", "server"])
def settings(request) -> Settings:
    """Each test using this runs on both backends, on emptied tables."""
    s = request.getfixturevalue(f"{request.param}_settings")
    reset_database(s)
    return s


@pytest.fixture(scope="session")
def months(tmp_path_factory) -> list[tuple[Path, object]]:
    """Three generated months of TEST_USERS users (read-only: copy before mutating)."""
    out = tmp_path_factory.mktemp("seeds")
    return generate_months(out, users=TEST_USERS, months=3, seed=7)


@pytest.fixture
def month_copy(months, tmp_path):
    """A writable copy of a generated month: month_copy(i) -> Path."""

    def make(i: int) -> Path:
        dst = tmp_path / f"m{i}"
        shutil.copytree(months[i][0], dst)
        return dst

    return make


@pytest.fixture(scope="session")
def redis_settings(tmp_path_factory) -> Settings:
    """Embedded PostgreSQL offline store + a real Redis online store (db 15, flushed per test)."""
    if not REDIS_URL:
        if REQUIRE_REDIS:
            pytest.fail("STREAMFLOW_TEST_REQUIRE_REDIS=1 but STREAMFLOW_TEST_REDIS_URL is not set")
        pytest.skip("no STREAMFLOW_TEST_REDIS_URL: Redis tests skipped")
    import redis

    url = REDIS_URL.rsplit("/", 1)[0] + "/15" if REDIS_URL.count("/") >= 3 else REDIS_URL + "/15"
    try:
        redis.Redis.from_url(url, socket_connect_timeout=3).ping()
    except redis.RedisError as exc:
        if REQUIRE_REDIS:
            pytest.fail(f"Redis at {url} is unreachable: {exc}")
        pytest.skip(f"Redis unreachable: {exc}")
    home = home_for(tmp_path_factory.mktemp("red"))
    settings = load_settings({"STREAMFLOW_HOME": str(home), "STREAMFLOW_ONLINE_STORE": "redis", "REDIS_URL": url})
    db.ping(settings)
    yield settings
    db.stop_embedded(settings)


@pytest.fixture(params=["embedded", "server", "redis"])
def fs(request):
    """(settings, store) on a backend, data and online store emptied, registry applied."""
    s = request.getfixturevalue(f"{request.param}_settings")
    reset_database(s)
    store = store_for(s)
    reset_online_store(s)
    return s, store


@pytest.fixture
def fs_embedded(embedded_settings):
    reset_database(embedded_settings)
    store = store_for(embedded_settings)
    reset_online_store(embedded_settings)
    return embedded_settings, store


SLOW_MODULES = {"test_lake", "test_spark_cluster", "test_redis_cluster", "test_browser", "test_load"}


def pytest_collection_modifyitems(items) -> None:
    """The declared markers, set from what a test uses: `server` and `redis` on the cases that run on
    those backends (a parametrized case or a fixture), `slow` on the Spark, cluster and browser
    suites; so `pytest -m "not slow and not server"` is the quick embedded pass."""
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        params = {v for v in getattr(getattr(item, "callspec", None), "params", {}).values() if isinstance(v, str)}
        for backend in ("server", "redis"):
            if backend in params or f"{backend}_settings" in names and not names & {"settings", "fs"}:
                item.add_marker(getattr(pytest.mark, backend))
        if item.module.__name__.rsplit(".", 1)[-1] in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)
