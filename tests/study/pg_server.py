"""A throwaway PostgreSQL server for tests: a temp cluster on a free port, started once per test process.

Finds ``initdb``/``pg_ctl`` under ``/usr/lib/postgresql/*/bin`` (Debian's ``postgresql`` package) or on PATH.
PostgreSQL refuses to run as root, so under root the cluster is created and run as the ``postgres`` user (or
``nobody``) in a temp dir handed to that user. `shared_server()` returns the server, or raises `PgUnavailable`
with the reason (tests turn that into a skip with the reason). The server is stopped at interpreter exit.
"""

from __future__ import annotations

import atexit
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path


class PgUnavailable(RuntimeError):
    """No PostgreSQL server can be started here (the message says why)."""


@dataclass
class PgServer:
    root: Path
    port: int
    bin_dir: Path
    run_as: str | None

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, prefix: str = "t") -> str:
        """Create a fresh empty database and return its SQLAlchemy URL."""
        import psycopg

        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        if (self.root / "data" / "postmaster.pid").exists():
            _run(
                [str(self.bin_dir / "pg_ctl"), "-D", str(self.root / "data"), "-m", "immediate", "-w", "stop"],
                self.run_as,
                self.root,
                check=False,
            )
        shutil.rmtree(self.root, ignore_errors=True)


def find_bin_dir() -> Path | None:
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    if candidates:
        return Path(candidates[-1]).parent
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(cmd: list[str], run_as: str | None, cwd: Path, *, check: bool = True) -> subprocess.CompletedProcess[str]:
    kwargs: dict = {}
    env = dict(os.environ, LC_ALL="C", LANG="C")
    if run_as is not None:
        pw = pwd.getpwnam(run_as)
        kwargs.update(user=pw.pw_uid, group=pw.pw_gid, extra_groups=[])
        env["HOME"] = str(cwd)
        env["USER"] = run_as
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=120, **kwargs)
    if check and res.returncode != 0:
        raise PgUnavailable(
            f"{' '.join(cmd[:2])} failed ({res.returncode}): {(res.stderr or res.stdout).strip()[-500:]}"
        )
    return res


def start_server(max_connections: int = 300, durable: bool = False) -> PgServer:
    """Create and start a temp cluster; raises `PgUnavailable` with the reason when it cannot.

    ``durable=False`` (tests) turns fsync and synchronous commit off: a throwaway cluster needs no crash safety,
    and the store's correctness (uniqueness, isolation) does not depend on it. Benchmarks use ``durable=True``.
    """
    try:
        import psycopg  # noqa: F401
    except ImportError as err:
        raise PgUnavailable("the psycopg driver is not installed (pip install 'psycopg[binary]')") from err
    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise PgUnavailable("no initdb found (apt-get install postgresql)")
    run_as: str | None = None
    if os.geteuid() == 0:
        for name in ("postgres", "nobody"):
            try:
                pwd.getpwnam(name)
            except KeyError:
                continue
            run_as = name
            break
        if run_as is None:
            raise PgUnavailable("running as root and neither a 'postgres' nor a 'nobody' user exists")
    root = Path(tempfile.mkdtemp(prefix="unimage-pg-"))
    if run_as is not None:
        pw = pwd.getpwnam(run_as)
        os.chown(root, pw.pw_uid, pw.pw_gid)
    port = _free_port()
    server = PgServer(root=root, port=port, bin_dir=bin_dir, run_as=run_as)
    try:
        _run(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(root / "data"),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
            run_as,
            root,
        )
        opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c max_connections={max_connections}"
        opts += " -c shared_buffers=64MB"
        if not durable:
            opts += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        _run(
            [
                str(bin_dir / "pg_ctl"),
                "-D",
                str(root / "data"),
                "-l",
                str(root / "log.txt"),
                "-o",
                opts,
                "-w",
                "-t",
                "60",
                "start",
            ],
            run_as,
            root,
        )
    except (PgUnavailable, OSError, subprocess.TimeoutExpired) as err:
        log = (root / "log.txt").read_text(errors="replace")[-500:] if (root / "log.txt").exists() else ""
        server.stop()
        raise PgUnavailable(f"{err} {log}".strip()) from err
    return server


_SERVER: PgServer | None = None
_FAILURE: str | None = None


def shared_server() -> PgServer:
    """The process-wide test server (started on first use, stopped at exit)."""
    global _SERVER, _FAILURE
    if _SERVER is not None:
        return _SERVER
    if _FAILURE is not None:
        raise PgUnavailable(_FAILURE)
    try:
        _SERVER = start_server()
    except PgUnavailable as err:
        _FAILURE = str(err)
        raise
    atexit.register(_SERVER.stop)
    return _SERVER
