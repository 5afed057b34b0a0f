"""Who may write: the sign-in box, and the guard a page puts before each write button.

The mode (open, OIDC, password, read-only) is decided in `streamflow/core/access.py`; this module
only asks Streamlit for what the visitor did (signed in or not).
"""

from __future__ import annotations

import streamlit as st
from data import settings


def _oidc_configured() -> bool:
    try:
        return "auth" in st.secrets
    except Exception:  # noqa: BLE001 - no secrets.toml at all
        return False


def write_mode() -> str:
    """open | oidc | password | read-only (see streamflow/core/access.py)."""
    from streamflow.core.access import write_mode as mode

    return mode(st.get_option("server.address"), settings().admin_password, _oidc_configured())


def can_write() -> bool:
    mode = write_mode()
    if mode == "open":
        return True
    if mode == "oidc":
        return bool(getattr(st.user, "is_logged_in", False))
    if mode == "password":
        return bool(st.session_state.get("signed_in"))
    return False


def who() -> str:
    """Who is writing, as an alert's acknowledgement records it."""
    if write_mode() == "oidc":
        return str(getattr(st.user, "email", None) or getattr(st.user, "name", None) or "signed-in user")
    return "admin (password)" if write_mode() == "password" else "app user"


def write_guard(action: str) -> bool:
    """True if the visitor may `action`; else a note saying how (the caller disables its button)."""
    if can_write():
        return True
    mode = write_mode()
    if mode == "read-only":
        st.info(f"Read-only: to {action}, set STREAMFLOW_ADMIN_PASSWORD (or OIDC in secrets.toml) and restart.")
    else:
        st.info(f"Sign in (sidebar) to {action}.")
    return False


def door() -> None:
    """The sidebar's sign-in box, and the banner of a read-only app."""
    from streamflow.core.access import same_secret

    mode = write_mode()
    with st.sidebar:
        if mode == "read-only":
            st.warning(
                "**Read-only.** This app listens beyond loopback with no sign-in configured: writes are off. "
                "Set STREAMFLOW_ADMIN_PASSWORD or `[auth]` in .streamlit/secrets.toml."
            )
        elif mode == "oidc":
            if getattr(st.user, "is_logged_in", False):
                st.caption(f"Signed in as {getattr(st.user, 'email', None) or getattr(st.user, 'name', 'user')}")
                st.button("Sign out", on_click=st.logout, key="door_logout")
            else:
                st.button("Sign in", on_click=st.login, key="door_login")
        elif mode == "password":
            if st.session_state.get("signed_in"):
                st.caption("Signed in: write actions enabled")
                if st.button("Sign out", key="door_signout"):
                    st.session_state["signed_in"] = False
                    st.rerun()
            else:
                with st.form("door"):
                    pw = st.text_input("Admin password", type="password", key="door_password")
                    if st.form_submit_button("Sign in"):
                        if same_secret(pw, settings().admin_password):
                            st.session_state["signed_in"] = True
                            st.rerun()
                        else:
                            st.error("Wrong password.")
