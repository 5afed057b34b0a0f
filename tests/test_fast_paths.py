"""Our Feast extension stores (feast_ext/, named in feature_store.yaml) give the same values and
types as stock Feast's PostgreSQL stores on the same data: training frames and online responses."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml

from streamflow.catalog import LABEL_FEATURE, LABEL_VIEW, SERVICE
from streamflow.dates import EPOCH, to_utc
from streamflow.store import _fill, _in_repo, feast_env, service_refs, yaml_path
from tests.conftest import prepared_store


def _stock_store(settings):
    """The same repo on Feast's stock PostgreSQL offline and online stores, as another project."""
    from feast import FeatureStore
    from feast.repo_config import RepoConfig
    from feast.repo_operations import apply_total_with_repo_instance, parse_repo

    raw = _fill(yaml.safe_load(yaml_path(settings).read_text()), feast_env(settings))
    raw["project"] = "streamflow_stock"
    raw["offline_store"]["type"] = "postgres"
    raw["online_store"]["type"] = "postgres"
    config = RepoConfig(**raw)
    config.repo_path = settings.feature_repo
    store = FeatureStore(repo_path=str(settings.feature_repo), config=config)
    with _in_repo(settings.feature_repo):
        repo = parse_repo(settings.feature_repo.resolve())
        apply_total_with_repo_instance(store, store.project, store.registry, repo, skip_source_validation=True)
    return store


@pytest.fixture
def both(embedded_settings, months):
    settings, ours = prepared_store(embedded_settings, months, n_months=2)
    stock = _stock_store(settings)
    end = to_utc(months[1][1])
    views = [v.name for v in stock.list_feature_views() if v.online]
    stock.materialize(start_date=EPOCH, end_date=end, feature_views=views)
    return settings, ours, stock


def test_training_frames_equal_stock_feast(both):
    settings, ours, stock = both
    refs = service_refs(ours, SERVICE) + [f"{LABEL_VIEW}:{LABEL_FEATURE}"]
    from streamflow import db

    with db.connection(settings) as conn:
        ids = [r[0] for r in conn.execute("SELECT user_id FROM users_snapshots WHERE as_of = '2024-02-29'")]
    entity = pd.DataFrame({"user_id": ids, "event_timestamp": pd.Timestamp("2024-02-29", tz="UTC")})
    a = ours.get_historical_features(entity_df=entity, features=refs).to_df()
    b = stock.get_historical_features(entity_df=entity, features=refs).to_df()
    a = a.sort_values("user_id").reset_index(drop=True)
    b = b.sort_values("user_id").reset_index(drop=True)[a.columns]
    assert len(a) == len(ids) > 0
    pd.testing.assert_frame_equal(a, b, check_dtype=True)


def test_online_responses_equal_stock_feast(both):
    settings, ours, stock = both
    refs = service_refs(ours, SERVICE)
    from streamflow import db

    with db.connection(settings) as conn:
        ids = [r[0] for r in conn.execute("SELECT user_id FROM users_snapshots ORDER BY md5(user_id) LIMIT 60")]
    ids = ["7590-VHVEG"] + [u for u in ids if u != "7590-VHVEG"]
    rows = [{"user_id": u} for u in ids + ["0000-NOONE"]]
    a = ours.get_online_features(features=refs, entity_rows=rows).to_dict(include_event_timestamps=True)
    b = stock.get_online_features(features=refs, entity_rows=rows).to_dict(include_event_timestamps=True)
    assert a.keys() == b.keys()
    for k in a:
        assert a[k] == b[k], k
        assert [type(v) for v in a[k]] == [type(v) for v in b[k]], k
    assert a["monthly_fee"][0] == 29.85 and a["monthly_fee"][-1] is None
