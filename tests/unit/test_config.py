"""The lake settings: a folder or an s3a:// bucket, and the endpoint of a non-AWS object store."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamflow.core.config import ConfigError, load_settings
from streamflow.storage import db
from streamflow.storage.lake import lake_of


def _settings(tmp_path: Path, **env: str):
    return load_settings({"STREAMFLOW_HOME": str(tmp_path), "STREAMFLOW_OFFLINE_STORE": "spark", **env})


def test_default_lake_is_a_folder_under_the_state_dir(tmp_path):
    s = _settings(tmp_path)
    assert s.lake_url == str(tmp_path.resolve() / ".streamflow" / "lake")
    assert not lake_of(s).remote


def test_a_relative_folder_is_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert _settings(tmp_path, STREAMFLOW_LAKE="lake").lake_url == str(tmp_path.resolve() / "lake")


def test_an_s3a_lake_names_bucket_prefix_and_endpoint(tmp_path):
    s = _settings(tmp_path, STREAMFLOW_LAKE="s3a://streamflow-lake/lake/", STREAMFLOW_S3_ENDPOINT="http://minio:9000/")
    lk = lake_of(s)
    assert (s.lake_url, s.s3_endpoint) == ("s3a://streamflow-lake/lake", "http://minio:9000")
    assert lk.remote and lk.root == "streamflow-lake/lake"
    from streamflow.core.catalog import TABLES

    assert lk.table_url(TABLES[0]) == "s3a://streamflow-lake/lake/users_snapshots"
    assert lk.table_dir(TABLES[0]) == "streamflow-lake/lake/users_snapshots"


@pytest.mark.parametrize(
    "env",
    [
        {"STREAMFLOW_LAKE": "hdfs://namenode/lake"},
        {"STREAMFLOW_LAKE": "s3://bucket/lake"},  # Hadoop's connector is s3a
        {"STREAMFLOW_LAKE": "s3a://Bad_Bucket/lake"},
        {"STREAMFLOW_S3_ENDPOINT": "minio:9000"},
        {"STREAMFLOW_S3_ENDPOINT": "http://minio:9000/path"},
        {"STREAMFLOW_SPARK_DRIVER_MEMORY": "lots"},
    ],
)
def test_malformed_lake_settings_are_refused_with_the_form_to_use(tmp_path, env):
    with pytest.raises(ConfigError, match="s3a://bucket/prefix|http\\(s\\)://host:port|such as 6g"):
        _settings(tmp_path, **env)


def test_spark_driver_memory_reaches_feast(tmp_path):
    (tmp_path / "feature_repo").symlink_to(Path(__file__).resolve().parents[2] / "feature_repo")
    from streamflow.features.store import repo_config

    s = _settings(tmp_path, STREAMFLOW_SPARK_DRIVER_MEMORY="12G")
    try:  # the config names the database, so an embedded one is started: stop it with the test
        assert repo_config(s).offline_store.spark_conf["spark.driver.memory"] == "12g"
    finally:
        if s.embedded:
            db.stop_embedded(s)
    assert _settings(tmp_path).spark_driver_memory == "1g"


def test_the_default_home_is_the_checkout_holding_the_feast_repo(monkeypatch):
    """With nothing set (a user's `make run`), the project folder is the checkout: feature_repo/ and
    the library beside it (the package moved a floor down once and pointed home into itself)."""
    monkeypatch.delenv("STREAMFLOW_HOME", raising=False)
    from streamflow.core.config import _default_home

    home = _default_home()
    assert (home / "feature_repo").is_dir() and (home / "streamflow" / "core" / "config.py").is_file()
    assert (home / "pyproject.toml").is_file()


def test_a_home_with_no_feast_repo_says_where_it_looked_and_what_to_do(tmp_path):
    from streamflow.core.errors import NotReady
    from streamflow.features.store import repo_yaml

    with pytest.raises(NotReady, match=r"no Feast repo at .*feature_repo .*or point STREAMFLOW_HOME at it"):
        repo_yaml(load_settings({"STREAMFLOW_HOME": str(tmp_path)}))
