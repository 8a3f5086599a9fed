"""Off-chain state (nonces, audit log, usage, queues) through SQLAlchemy: SQLite by default, PostgreSQL by URL.

Each area declares its tables on `Base` in its own module; `create_all(engine)` makes whatever is missing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from backend.errors import ConfigError

__all__ = ["Base", "create_all", "make_engine", "session_scope"]


class Base(DeclarativeBase):
    """Declarative base for every off-chain table."""


def make_engine(url: str) -> Engine:
    """An engine for `url`; SQLite files get their folder, WAL mode and a busy timeout (several processes)."""
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    try:
        engine = create_engine(url, future=True, pool_pre_ping=True)
    except (ArgumentError, ImportError) as exc:  # a scheme SQLAlchemy has no dialect (or no driver) for
        raise ConfigError(f"TRUSTMARKET_DATABASE_URL={_shown(url)}: {exc}") from None
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:  # pragma: no cover - trivial
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=5000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

    return engine


def _shown(url: str) -> str:
    """`url` fit for an error message: its password masked."""
    try:
        return repr(make_url(url).render_as_string(hide_password=True))
    except ArgumentError:
        return "(not a URL)"


def create_all(engine: Engine) -> None:
    """Create every table declared on `Base` that does not exist yet."""
    Base.metadata.create_all(engine)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A transaction: commit on success, roll back on any error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
