"""Links into the studio: one page with its selections, as a URL one can send a colleague.

Every selection a page keeps in its URL is a widget bound to a query parameter (Streamlit's
`bind="query-params"`), whose name is the widget's key. The keys are named here, once: the pages
take their widget keys from `key()`, and whoever links to a page (an alert, a CLI message) builds
the same parameters with `path()` or `url()`. A page opened from such a link restores the view.

`path()` is relative ("monitoring?mon_month=2024-02-29"): the app's own links, which work behind
any address or base path. `url()` puts the studio's address in front (`STREAMFLOW_APP_URL`, read
by `core.config`; default http://127.0.0.1:8501, what `make run` serves): the links the CLI prints.
"""

from __future__ import annotations

from datetime import date
from urllib.parse import urlencode

from streamflow.core.config import load_settings
from streamflow.core.errors import InvalidInput

# page (its URL path) -> selection -> the widget key, which is the query parameter's name
PAGES: dict[str, dict[str, str]] = {
    "overview": {},
    "catalog": {"search": "cat_search", "feature": "cat_feature", "as_of": "cat_as_of"},
    "training_frame": {
        "as_of": "as_of",
        "user_id": "tf_user",
        "feature": "dist_feature",
        "labels": "labels",
        "compare": "compare_on",
        "compare_with": "compare_with",
    },
    "datasets": {"dataset": "ds_pick", "diff": "ds_diff", "a": "ds_diff_a", "b": "ds_diff_b"},
    "data_quality": {"table": "dq_tables", "as_of": "dq_as_of", "outcome": "dq_outcome"},
    "ingest": {},
    "online_lookup": {"user_id": "lookup_id"},
    "skew": {
        "user_id": "skew_user",
        "reference": "skew_ref",
        "population_reference": "skew_ref_pop",
        "feature": "skew_num",
        "service": "skew_service",
    },
    "explain": {"user_id": "ex_user", "as_of": "ex_as_of"},
    "drift": {"reference": "drift_a", "as_of": "drift_b", "feature": "drift_feature", "service": "drift_service"},
    "monitoring": {"month": "mon_month", "feature": "mon_feature", "label_feature": "mon_label_feature"},
    "model_check": {"train": "mc_a", "evaluate": "mc_b", "service": "mc_service"},
    "feature_lab": {"candidate": "lab_pick", "as_of": "lab_as_of"},
    "materialize": {},
}


def key(page: str, selection: str) -> str:
    """The widget key (and query parameter) of a page's selection."""
    try:
        return PAGES[page][selection]
    except KeyError:
        raise InvalidInput(f"no selection {selection!r} on page {page!r}") from None


def _text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def path(page: str, **selection) -> str:
    """`page?key=value&...`: the page with these selections (None left out; a list repeats its
    parameter, as a multiselect reads it)."""
    if page not in PAGES:
        raise InvalidInput(f"no page {page!r}; pages: {', '.join(PAGES)}")
    params = []
    for name, value in selection.items():
        if value is None:
            continue
        values = value if isinstance(value, list | tuple) else [value]
        params += [(key(page, name), _text(v)) for v in values]
    return page + (f"?{urlencode(params)}" if params else "")


def app_url() -> str:
    """The studio's address, as the CLI prints it in links (`Settings.app_url`)."""
    return load_settings().app_url


def url(page: str, **selection) -> str:
    """The full link: the studio's address, then `path()`."""
    return absolute(path(page, **selection))


def absolute(relative: str) -> str:
    """A `path()` as a full link."""
    return f"{app_url()}/{relative}"


def served(relative: str) -> str:
    """A file the studio serves from `app/static/` (Streamlit's static serving), as a full link."""
    return f"{app_url()}/app/static/{relative.lstrip('/')}"
