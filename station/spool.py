"""The on-disk outbox: every message is committed to SQLite (WAL, synchronous=FULL) before
anything tries to send it, and deleted only when the broker acknowledged it.

Bounded by size: when the file grows past ``max_bytes`` the oldest rows of the lowest priority
kind are dropped first (diagnostics, then met, then fluxes and alarms) and counted in ``dropped``.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

#: Lower is dropped first when the spool is full.
PRIORITY = {"diag": 0, "met": 1, "status": 1, "flux": 2, "alarm": 2}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    priority INTEGER NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_priority ON outbox (priority, id);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


@dataclass(frozen=True)
class Message:
    id: int
    kind: str
    topic: str
    payload: bytes
    created: float


class Spool:
    """Thread-safe: each thread gets its own connection to the same file."""

    def __init__(self, path: str | Path, max_bytes: int = 512 * 2**20) -> None:
        self.path = str(path)
        self.max_bytes = max_bytes
        self._local = threading.local()
        with self._db() as db:
            db.executescript(_SCHEMA)

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")  # a committed row survives power loss
            self._local.db = db
        return db

    def put(self, kind: str, topic: str, payload: bytes) -> int:
        db = self._db()
        with db:
            cur = db.execute("INSERT INTO outbox (kind, priority, topic, payload, created) VALUES (?,?,?,?,?)",
                             (kind, PRIORITY.get(kind, 0), topic, payload, time.time()))
        self._enforce_size()
        return int(cur.lastrowid)

    def oldest(self, limit: int, exclude: set[int] | frozenset[int] = frozenset()) -> list[Message]:
        """The oldest messages, in the order they were spooled, skipping ids in ``exclude``."""
        rows = self._db().execute("SELECT id, kind, topic, payload, created FROM outbox ORDER BY id LIMIT ?",
                                  (limit + len(exclude),)).fetchall()
        return [Message(*r) for r in rows if r[0] not in exclude][:limit]

    def delete(self, ids: list[int]) -> None:
        if ids:
            db = self._db()
            with db:
                db.executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i in ids])

    def depth(self) -> int:
        return int(self._db().execute("SELECT count(*) FROM outbox").fetchone()[0])

    def oldest_age_s(self) -> float | None:
        row = self._db().execute("SELECT min(created) FROM outbox").fetchone()
        return None if row[0] is None else time.time() - row[0]

    def dropped(self) -> int:
        row = self._db().execute("SELECT value FROM counters WHERE name = 'dropped'").fetchone()
        return 0 if row is None else int(row[0])

    def size_bytes(self) -> int:
        db = self._db()
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        free = db.execute("PRAGMA freelist_count").fetchone()[0]
        return int((pages - free) * db.execute("PRAGMA page_size").fetchone()[0])

    def _enforce_size(self) -> None:
        db = self._db()
        while self.size_bytes() > self.max_bytes:
            victim = db.execute("SELECT id FROM outbox ORDER BY priority, id LIMIT 1").fetchone()
            if victim is None:
                return
            with db:
                n = db.execute("DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE priority = "
                               "(SELECT priority FROM outbox WHERE id = ?) ORDER BY id LIMIT 64)",
                               (victim[0],)).rowcount
                db.execute("INSERT INTO counters (name, value) VALUES ('dropped', ?) ON CONFLICT(name) "
                           "DO UPDATE SET value = value + excluded.value", (n,))

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None
