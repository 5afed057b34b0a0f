"""Feature references: `view:feature` parsed once, and a spec (a service, a view, a list) resolved
against the registry."""

from __future__ import annotations

import time
from typing import NamedTuple

from streamflow.core.catalog import LINEAGE_FIELDS, SERVICE
from streamflow.core.dates import in_words
from streamflow.core.errors import InvalidInput, NotFound


class FeatureRef(NamedTuple):
    """A feature reference as Feast writes it, `view:feature`, parsed once."""

    view: str
    feature: str

    @classmethod
    def parse(cls, ref: str) -> FeatureRef:
        view, sep, feature = ref.partition(":")
        if not sep or not view or not feature:
            raise InvalidInput(f"a feature is named view:feature, got {ref!r}")
        return cls(view, feature)

    def __str__(self) -> str:
        return f"{self.view}:{self.feature}"


def feature_names(refs: list[str]) -> list[str]:
    """The column names a retrieval of `refs` gives (Feast's default: the bare feature names)."""
    return [FeatureRef.parse(r).feature for r in refs]


def view_of(refs: list[str]) -> dict[str, str]:
    """Feature name -> the view it is read from."""
    return {p.feature: p.view for p in map(FeatureRef.parse, refs)}


def lineage_field(view_name: str, store) -> str | None:
    names = [f.name for f in store.get_feature_view(view_name).features if f.name in LINEAGE_FIELDS]
    return names[0] if names else None


def service_refs(store, name: str) -> list[str]:
    fs = store.get_feature_service(name)
    refs = []
    for p in fs.feature_view_projections:
        # the view's declared order (its `schema` is a set, ordered anew in each process)
        order = {f.name: i for i, f in enumerate(store.get_feature_view(p.name).features)}
        feats = sorted(p.features, key=lambda f: order.get(f.name, len(order)))
        refs += [str(FeatureRef(p.name_to_use(), f.name)) for f in feats]
    return refs


def view_features(store, view_name: str) -> list[str]:
    return [f.name for f in store.get_feature_view(view_name).features]


def parse_refs(spec: str | list[str] | None, services: dict[str, list[str]], views: dict[str, list[str]]) -> list[str]:
    """`None`/a service/`view`/`view:feature,...` -> feature references, given the registry's
    services (name -> refs) and views (name -> features). Pure: no store is read."""
    if spec is None or spec == "" or spec == []:
        spec = SERVICE
    items = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec)]
    refs: list[str] = []
    for item in filter(None, items):
        if ":" not in item:
            if item in services:
                refs += services[item]
            elif item in views:
                refs += [str(FeatureRef(item, f)) for f in views[item]]
            else:
                raise NotFound(
                    f"unknown feature service or view {item!r}; services: {', '.join(sorted(services))}; "
                    f"views: {', '.join(sorted(views))}"
                )
            continue
        view, feat = FeatureRef.parse(item)
        if view not in views:
            raise NotFound(f"unknown feature view {view!r}; views: {', '.join(sorted(views))}")
        if feat not in views[view]:
            raise NotFound(f"unknown feature {feat!r} in {view}; it has: {', '.join(views[view])}")
        refs.append(item)
    if not refs:  # `,` or `, ,`: a frame of labels alone, silently, otherwise
        raise InvalidInput(f"no feature named in {spec!r}: give a service, a view or view:feature, comma-separated")
    return list(dict.fromkeys(refs))  # keep order, drop duplicates


_refs_cache: dict[tuple, tuple[float, list[str], object]] = {}
REFS_TTL_S = 30.0


def resolve_features(store, spec: str | list[str] | None) -> list[str]:
    """Validated feature references for `spec` (see `parse_refs`).

    Reading the registry costs more than a lookup; results are cached per store for REFS_TTL_S
    seconds, so an API or app serving many lookups resolves once, and never past a refresh of the
    store's registry cache (the app refreshes it whenever the registry changed: the refs must not
    be older than the registry its pages read).
    """
    key = (id(store), spec if isinstance(spec, str | None) else tuple(spec))
    hit = _refs_cache.get(key)
    now = time.monotonic()
    cached = getattr(getattr(store, "registry", None), "cached_registry_proto", None)
    if hit and now - hit[0] < REFS_TTL_S and hit[2] is cached:
        return list(hit[1])
    views = {v.name: [f.name for f in v.features] for v in store.list_all_feature_views()}
    services = {s.name: service_refs(store, s.name) for s in store.list_feature_services()}
    refs = parse_refs(spec, services, views)
    _refs_cache[key] = (now, refs, cached)
    return list(refs)


def registry_summary(store) -> list[dict]:
    """One row per feature: view, feature, type, TTL, source table, online, description."""
    rows = []
    for fv in sorted(store.list_all_feature_views(), key=lambda v: v.name):
        src = fv.batch_source
        table = (getattr(src, "tags", None) or {}).get("table") or getattr(src, "name", "")
        for f in fv.features:
            rows.append(
                {
                    "view": fv.name,
                    "feature": f.name,
                    "type": str(f.dtype),
                    "ttl": in_words(fv.ttl),
                    "source_table": table,
                    "online": fv.online,
                    "description": f.description,
                }
            )
    return rows
