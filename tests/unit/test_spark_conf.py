"""STREAMFLOW_SPARK_CONF: more spark.* settings for every Spark step, refused when malformed."""

from __future__ import annotations

import pytest

from streamflow.core.config import ConfigError, load_settings, parse_spark_conf


def test_pairs_by_semicolon_or_line():
    got = parse_spark_conf("spark.executor.memory=2g; spark.driver.host=10.0.0.5\nspark.a.b=x=y")
    assert got == (("spark.executor.memory", "2g"), ("spark.driver.host", "10.0.0.5"), ("spark.a.b", "x=y"))
    assert parse_spark_conf("") == ()


@pytest.mark.parametrize(
    "text,match",
    [
        ("executor.memory=2g", "not spark.<setting>=<value>"),
        ("spark.executor.memory", "not spark.<setting>=<value>"),
        ("spark.executor.memory=", "not spark.<setting>=<value>"),
        ("spark.master=spark://x:7077", "STREAMFLOW_SPARK_MASTER"),
        ("spark.driver.memory=4g", "STREAMFLOW_SPARK_DRIVER_MEMORY"),
    ],
)
def test_malformed_or_owned_elsewhere_is_refused(text, match):
    with pytest.raises(ConfigError, match=match):
        parse_spark_conf(text)


def test_status_shows_the_spark_settings_in_force(tmp_path):
    s = load_settings(
        {
            "STREAMFLOW_HOME": str(tmp_path),
            "STREAMFLOW_OFFLINE_STORE": "spark",
            "STREAMFLOW_SPARK_MASTER": "spark://127.0.0.1:7077",
            "STREAMFLOW_SPARK_CONF": "spark.executor.cores=1",
        }
    )
    assert s.describe()["spark"] == "master spark://127.0.0.1:7077, driver memory 1g, spark.executor.cores=1"
