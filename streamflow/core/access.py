"""Who may write: the feature API's bearer token and the app's write actions.

The app's write actions (materialize, re-validate, register definitions, commit an upload) are
open on loopback with nothing configured -- a laptop. Beyond loopback they need a signed-in
user: Streamlit's OIDC login when `[auth]` is configured in `.streamlit/secrets.toml`, else the
password in STREAMFLOW_ADMIN_PASSWORD; with neither, the app runs read-only and says so.
Once a password or OIDC is configured it is required on loopback too.
"""

from __future__ import annotations

import hmac

LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
MODES = ("open", "oidc", "password", "read-only")


def write_mode(address: str | None, admin_password: str, oidc_configured: bool) -> str:
    """How the app guards writes, for the address it listens on and what is configured."""
    if oidc_configured:
        return "oidc"
    if admin_password:
        return "password"
    if address in LOOPBACK:
        return "open"
    return "read-only"


def same_secret(given: str, expected: str) -> bool:
    """Constant-time comparison; an empty expected secret never matches."""
    return bool(expected) and hmac.compare_digest(given.encode(), expected.encode())


def bearer_ok(authorization: str | None, token: str) -> bool:
    scheme, _, given = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and same_secret(given.strip(), token)
