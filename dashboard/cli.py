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

from dashboard.settings import DEFAULT_DB, MODES, Settings

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
        help=f"token for the Admin page (default: ${ENV_TOKEN_FALLBACK}, else a random one, printed)",
    )
    parser.add_argument("--base-url", default=None, help="public URL used in invite links (default http://HOST:PORT)")
    parser.add_argument(
        "--mode",
        choices=MODES,
        default="full",
        help="full: all pages; study: only Study and Admin (for hosted studies)",
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
    token = args.admin_token or os.environ.get(ENV_TOKEN_FALLBACK) or secrets.token_urlsafe(24)
    host_for_links = "localhost" if args.host in ("0.0.0.0", "127.0.0.1") else args.host
    settings = Settings(
        runs=tuple(str(Path(d).expanduser().resolve()) for d in args.runs),
        db_url=db,
        admin_token=token,
        base_url=(args.base_url or f"http://{host_for_links}:{args.port}").rstrip("/"),
        mode=args.mode,
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
        "type" if args.mode == "study" else "full",
    ]
    env = {**os.environ, **settings.to_env()}
    return argv, env, settings


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
