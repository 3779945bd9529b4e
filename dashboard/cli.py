"""`unimage dashboard`: start the Streamlit app on the given run roots and study database.

Settings travel to the Streamlit process in environment variables (`dashboard.settings`), so the admin token
never shows in the process list. Without ``--admin-token`` a random token is generated and printed once.
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
from pathlib import Path

from dashboard.settings import DEFAULT_DB, MIN_ADMIN_TOKEN_LENGTH, MODES, Settings, admin_token_problem

APP = Path(__file__).resolve().parent / "app.py"
ENV_TOKEN_FALLBACK = "UNIMAGE_ADMIN_TOKEN"


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``dashboard`` arguments."""
    parser.add_argument(
        "--runs",
        nargs="+",
        action="extend",
        default=[],
        metavar="DIR",
        help="run roots or ViStoryBench output folders (repeatable); images are served only from here",
    )
    parser.add_argument(
        "--db",
        default=DEFAULT_DB,
        metavar="URL",
        help=f"study database: SQLAlchemy URL or SQLite file path (default {DEFAULT_DB})",
    )
    parser.add_argument("--port", type=int, default=8501, help="port (default 8501)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; 0.0.0.0 to share)")
    parser.add_argument(
        "--admin-token",
        default=None,
        metavar="T",
        help=f"token for the Admin page, at least {MIN_ADMIN_TOKEN_LENGTH} characters "
        f"(default: ${ENV_TOKEN_FALLBACK}, else a random one, printed)",
    )
    parser.add_argument("--base-url", default=None, help="public URL used in invite links (default http://HOST:PORT)")
    parser.add_argument(
        "--mode",
        choices=MODES,
        default=None,
        help="full: all pages; study: only Study and Admin (for hosted studies). Default: study when the database "
        "holds issued invites (or cannot be read), else full",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the streamlit command and exit")
    parser.set_defaults(func=run)


def build(args: argparse.Namespace) -> tuple[list[str], dict[str, str], Settings]:
    """The streamlit command line, the environment to run it in, and the settings it carries.

    Raises:
        ValueError: a run root that is not a directory (named in the message), or a bad port.
    """
    for d in args.runs:
        if not Path(d).expanduser().is_dir():
            raise ValueError(f"--runs {d}: not a directory")
    if not 0 < args.port < 65536:
        raise ValueError(f"--port {args.port}: not a TCP port")
    db = args.db if "://" in args.db else f"sqlite:///{Path(args.db).expanduser().resolve()}"
    given = args.admin_token or os.environ.get(ENV_TOKEN_FALLBACK)
    if given and (problem := admin_token_problem(given)):
        source = "--admin-token" if args.admin_token else f"${ENV_TOKEN_FALLBACK}"
        raise ValueError(f"{source}: {problem}; omit it to get a random one")
    token = given or secrets.token_urlsafe(24)
    mode, _ = resolve_mode(args.mode, db)
    host_for_links = "localhost" if args.host in ("0.0.0.0", "127.0.0.1") else args.host
    settings = Settings(
        runs=tuple(str(Path(d).expanduser().resolve()) for d in args.runs),
        db_url=db,
        admin_token=token,
        base_url=(args.base_url or f"http://{host_for_links}:{args.port}").rstrip("/"),
        mode=mode,
    )
    argv = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP),
        "--server.port",
        str(args.port),
        "--server.address",
        args.host,
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        "--server.fileWatcherType",
        "none",
        "--client.toolbarMode",
        "viewer",
        # a traceback could name a method or a path: in study mode the browser gets only the error type
        "--client.showErrorDetails",
        "type" if mode == "study" else "full",
    ]
    env = {**os.environ, **settings.to_env()}
    return argv, env, settings


def issued_invites(db_url: str) -> int | None:
    """How many annotators (issued invites) the study database holds: 0 for a missing SQLite file or an empty
    database, None when it cannot be read. Reads only: nothing is created or migrated."""
    from sqlalchemy import create_engine, func, inspect, select
    from sqlalchemy.engine import make_url

    from study import schema

    try:
        url = make_url(db_url)
        if url.get_backend_name() == "sqlite" and (
            not url.database or url.database == ":memory:" or not Path(url.database).exists()
        ):
            return 0
        engine = create_engine(url)
        try:
            with engine.connect() as conn:
                if not inspect(conn).has_table(schema.Annotator.__tablename__):
                    return 0
                return int(conn.scalar(select(func.count()).select_from(schema.Annotator)) or 0)
        finally:
            engine.dispose()
    except Exception:
        return None


def resolve_mode(requested: str | None, db_url: str) -> tuple[str, str | None]:
    """The mode to run in and what to tell the user about it.

    An invite link without its ``?token=`` opens whatever the app serves to everyone; in full mode that is the
    named Storyboards and Results pages. So with invites issued the default is study mode, and an explicit
    ``--mode full`` gets a loud warning.
    """
    if requested == "study":
        return "study", None
    invites = issued_invites(db_url)
    where = _safe_url(db_url)
    if requested is None:
        if invites is None:
            return (
                "study",
                f"could not read {where} to look for invites: starting in study mode (--mode full to override)",
            )
        if invites:
            return "study", (
                f"{invites} invites issued in {where}: starting in study mode, only Study and Admin pages "
                "(--mode full to show the named pages)"
            )
        return "full", None
    if invites:
        return "full", (
            f"WARNING: --mode full with {invites} invites issued in {where}: anyone who opens the app without a "
            "?token= link (an annotator who shortens theirs) sees the named Storyboards and Results pages. "
            "Use --mode study while the study runs."
        )
    return "full", None


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparsable URL>"


def run(args: argparse.Namespace) -> int:
    """Start Streamlit in the foreground; returns its exit code."""
    try:
        argv, env, settings = build(args)
    except ValueError as exc:
        print(f"unimage dashboard: {exc}", file=sys.stderr)
        return 2
    notice = resolve_mode(args.mode, settings.db_url)[1]
    if notice:
        print(f"unimage dashboard: {notice}", file=sys.stderr)
    if args.dry_run:
        print(" ".join(argv))
        return 0
    if not args.admin_token and not os.environ.get(ENV_TOKEN_FALLBACK):
        print(f"Admin token (generated for this session): {settings.admin_token}", file=sys.stderr)
    print(
        f"Dashboard at {settings.base_url} (runs: {', '.join(settings.runs) or 'none'}; db: {_safe_url(settings.db_url)})",
        file=sys.stderr,
    )
    sys.stdout.flush()
    sys.stderr.flush()
    if os.name == "posix":  # become the streamlit process, so signals (Ctrl-C, SIGTERM) reach it directly
        os.execve(argv[0], argv, env)
    try:
        return subprocess.call(argv, env=env)
    except KeyboardInterrupt:
        return 130
