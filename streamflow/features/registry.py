"""What the Feast registry holds, shaped for people: objects, lineage, search, a feature's page,
and copyable code. Reads the registry through Feast; nothing here writes."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

import pandas as pd

from streamflow.core.catalog import JOIN_KEY, LINEAGE_FIELDS
from streamflow.core.config import Settings, load_settings
from streamflow.core.dates import in_words
from streamflow.core.errors import NotFound
from streamflow.features import derived
from streamflow.features.refs import FeatureRef


def _tags(obj) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted((getattr(obj, "tags", None) or {}).items()))


@dataclass
class RegistryObjects:
    entities: pd.DataFrame
    sources: pd.DataFrame
    views: pd.DataFrame
    fields: pd.DataFrame  # one row per (view, field)
    services: pd.DataFrame
    edges: pd.DataFrame  # source -> view -> service


def objects(store) -> RegistryObjects:
    """Every entity, data source, feature view (with its fields) and feature service."""
    entities = [
        {"entity": e.name, "join_key": e.join_key, "type": e.value_type.name, "description": e.description,
         "tags": _tags(e)}
        for e in store.list_entities()
    ]  # fmt: skip
    sources, views, fields, edges = [], [], [], []
    for fv in sorted(store.list_all_feature_views(), key=lambda v: v.name):
        src = fv.batch_source
        table = (src.tags or {}).get("table", src.name)
        views.append(
            {
                "view": fv.name,
                "entities": ", ".join(fv.entities),
                "features": len(fv.features),
                "ttl": in_words(fv.ttl),
                "online": fv.online,
                "source": src.name,
                "description": fv.description,
                "tags": _tags(fv),
            }
        )
        sources.append(
            {
                "source": src.name,
                "kind": type(src).__name__,
                "table": table,
                "timestamp_field": src.timestamp_field,
                "created_timestamp_column": src.created_timestamp_column,
                "description": src.description,
            }
        )
        for f in fv.features:
            fields.append(
                {
                    "view": fv.name,
                    "feature": f.name,
                    "type": str(f.dtype),
                    "lineage_field": f.name in LINEAGE_FIELDS,
                    "description": f.description,
                    "tags": _tags(f),
                }
            )
        edges.append({"from": f"source: {src.name}", "to": f"view: {fv.name}", "features": len(fv.features)})
    services = []
    for svc in sorted(store.list_feature_services(), key=lambda s: s.name):
        n = sum(len(p.features) for p in svc.feature_view_projections)
        services.append(
            {
                "service": svc.name,
                "views": ", ".join(p.name for p in svc.feature_view_projections),
                "features": n,
                "description": svc.description,
                "tags": _tags(svc),
            }
        )
        for p in svc.feature_view_projections:
            edges.append({"from": f"view: {p.name}", "to": f"service: {svc.name}", "features": len(p.features)})
    return RegistryObjects(
        pd.DataFrame(entities),
        pd.DataFrame(sources).drop_duplicates("source"),
        pd.DataFrame(views),
        pd.DataFrame(fields),
        pd.DataFrame(services),
        pd.DataFrame(edges),
    )


def search(objs: RegistryObjects, query: str) -> pd.DataFrame:
    """Objects whose name, description or tags contain every word of `query` (case-insensitive)."""
    words = [w for w in query.lower().split() if w]
    rows = []
    for kind, df, name_col, parent_col in (
        ("entity", objs.entities, "entity", None),
        ("source", objs.sources, "source", "table"),
        ("view", objs.views, "view", "source"),
        ("feature", objs.fields, "feature", "view"),
        ("service", objs.services, "service", "views"),
    ):
        for _, r in df.iterrows():
            text = " ".join(str(r.get(c, "")) for c in (name_col, "description", "tags", parent_col) if c).lower()
            if all(w in text for w in words):
                rows.append(
                    {"kind": kind, "name": r[name_col], "in": r[parent_col] if parent_col else "",
                     "description": r.get("description", "")}
                )  # fmt: skip
    return pd.DataFrame(rows, columns=["kind", "name", "in", "description"])


@dataclass
class FeaturePage:
    view: str
    feature: str
    type: str
    description: str
    services: list[str]
    latest_snapshot: date | None
    materialized_up_to: datetime | None
    snippets: dict[str, str] = field(default_factory=dict)

    @property
    def ref(self) -> str:
        return f"{self.view}:{self.feature}"


def feature_page(
    store, ref: str, settings: Settings | None = None, api_url: str = "http://127.0.0.1:8000"
) -> FeaturePage:
    """Type, description, services using it, freshness and copyable code for `view:feature`."""
    from streamflow.storage import runs

    settings = settings or load_settings()
    view, feat = FeatureRef.parse(ref)
    fv = next((v for v in store.list_all_feature_views() if v.name == view), None)
    field_ = next((f for f in fv.features if f.name == feat), None) if fv else None
    if field_ is None:
        raise NotFound(f"no feature {ref!r} in the registry")
    services = sorted(
        s.name
        for s in store.list_feature_services()
        if any(p.name == view and feat in [f.name for f in p.features] for p in s.feature_view_projections)
    )
    t = derived.table_of_view(settings, view)
    latest = None
    if t is not None:
        from streamflow.storage.snapshots import snapshot_dates

        latest = max(snapshot_dates(settings, t), default=None)
    page = FeaturePage(
        view=view,
        feature=feat,
        type=str(field_.dtype),
        description=field_.description,
        services=services,
        latest_snapshot=latest,
        materialized_up_to=runs.last_success_end(settings, view) if fv.online else None,
    )
    page.snippets = snippets(page, online=fv.online, api_url=api_url)
    return page


def snippets(page: FeaturePage, online: bool, api_url: str) -> dict[str, str]:
    as_of = page.latest_snapshot.isoformat() if page.latest_snapshot else "2024-01-31"
    out = {
        "get_historical_features": f'''import pandas as pd
from feast import FeatureStore

store = FeatureStore(repo_path="feature_repo")  # after `eval "$(streamflow env)"`
entity_df = pd.DataFrame({{"{JOIN_KEY}": ["7590-VHVEG"], "event_timestamp": [pd.Timestamp("{as_of}", tz="UTC")]}})
frame = store.get_historical_features(entity_df=entity_df, features=["{page.ref}"]).to_df()''',
    }
    if online:
        out["get_online_features"] = f'''from feast import FeatureStore

store = FeatureStore(repo_path="feature_repo")
values = store.get_online_features(
    features=["{page.ref}"], entity_rows=[{{"{JOIN_KEY}": "7590-VHVEG"}}]
).to_dict()'''
        out["curl"] = f"curl -s {api_url}/features/7590-VHVEG | python -m json.tool  # .features.{page.feature}"
    return out
