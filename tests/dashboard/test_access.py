"""Access hardening (issue 14 item 4): weak admin tokens refused, wrong ones throttled, full mode with invites
warned about (CLI and Admin page) and study mode the default once invites exist."""

from __future__ import annotations

import argparse
from dataclasses import replace

import pytest
from streamlit.testing.v1 import AppTest

from dashboard import cli
from dashboard.common import admin_login_throttle
from dashboard.settings import MIN_ADMIN_TOKEN_LENGTH
from dashboard.throttle import FREE_TRIES, Throttle
from dashboard.views.admin import FULL_MODE_WARNING
from study import StudySpec, open_store, paper_criteria
from tests.dashboard.conftest import ADMIN_TOKEN, APP, set_env
from unimage.cli import main

STRONG = "x" * MIN_ADMIN_TOKEN_LENGTH


def _parse(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    cli.configure(p)
    return p.parse_args(list(argv))


def _admin() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=30).run()
    at.switch_page("views/admin.py").run()
    return at


def _try(at: AppTest, token: str) -> AppTest:
    at.text_input(key="admin_token_input").input(token)
    next(b for b in at.button if b.label == "Unlock").click()
    return at.run()


def _db_with_invites(path) -> str:
    store = open_store(path)
    sid = store.create_study(
        StudySpec(name="s", methods=("a", "b"), stories=("01",), criteria=paper_criteria()[:1], catch_rate=0.0)
    )
    store.issue_invites(sid, 2)
    store.close()
    return str(path)


# ----------------------------------------------------------------------------------------------- CLI
@pytest.mark.parametrize("token", ["T", "x" * (MIN_ADMIN_TOKEN_LENGTH - 1)])
def test_cli_refuses_a_short_admin_token(token: str, capsys, monkeypatch) -> None:
    assert main(["dashboard", "--admin-token", token, "--dry-run"]) == 2
    assert f"--admin-token: the admin token has {len(token)} characters; at least 16" in capsys.readouterr().err
    monkeypatch.setenv(cli.ENV_TOKEN_FALLBACK, token)
    assert main(["dashboard", "--dry-run"]) == 2
    assert f"${cli.ENV_TOKEN_FALLBACK}: the admin token has {len(token)}" in capsys.readouterr().err
    monkeypatch.delenv(cli.ENV_TOKEN_FALLBACK)
    assert main(["dashboard", "--admin-token", STRONG, "--dry-run"]) == 0


def test_invites_make_study_mode_the_default_and_full_mode_warns(tmp_path, capsys) -> None:
    empty = tmp_path / "none.db"
    assert cli.build(_parse("--db", str(empty)))[2].mode == "full"  # no database: nothing to protect
    assert not empty.exists()  # looking did not create it
    db = _db_with_invites(tmp_path / "study.db")
    argv, _, s = cli.build(_parse("--db", db))
    assert s.mode == "study" and argv[argv.index("--client.showErrorDetails") + 1] == "type"
    assert main(["dashboard", "--db", db, "--dry-run"]) == 0
    assert "2 invites issued" in capsys.readouterr().err
    assert cli.build(_parse("--db", db, "--mode", "full"))[2].mode == "full"  # an explicit choice is kept ...
    assert main(["dashboard", "--db", db, "--mode", "full", "--dry-run"]) == 0
    err = capsys.readouterr().err
    assert "WARNING: --mode full with 2 invites issued" in err and "Storyboards" in err  # ... and warned about
    assert main(["dashboard", "--db", db, "--mode", "study", "--dry-run"]) == 0
    assert "WARNING" not in capsys.readouterr().err


def test_unreadable_database_defaults_to_study_mode(tmp_path) -> None:
    bad = tmp_path / "not-a-db.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    mode, notice = cli.resolve_mode(None, f"sqlite:///{bad}")
    assert mode == "study" and notice is not None and "could not read" in notice


# ----------------------------------------------------------------------------------------------- throttle
def test_throttle_doubles_the_wait_after_the_free_tries() -> None:
    now = [100.0]
    t = Throttle(free_tries=3, max_wait_s=10, clock=lambda: now[0])
    for _ in range(3):
        assert t.wait() == 0
        t.failure()
    assert t.wait() == 1.0  # 2**0 after the 3 free failures
    now[0] += 1.0
    assert t.wait() == 0
    t.failure()
    assert t.wait() == 2.0
    for _ in range(5):
        t.failure()
    assert t.wait() == 10.0  # capped
    t.success()
    assert t.wait() == 0


def test_admin_page_throttles_wrong_tokens_across_sessions(app_settings) -> None:
    throttle = admin_login_throttle()  # the process-wide instance the page uses (caches are cleared per test)
    now = [1000.0]
    throttle.clock = lambda: now[0]  # frozen: the waits do not depend on how fast the machine runs the app
    for _ in range(FREE_TRIES):  # a new session per try: the throttle is per process, not per session
        assert "Wrong admin token" in _try(_admin(), "guess-guess-guess").error[0].value
    at = _try(_admin(), ADMIN_TOKEN)  # even the right token must wait now, and is not checked
    assert "Too many wrong admin tokens: try again in 1 s" in at.error[0].value and not at.tabs
    now[0] += 1.0
    assert _try(_admin(), ADMIN_TOKEN).tabs  # after the wait the right token works, and resets the count
    assert throttle.wait() == 0


def test_admin_page_refuses_a_short_configured_token(app_settings, monkeypatch) -> None:
    set_env(monkeypatch, replace(app_settings, admin_token="short"))
    at = _try(_admin(), "short")
    assert "Wrong admin token" in at.error[0].value and not at.tabs
    assert any("at least 16" in w.value for w in at.warning)


@pytest.mark.parametrize("mode", ["full", "study"])
def test_admin_page_warns_in_full_mode(app_settings, monkeypatch, mode: str) -> None:
    set_env(monkeypatch, replace(app_settings, mode=mode))
    at = _try(_admin(), ADMIN_TOKEN)
    assert at.tabs
    assert any(w.value == FULL_MODE_WARNING for w in at.warning) == (mode == "full")
