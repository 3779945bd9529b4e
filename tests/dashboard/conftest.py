"""Fixtures for the dashboard tests: generated run directories, app settings in the environment, clean caches."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import streamlit as st

from dashboard.settings import ENV_ADMIN_TOKEN, ENV_BASE_URL, ENV_DB, ENV_MODE, ENV_RUNS, Settings
from tests.dashboard.fixtures import Built, build_outputs, build_runs

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")
ADMIN_TOKEN = "test-admin-token-123"


@dataclass
class Tree:
    root: Path
    runs: Built
    outputs: Built


@pytest.fixture(autouse=True)
def _clean_streamlit(monkeypatch: pytest.MonkeyPatch):
    """Every test starts with empty Streamlit caches and no dashboard variables from the outer environment."""
    for name in (ENV_RUNS, ENV_DB, ENV_ADMIN_TOKEN, ENV_BASE_URL, ENV_MODE):
        monkeypatch.delenv(name, raising=False)
    st.cache_data.clear()
    st.cache_resource.clear()
    yield
    st.cache_data.clear()
    st.cache_resource.clear()


@pytest.fixture
def tree(tmp_path: Path) -> Tree:
    """A runs root with sweep `smoke` (arms full, no_id_prompting) and a plain outputs folder `vsb`."""
    root = tmp_path / "data"
    return Tree(root, build_runs(root / "runs"), build_outputs(root / "vsb"))


@pytest.fixture
def app_settings(tree: Tree, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings for the app under test, exported to the environment the app reads."""
    s = Settings(
        runs=(str(tree.root),),
        db_url=f"sqlite:///{tmp_path / 'study.db'}",
        admin_token=ADMIN_TOKEN,
        base_url="http://127.0.0.1:8599",
    )
    for k, v in s.to_env().items():
        monkeypatch.setenv(k, v)
    return s


def set_env(monkeypatch: pytest.MonkeyPatch, s: Settings) -> None:
    for k, v in s.to_env().items():
        monkeypatch.setenv(k, v)
