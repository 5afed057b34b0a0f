"""Links into the studio: each page's selections are named once, and each page binds them to its URL."""

from __future__ import annotations

from datetime import date

import pytest

from streamflow.core import links
from streamflow.core.errors import InvalidInput
from tests.support import REPO


def test_each_pages_selections_are_its_bound_widget_keys():
    for page, selections in links.PAGES.items():
        source = (REPO / "app" / "views" / f"{page}.py").read_text()  # every page named is a page
        for selection in selections:
            assert f'key=links.key("{page}", "{selection}")' in source, (page, selection)
            after = source.split(f'key=links.key("{page}", "{selection}")', 1)[1][:80]
            assert 'bind="query-params"' in after, (page, selection)


def test_a_link_names_the_page_and_its_selections(monkeypatch):
    assert links.path("monitoring", month=date(2024, 2, 29), feature="monthly_fee") == (
        "monitoring?mon_month=2024-02-29&mon_feature=monthly_fee"
    )
    assert (
        links.path("data_quality", table=["users", "labels"], as_of=None)
        == "data_quality?dq_tables=users&dq_tables=labels"
    )
    assert links.path("explain", user_id="7590-VHVEG&x=1") == "explain?ex_user=7590-VHVEG%26x%3D1"  # quoted
    monkeypatch.delenv("STREAMFLOW_APP_URL", raising=False)
    assert links.url("materialize") == "http://127.0.0.1:8501/materialize"
    monkeypatch.setenv("STREAMFLOW_APP_URL", "https://studio.example.com/")
    assert links.url("skew", user_id="a") == "https://studio.example.com/skew?skew_user=a"
    monkeypatch.setenv("STREAMFLOW_APP_URL", "javascript:alert(1)")
    with pytest.raises(InvalidInput, match="STREAMFLOW_APP_URL"):
        links.url("skew")
    with pytest.raises(InvalidInput, match="no page"):
        links.path("nowhere")
    with pytest.raises(InvalidInput, match="no selection"):
        links.path("skew", month="2024-01-31")
