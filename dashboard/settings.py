"""Dashboard settings, passed from `unimage dashboard` to the Streamlit process through environment variables.

Why the environment and not command-line arguments: the admin token must not appear in `ps` output, and
Streamlit's own argument parser owns argv. Tests (AppTest) set the same variables before running the app.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

ENV_RUNS = "UNIMAGE_DASHBOARD_RUNS"
ENV_DB = "UNIMAGE_DASHBOARD_DB"
ENV_ADMIN_TOKEN = "UNIMAGE_DASHBOARD_ADMIN_TOKEN"
ENV_BASE_URL = "UNIMAGE_DASHBOARD_BASE_URL"
ENV_MODE = "UNIMAGE_DASHBOARD_MODE"

DEFAULT_DB = "sqlite:///unimage_study.db"
MODES = ("full", "study")
#: Shorter admin tokens are refused: the Admin page shows method names and every answer.
MIN_ADMIN_TOKEN_LENGTH = 16


def admin_token_problem(token: str) -> str | None:
    """Why ``token`` cannot be an admin token (None when it can)."""
    if len(token) < MIN_ADMIN_TOKEN_LENGTH:
        return (
            f"the admin token has {len(token)} characters; at least {MIN_ADMIN_TOKEN_LENGTH} are required "
            "(a short one can be guessed)"
        )
    return None


@dataclass(frozen=True)
class Settings:
    """What the app needs to know about its surroundings.

    Attributes:
        runs: Run roots (directories); images are served only from inside these.
        db_url: SQLAlchemy URL of the study store.
        admin_token: Token that unlocks the Admin page; empty string disables the Admin page.
        base_url: Public URL of the app, used to print invite links.
        mode: "full" (all pages) or "study" (only Study and Admin, for hosted studies where annotators must not
            be able to browse named storyboards).
    """

    runs: tuple[str, ...] = ()
    db_url: str = DEFAULT_DB
    admin_token: str = ""
    base_url: str = "http://localhost:8501"
    mode: str = "full"

    def to_env(self) -> dict[str, str]:
        """The environment variables that make `from_env` return these settings."""
        return {
            ENV_RUNS: json.dumps(list(self.runs)),
            ENV_DB: self.db_url,
            ENV_ADMIN_TOKEN: self.admin_token,
            ENV_BASE_URL: self.base_url,
            ENV_MODE: self.mode,
        }


def from_env(environ: dict[str, str] | None = None) -> Settings:
    """Read settings from the environment (``os.environ`` by default).

    ``UNIMAGE_DASHBOARD_RUNS`` is a JSON list of directories, or a single ``os.pathsep``-separated string.

    Raises:
        ValueError: if the mode or the runs list is malformed (the message names the variable).
    """
    env = os.environ if environ is None else environ
    raw_runs = env.get(ENV_RUNS, "").strip()
    runs: list[str]
    if raw_runs.startswith("["):
        try:
            parsed = json.loads(raw_runs)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{ENV_RUNS}: not a JSON list of directories ({exc})") from exc
        if not isinstance(parsed, list) or not all(isinstance(p, str) for p in parsed):
            raise ValueError(f"{ENV_RUNS}: expected a JSON list of strings")
        runs = parsed
    else:
        runs = [p for p in raw_runs.split(os.pathsep) if p]
    mode = env.get(ENV_MODE, "full") or "full"
    if mode not in MODES:
        raise ValueError(f"{ENV_MODE}: {mode!r} is not one of {MODES}")
    return Settings(
        runs=tuple(os.path.abspath(os.path.expanduser(p)) for p in runs),
        db_url=env.get(ENV_DB, "") or DEFAULT_DB,
        admin_token=env.get(ENV_ADMIN_TOKEN, ""),
        base_url=(env.get(ENV_BASE_URL, "") or "http://localhost:8501").rstrip("/"),
        mode=mode,
    )
