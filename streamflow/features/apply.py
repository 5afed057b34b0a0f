"""Registering feature_repo/ in Feast's registry: Feast's own `feast apply` path, run in-process
for these settings, and the check that it has been done."""

from __future__ import annotations

import contextlib
import io
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from streamflow.core.catalog import SERVICE
from streamflow.core.config import Settings, load_settings
from streamflow.core.errors import NotReady
from streamflow.features.repo import for_settings
from streamflow.features.store import get_store


@dataclass
class ApplyResult:
    entities: list[str]
    feature_views: list[str]
    feature_services: list[str]
    output: str = ""


_apply_lock = threading.Lock()


@contextlib.contextmanager
def _in_repo(repo: Path):
    """Feast's parser imports the repo's files as modules named relative to the working
    directory (as `feast apply` run in the repo does); serialized, and the directory restored."""
    with _apply_lock:
        here = os.getcwd()
        path = str(repo.resolve())
        if path in sys.path:
            sys.path.remove(path)
        sys.path.insert(0, path)  # this repo's files before another repo's of the same names
        stems = {p.stem for p in repo.glob("*.py")}
        for name in [
            n for n, m in sys.modules.items() if n in stems or str(getattr(m, "__file__", "")).startswith(path + os.sep)
        ]:
            del sys.modules[name]  # parse the files afresh: their sources depend on the settings applied
        os.chdir(path)
        try:
            yield
        finally:
            os.chdir(here)


def apply(settings: Settings | None = None, store=None, verbose: bool = False) -> ApplyResult:
    """Register feature_repo/ in the registry and create the online tables: Feast's own
    `feast apply` path (parse the repo, diff against the registry, apply and delete)."""
    from feast.repo_operations import apply_total_with_repo_instance, parse_repo

    settings = settings or load_settings()
    store = store or get_store(settings, check_sources=False)
    out = io.StringIO()
    with _in_repo(settings.feature_repo), for_settings(settings):
        repo = parse_repo(settings.feature_repo.resolve())
        _drop_sources_of_another_kind(store, repo.data_sources)
        with contextlib.redirect_stdout(sys.stdout if verbose else out):
            apply_total_with_repo_instance(store, store.project, store.registry, repo, skip_source_validation=False)
    return ApplyResult(
        entities=sorted(e.name for e in repo.entities),
        feature_views=sorted(v.name for v in repo.feature_views),
        feature_services=sorted(s.name for s in repo.feature_services),
        output=out.getvalue(),
    )


def _drop_sources_of_another_kind(store, sources) -> None:
    """A profile switch (PostgreSQL <-> the lake) changes each source's kind under the same name,
    which Feast's registry cannot update in place: delete those first; apply then adds them."""
    registered = {s.name: s for s in store.list_data_sources()}
    for src in sources:
        old = registered.get(src.name)
        if old is not None and type(old) is not type(src):
            store.registry.delete_data_source(src.name, store.project, commit=True)


def is_applied(store, allow_cache: bool = False) -> bool:
    """Whether the definitions are registered (the model's service is); `allow_cache`: from the
    store's registry cache, Feast's own (a page's check; the app refreshes that cache whenever the
    registry changes)."""
    try:
        store.get_feature_service(SERVICE, allow_cache=allow_cache)
        return True
    except Exception:  # noqa: BLE001 - Feast raises several "not found" types
        return False


def require_applied(store) -> None:
    if not is_applied(store):
        raise NotReady("the Feast definitions are not registered yet: run `streamflow apply`")
