"""The locked door's rules: who may write in the app, and the API's bearer token."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from streamflow.api import create_app
from streamflow.core.access import bearer_ok, write_mode
from streamflow.core.config import load_settings

NO_SERVER = "postgresql://nobody@127.0.0.1:1/none"  # nothing listens: /health answers 503 at once


@pytest.mark.parametrize(
    "address,password,oidc,mode",
    [
        ("127.0.0.1", "", False, "open"),
        ("localhost", "", False, "open"),
        ("0.0.0.0", "", False, "read-only"),
        (None, "", False, "read-only"),  # Streamlit's default listens on every interface
        ("0.0.0.0", "s3cret", False, "password"),
        ("127.0.0.1", "s3cret", False, "password"),  # configured: required on loopback too
        ("0.0.0.0", "s3cret", True, "oidc"),
    ],
)
def test_write_mode(address, password, oidc, mode):
    assert write_mode(address, password, oidc) == mode


def test_bearer():
    assert bearer_ok("Bearer abc", "abc") and bearer_ok("bearer abc ", "abc")
    assert not bearer_ok("Bearer abd", "abc") and not bearer_ok("abc", "abc") and not bearer_ok(None, "abc")
    assert not bearer_ok("Bearer ", "")  # no token configured never matches


def test_api_requires_the_token_on_every_route_but_health(tmp_path):
    settings = load_settings(
        {"STREAMFLOW_HOME": str(tmp_path), "STREAMFLOW_API_TOKEN": "t0ken", "STREAMFLOW_DATABASE_URL": NO_SERVER}
    )
    assert "t0ken" not in repr(settings)
    client = TestClient(create_app(settings, store=object()), raise_server_exceptions=False)
    for path in ("/features/7590-VHVEG", "/docs", "/openapi.json"):
        r = client.get(path)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", path
        assert client.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/openapi.json", headers={"Authorization": "Bearer t0ken"}).status_code == 200
    assert client.get("/health").status_code != 401  # open (503 here: no database in this test)
    assert client.get("/features/bad id!", headers={"Authorization": "Bearer t0ken"}).status_code == 422
    # every error in one body: a line a person reads and the error class, a parameter FastAPI refuses too
    assert client.get("/docs").json()["error"] == "Unauthorized"
    r = client.get("/features/7590-VHVEG", params={"service": "nope"}, headers={"Authorization": "Bearer t0ken"})
    assert r.status_code == 422 and r.json() == {
        "detail": "service 'nope': Input should be 'churn_model_v1' or 'churn_model_v2'",
        "error": "InvalidInput",
    }


def test_api_is_open_without_a_token(tmp_path):
    client = TestClient(create_app(load_settings({"STREAMFLOW_HOME": str(tmp_path)}), store=object()))
    assert client.get("/openapi.json").status_code == 200
