"""The app's own database: tokens sealed with a key of its own, what it synced, and
where it is in each connection's change feed.

Tokens are never written in the clear: each connection's token set is encrypted with
Fernet (AES-128-CBC and HMAC-SHA256, from `cryptography`) under a key kept in a file of
mode 0600 beside the database. In production, keep that key in a secret manager.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet

SCHEMA = """
CREATE TABLE IF NOT EXISTS connections (
    id TEXT PRIMARY KEY,        -- Koppel's connection id (the grant id)
    sealed_token BLOB NOT NULL, -- the token response, encrypted
    feed_cursor TEXT            -- where the change feed resumes
);
CREATE TABLE IF NOT EXISTS employees (
    id TEXT PRIMARY KEY,
    connection_id TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS secrets (name TEXT PRIMARY KEY, sealed BLOB NOT NULL);
"""


def _key(data_dir: Path) -> bytes:
    path = data_dir / "store.key"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(Fernet.generate_key())
    return path.read_bytes()


class Store:
    def __init__(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self._fernet = Fernet(_key(data_dir))
        self._db = sqlite3.connect(data_dir / "partner.db", check_same_thread=False)
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()  # one statement at a time: web handlers and the syncer

    def close(self) -> None:
        self._db.close()

    def _seal(self, value: Any) -> bytes:
        return self._fernet.encrypt(json.dumps(value).encode())

    def _open(self, sealed: bytes) -> Any:
        return json.loads(self._fernet.decrypt(sealed))

    # Tokens, per connection.
    def save_token(self, connection_id: str, token: dict[str, Any]) -> None:
        with self._lock, self._db:
            self._db.execute(
                "INSERT INTO connections (id, sealed_token) VALUES (?, ?) ON CONFLICT (id) "
                "DO UPDATE SET sealed_token = excluded.sealed_token",
                (connection_id, self._seal(token)))

    def token(self, connection_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT sealed_token FROM connections WHERE id = ?",
                                   (connection_id,)).fetchone()
        return None if row is None else self._open(row[0])

    def connections(self) -> list[str]:
        with self._lock:
            return [row[0] for row in self._db.execute("SELECT id FROM connections ORDER BY id")]

    def forget(self, connection_id: str) -> None:
        """The connection ended: drop its tokens and everything synced through it."""
        with self._lock, self._db:
            self._db.execute("DELETE FROM employees WHERE connection_id = ?", (connection_id,))
            self._db.execute("DELETE FROM connections WHERE id = ?", (connection_id,))

    # The change feed's position.
    def cursor(self, connection_id: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT feed_cursor FROM connections WHERE id = ?",
                                   (connection_id,)).fetchone()
        return None if row is None else row[0]

    def save_cursor(self, connection_id: str, cursor: str | None) -> None:
        with self._lock, self._db:
            self._db.execute("UPDATE connections SET feed_cursor = ? WHERE id = ?",
                             (cursor, connection_id))

    # What was synced.
    def save_employee(self, connection_id: str, employee: dict[str, Any]) -> None:
        with self._lock, self._db:
            self._db.execute(
                "INSERT INTO employees (id, connection_id, body) VALUES (?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET body = excluded.body",
                (employee["id"], connection_id, json.dumps(employee)))

    def employees(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT body FROM employees ORDER BY id").fetchall()
        return [json.loads(row[0]) for row in rows]

    # Other secrets (the webhook signing secret).
    def save_secret(self, name: str, value: str) -> None:
        with self._lock, self._db:
            self._db.execute(
                "INSERT INTO secrets (name, sealed) VALUES (?, ?) ON CONFLICT (name) "
                "DO UPDATE SET sealed = excluded.sealed", (name, self._seal(value)))

    def secret(self, name: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT sealed FROM secrets WHERE name = ?",
                                   (name,)).fetchone()
        return None if row is None else str(self._open(row[0]))
