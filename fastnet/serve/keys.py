"""API keys and their per-minute limits, kept in SQLite (standard library).

Design
- A key is `fn_` + 32 random URL-safe characters, shown once when it is made.
  The database keeps only its SHA-256: the key is 192 random bits, so an
  unsalted hash cannot be reversed or guessed, and the lookup stays one
  indexed query.
- Limits are requests and characters per clock minute (fixed windows). The
  counters live in the same database, so they survive a restart and every
  worker process sees the same counts.
- Several processes share the file: WAL journal (readers never block the one
  writer), a busy timeout, and `BEGIN IMMEDIATE` around read-check-update so
  two workers can never both spend the last request of a minute.
- Opening checks the file (it is SQLite, it has our tables, it can be
  written within the busy timeout) and raises KeyStoreError otherwise: a bad
  database stops the server instead of letting everyone in.
"""
import hashlib
import math
import os
import re
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass

from fastnet.checks import positive_int

KEY_PATTERN = re.compile(r"fn_[A-Za-z0-9_-]{32}")
SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS keys (
    id INTEGER PRIMARY KEY,
    digest TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    name TEXT NOT NULL,
    requests_per_minute INTEGER NOT NULL CHECK (requests_per_minute > 0),
    chars_per_minute INTEGER NOT NULL CHECK (chars_per_minute > 0),
    created REAL NOT NULL,
    revoked REAL
);
CREATE TABLE IF NOT EXISTS usage (
    key_id INTEGER PRIMARY KEY REFERENCES keys(id),
    minute INTEGER NOT NULL,
    requests INTEGER NOT NULL,
    chars INTEGER NOT NULL
);
"""


class KeyStoreError(Exception):
    """The key database cannot be used (missing, corrupt, locked, not ours)."""


@dataclass(frozen=True)
class KeyInfo:
    id: int
    name: str
    prefix: str
    requests_per_minute: int
    chars_per_minute: int
    created: float
    revoked: float = None
    requests_this_minute: int = 0
    chars_this_minute: int = 0


@dataclass(frozen=True)
class Admission:
    """The outcome of one check: allowed, or why not and for how long."""

    allowed: bool
    reason: str = ""  # "unknown" (no such live key) or "requests" / "chars" (over a limit)
    retry_after: int = 0
    key: KeyInfo = None


def digest(key):
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class KeyStore:
    """Keys and usage counters in the SQLite file `path`.

    create=False (the server) refuses a missing file; create=True (`fastnet
    keys add`) makes it. `clock` returns Unix seconds (tests move it).
    """

    def __init__(self, path, create=False, busy_timeout=5.0, clock=time.time):
        self.path = os.fspath(path)
        self.clock = clock
        if not create and not os.path.exists(self.path):
            raise KeyStoreError(f"no key database at {self.path}; create it with "
                                f"`fastnet keys add --db {self.path} --name NAME`")
        self._lock = threading.Lock()  # one connection per store, used from several threads
        try:
            self._db = sqlite3.connect(self.path, timeout=busy_timeout, isolation_level=None,
                                       check_same_thread=False)
        except sqlite3.Error as exc:
            raise KeyStoreError(f"cannot open the key database {self.path}: {exc}") from None
        try:
            self._prepare(create, busy_timeout)
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise KeyStoreError(self._explain(exc, busy_timeout)) from None

    def _explain(self, exc, busy_timeout):
        text = str(exc)
        if "locked" in text or "busy" in text:
            return (f"the key database {self.path} is locked by another process (waited {busy_timeout:g} s); "
                    f"stop what holds it and start again")
        return f"the key database {self.path} is unreadable ({text}); restore it from a backup or make a new one"

    def _prepare(self, create, busy_timeout):
        db = self._db
        db.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        if db.execute("PRAGMA quick_check").fetchone()[0] != "ok":
            raise sqlite3.DatabaseError("integrity check failed")
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if create and not tables:
            db.execute("PRAGMA journal_mode = WAL")
            db.executescript(_SCHEMA)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        elif not {"keys", "usage"} <= tables:
            raise KeyStoreError(f"{self.path} is an SQLite database but not a fastnet key database "
                                f"(tables: {sorted(tables) or 'none'})")
        else:
            db.execute("PRAGMA journal_mode = WAL")
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version != SCHEMA_VERSION:
            raise KeyStoreError(f"{self.path} has key-database version {version}; this fastnet reads "
                                f"version {SCHEMA_VERSION}")
        db.execute("BEGIN IMMEDIATE")  # proves we can write now, within the busy timeout
        db.execute("COMMIT")

    def close(self):
        with self._lock:
            self._db.close()

    # ---- administration (`fastnet keys ...`) ----
    def add(self, name, requests_per_minute=60, chars_per_minute=20000):
        """Make a key; returns (key, KeyInfo). The key itself is never stored: show it now."""
        if not isinstance(name, str) or not name.strip():
            raise ValueError("a key needs a non-empty name (who it is for)")
        requests_per_minute = positive_int(requests_per_minute, "requests_per_minute")
        chars_per_minute = positive_int(chars_per_minute, "chars_per_minute")
        key = "fn_" + secrets.token_urlsafe(24)
        with self._lock:
            cursor = self._db.execute(
                "INSERT INTO keys (digest, prefix, name, requests_per_minute, chars_per_minute, created) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (digest(key), key[:7], name.strip(), requests_per_minute, chars_per_minute, self.clock()))
        return key, self._info(cursor.lastrowid)

    def list(self):
        with self._lock:
            rows = self._db.execute(self._INFO_QUERY + " ORDER BY k.id", (self._minute(),)).fetchall()
        return [KeyInfo(*row) for row in rows]

    def revoke(self, ident):
        """Revoke a key by its id or the prefix `keys list` shows; returns its KeyInfo."""
        info = self._find(ident)
        with self._lock:
            self._db.execute("UPDATE keys SET revoked = ? WHERE id = ? AND revoked IS NULL",
                             (self.clock(), info.id))
        return self._info(info.id)

    _INFO_QUERY = ("SELECT k.id, k.name, k.prefix, k.requests_per_minute, k.chars_per_minute, k.created, k.revoked, "
                   "COALESCE(u.requests, 0), COALESCE(u.chars, 0) FROM keys k "
                   "LEFT JOIN usage u ON u.key_id = k.id AND u.minute = ?")

    def _info(self, key_id):
        with self._lock:
            row = self._db.execute(self._INFO_QUERY + " WHERE k.id = ?", (self._minute(), key_id)).fetchone()
        return KeyInfo(*row)

    def _find(self, ident):
        text = str(ident)
        matches = [k for k in self.list() if str(k.id) == text or k.prefix == text]
        if len(matches) != 1:
            raise ValueError(f"no key with id or prefix {text!r} in {self.path} (see `fastnet keys list`)"
                             if not matches else f"{text!r} matches {len(matches)} keys; use the id")
        return matches[0]

    # ---- admission (the server) ----
    def _minute(self):
        return int(self.clock() // 60)

    def _retry_after(self):
        return max(1, math.ceil(60 - self.clock() % 60))

    def admit(self, key, n_chars):
        """Check `key` and spend one request and `n_chars` characters of its minute, atomically."""
        if not isinstance(key, str) or not KEY_PATTERN.fullmatch(key):
            return Admission(False, "unknown")
        minute = self._minute()
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute(self._INFO_QUERY + " WHERE k.digest = ? AND k.revoked IS NULL",
                                 (minute, digest(key))).fetchone()
                if row is None:
                    db.execute("COMMIT")
                    return Admission(False, "unknown")
                info = KeyInfo(*row)
                over = ("requests" if info.requests_this_minute + 1 > info.requests_per_minute else
                        "chars" if info.chars_this_minute + n_chars > info.chars_per_minute else "")
                if over:
                    db.execute("COMMIT")
                    return Admission(False, over, self._retry_after(), info)
                db.execute("INSERT INTO usage (key_id, minute, requests, chars) VALUES (?, ?, 1, ?) "
                           "ON CONFLICT(key_id) DO UPDATE SET "
                           "requests = CASE WHEN minute = excluded.minute THEN requests + 1 ELSE 1 END, "
                           "chars = CASE WHEN minute = excluded.minute THEN chars + excluded.chars "
                           "ELSE excluded.chars END, minute = excluded.minute",
                           (info.id, minute, n_chars))
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        return Admission(True, key=info)
