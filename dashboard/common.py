"""Small helpers shared by the pages: settings, cached script loading, metric badges."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from dashboard import runs, scripttext
from dashboard.settings import Settings, from_env
from dashboard.throttle import Throttle

# Badge label and format per results column (paper scales).
BADGES: dict[str, str] = {
    "csd_self": "CSD-self",
    "csd_cross": "CSD-cross",
    "cids_self": "CIDS-self",
    "cids_cross": "CIDS-cross",
    "alignment": "Align",
    "occm": "OCCM",
    "inception": "IS",
    "aesthetics": "Aes",
}


def settings() -> Settings:
    """The settings of this process (read from the environment on every rerun: cheap, and tests can change it)."""
    return from_env()


@st.cache_data(ttl=30, show_spinner=False, max_entries=1024)
def cached_script(base: str, story_id: str) -> scripttext.ScriptView | None:
    """The script of one story of one set; unreadable scripts give None (the page says so)."""
    try:
        return scripttext.load_script(Path(base) / story_id)
    except (runs.RunReadError, OSError, ValueError):
        return None


def badges_markdown(values: dict[str, float]) -> str:
    """Markdown badges ``:blue-badge[CSD-self 59.0]`` for the results columns present in ``values``."""
    parts = []
    for col, label in BADGES.items():
        if col in values:
            v = values[col]
            txt = f"{v:.2f}" if col in ("inception", "aesthetics") else f"{v:.1f}"
            parts.append(f":blue-badge[{label} {txt}]")
    return " ".join(parts)


def inject_css() -> None:
    st.markdown(scripttext.CSS, unsafe_allow_html=True)


@st.cache_resource(show_spinner=False)
def admin_login_throttle() -> Throttle:
    """One throttle of wrong admin tokens per app process, shared by every session (a new session must not reset
    it). Here and not in the Admin page: page files are run as scripts, so a cache there is not the same object
    the rest of the process (and the tests) can reach."""
    return Throttle()


@st.cache_resource(show_spinner=False)
def get_store(db_url: str):
    """One study store per database URL and process (thread-safe; shared by all sessions)."""
    from study import open_store

    return open_store(db_url)
