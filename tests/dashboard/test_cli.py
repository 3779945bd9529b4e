"""`unimage dashboard`: arguments, settings passed through the environment, errors."""

from __future__ import annotations

import argparse
import json

import pytest

from dashboard import cli
from dashboard.settings import ENV_ADMIN_TOKEN, ENV_RUNS, Settings, from_env
from unimage.cli import main


def parse(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    cli.configure(p)
    return p.parse_args(list(argv))


def test_build_passes_settings_in_the_environment_not_argv(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    args = parse(
        "--runs",
        str(tmp_path / "a"),
        "--runs",
        str(tmp_path / "b"),
        "--db",
        str(tmp_path / "s.db"),
        "--port",
        "8765",
        "--admin-token",
        "sekret-sekret-sekret",
        "--mode",
        "study",
    )
    argv, env, s = cli.build(args)
    assert "sekret-sekret-sekret" not in " ".join(argv)  # never visible in the process list
    assert argv[1:4] == ["-m", "streamlit", "run"] and argv[4].endswith("dashboard/app.py")
    assert argv[argv.index("--server.port") + 1] == "8765"
    assert argv[argv.index("--server.address") + 1] == "127.0.0.1"
    back = from_env(env)
    assert back == s
    assert back.runs == (str((tmp_path / "a").resolve()), str((tmp_path / "b").resolve()))
    assert back.db_url == f"sqlite:///{(tmp_path / 's.db').resolve()}"
    assert (back.admin_token, back.mode, back.base_url) == ("sekret-sekret-sekret", "study", "http://localhost:8765")
    assert json.loads(env[ENV_RUNS]) == list(back.runs)


def test_generated_admin_token_is_random(tmp_path, monkeypatch):
    monkeypatch.delenv(cli.ENV_TOKEN_FALLBACK, raising=False)
    a = cli.build(parse())[2].admin_token
    b = cli.build(parse())[2].admin_token
    assert a != b and len(a) >= 24
    monkeypatch.setenv(cli.ENV_TOKEN_FALLBACK, "from-env-from-env-from-env")
    assert cli.build(parse())[1][ENV_ADMIN_TOKEN] == "from-env-from-env-from-env"


def test_database_urls_pass_through():
    assert cli.build(parse("--db", "postgresql+psycopg://u:pw@h/db"))[2].db_url == "postgresql+psycopg://u:pw@h/db"
    assert cli._safe_url("postgresql+psycopg://u:pw@h/db") == "postgresql+psycopg://u:***@h/db"


def test_bad_arguments_exit_2_with_a_named_error(tmp_path, capsys):
    assert main(["dashboard", "--runs", str(tmp_path / "missing"), "--dry-run"]) == 2
    assert f"--runs {tmp_path / 'missing'}: not a directory" in capsys.readouterr().err
    assert main(["dashboard", "--port", "70000", "--dry-run"]) == 2


def test_dry_run_prints_the_command(tmp_path, capsys):
    assert main(["dashboard", "--runs", str(tmp_path), "--port", "8599", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "streamlit run" in out and "--server.port 8599" in out


def test_settings_from_env_errors():
    with pytest.raises(ValueError, match="UNIMAGE_DASHBOARD_RUNS"):
        from_env({ENV_RUNS: "[1, 2]"})
    with pytest.raises(ValueError, match="UNIMAGE_DASHBOARD_MODE"):
        from_env({"UNIMAGE_DASHBOARD_MODE": "public"})
    assert from_env({ENV_RUNS: "/a:/b"}).runs == ("/a", "/b")
    assert from_env({}) == Settings()
