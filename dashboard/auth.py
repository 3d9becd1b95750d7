"""The optional password in front of the whole dashboard (``CLICKSTREAM_DASHBOARD_PASSWORD``)."""

from __future__ import annotations

import hmac

import streamlit as st
from pydantic import SecretStr


def password_matches(given: str, expected: SecretStr) -> bool:
    """Constant-time comparison, so the answer's timing does not leak the password."""
    return hmac.compare_digest(given.encode(), expected.get_secret_value().encode())


def require_password(expected: SecretStr | None) -> None:
    """Without a configured password, do nothing; else ask for it once per browser session and
    stop the page until it is given."""
    if expected is None or st.session_state.get("authenticated"):
        return
    st.title("clickstream")
    with st.form("login"):
        given = st.text_input("Password", type="password")
        submitted = st.form_submit_button("Sign in")
    if submitted:
        if password_matches(given, expected):
            st.session_state.authenticated = True
            st.rerun()
        st.error("Wrong password.")
    st.stop()
