"""Engine creation (SQLite WAL + busy timeout, or any SQLAlchemy URL) and create-or-migrate on start.

SQLite notes: the default pysqlite transaction handling starts transactions lazily, so two writers that both
read first and then write can deadlock and one gets "database is locked" at once, without waiting. We turn the
driver's own transaction handling off and emit ``BEGIN`` ourselves: ``BEGIN IMMEDIATE`` for the store's write
sessions (the write lock is taken up front, so writers queue on the busy timeout instead of failing) and a
plain deferred ``BEGIN`` for reads (WAL readers never block).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, insert, select, text, update
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.pool import StaticPool

from study import schema

BUSY_TIMEOUT_S = 60.0
_PG_MIGRATION_LOCK = 0x5354_4459  # advisory lock id ("STDY") serialising concurrent create/migrate on PostgreSQL

# version -> migration from that version to version + 1
MIGRATIONS: dict[int, Any] = {}


class SchemaTooNew(RuntimeError):
    """The database was written by a newer version of the store."""


def normalise_url(url: str | Path | None) -> str:
    """A SQLAlchemy URL from a URL, a file path (SQLite) or ``None`` (``study.db`` here)."""
    if url is None:
        url = Path("study.db")
    if isinstance(url, Path) or "://" not in str(url):
        return f"sqlite:///{Path(url).expanduser().resolve()}"
    parsed = make_url(str(url))
    if parsed.drivername in ("postgresql", "postgres"):
        # psycopg (3) is the driver we install; a bare postgresql:// would ask for psycopg2.
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def make_engine(url: str | Path | None, *, pool_size: int = 10) -> Engine:
    """Create the engine; SQLite gets WAL, a busy timeout, foreign keys and explicit BEGIN handling."""
    full = normalise_url(url)
    parsed = make_url(full)
    if parsed.get_backend_name() != "sqlite":
        # no pool_pre_ping: it costs a round trip per checkout; a connection the server dropped raises once, is
        # invalidated by the pool, and the retried request (answers are idempotent) goes through.
        return create_engine(
            full, pool_size=pool_size, max_overflow=2 * pool_size, pool_timeout=BUSY_TIMEOUT_S, pool_recycle=1800
        )
    memory = parsed.database in (None, "", ":memory:")
    kwargs: dict[str, Any] = {"connect_args": {"timeout": BUSY_TIMEOUT_S, "check_same_thread": False}}
    if memory:
        kwargs["poolclass"] = StaticPool
    else:
        Path(parsed.database or "").parent.mkdir(parents=True, exist_ok=True)
        kwargs.update(pool_size=pool_size, max_overflow=2 * pool_size, pool_timeout=BUSY_TIMEOUT_S)
    engine = create_engine(full, **kwargs)
    event.listen(engine, "connect", _sqlite_on_connect)
    event.listen(engine, "begin", _sqlite_on_begin)
    return engine


def _sqlite_on_connect(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (see module docstring)
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def _sqlite_on_begin(conn: Connection) -> None:
    mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
    conn.exec_driver_sql(f"BEGIN {mode}")


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def migrate(engine: Engine) -> int:
    """Create missing tables and bring the schema to `schema.SCHEMA_VERSION`; returns the version.

    Safe to call from several processes at once (an IMMEDIATE transaction on SQLite, an advisory lock on
    PostgreSQL).

    Raises:
        SchemaTooNew: the database's version is newer than this code understands.
    """
    eng = engine.execution_options(sqlite_begin="IMMEDIATE") if is_sqlite(engine) else engine
    with eng.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
        schema.Base.metadata.create_all(conn)
        version = conn.scalar(select(schema.SchemaVersion.version).where(schema.SchemaVersion.id == 1))
        if version is None:
            conn.execute(insert(schema.SchemaVersion).values(id=1, version=schema.SCHEMA_VERSION))
            return schema.SCHEMA_VERSION
        if version > schema.SCHEMA_VERSION:
            raise SchemaTooNew(
                f"study database schema version {version} is newer than this code's {schema.SCHEMA_VERSION}; "
                "upgrade unimage-harness"
            )
        while version < schema.SCHEMA_VERSION:
            MIGRATIONS[version](conn)
            version += 1
            conn.execute(update(schema.SchemaVersion).where(schema.SchemaVersion.id == 1).values(version=version))
        return int(version)
