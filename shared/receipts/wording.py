"""Scope wording, versioned by content: the exact title, description, language and
sensitivity of each scope a receipt names, as one canonical JSON document stored once
under its SHA-256 (`scope_wordings`). A changed scope text in the catalogue
(shared/scopes.py) makes a new document and a new hash; old documents are never changed,
so every receipt's wording stays retrievable by the hash it carries.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

from sqlalchemy import URL, Engine, create_engine
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.pool import NullPool
from sqlmodel import Session

from shared.db.types import utcnow
from shared.models import ScopeWording
from shared.scopes import SCOPES

DEFAULT_LANG = "en"
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


def scope_wording(scope: str, lang: str) -> dict[str, str]:
    """What the catalogue says of `scope` in `lang` now (English if it has no such
    language): the words a page in that language shows."""
    entry = SCOPES[scope].localized(lang)
    shown = lang if lang in SCOPES[scope].title else DEFAULT_LANG
    return {"scope": scope, "title": entry["title"], "description": entry["description"],
            "lang": shown, "sensitivity": entry["sensitivity"]}


def current_wording(scopes: Iterable[str], lang: str) -> list[dict[str, str]]:
    """The catalogue's wording of `scopes` in `lang`, in scope-name order (a scope not in
    the catalogue has no words to show and is left out)."""
    return [scope_wording(s, lang) for s in sorted(set(scopes)) if s in SCOPES]


def carried_wording(scopes: Iterable[str], earlier: Mapping[str, dict[str, str]],
                    lang: str) -> list[dict[str, str]]:
    """The wording of `scopes` as an earlier receipt carried it (`earlier`, by scope);
    a scope it did not carry gets the catalogue's current words in `lang`."""
    return [dict(earlier[s]) if s in earlier else scope_wording(s, lang)
            for s in sorted(set(scopes)) if s in earlier or s in SCOPES]


def canonical(document: Any) -> str:
    """The canonical JSON of a wording document: sorted keys, no spaces, UTF-8 kept."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def document_of(scopes: list[dict[str, str]]) -> str:
    """The wording document of a receipt's scopes, as canonical JSON."""
    return canonical({"scopes": scopes})


def sha256_of(document: str) -> str:
    """The content address of a canonical wording document (hex SHA-256 of its UTF-8)."""
    return hashlib.sha256(document.encode()).hexdigest()


def store(session: Session, document: str) -> str:
    """Store the document under its hash unless it is there already (a concurrent
    writer of the same document is no conflict); returns the hash.

    On PostgreSQL a new document is inserted in a short transaction of its own, on a
    connection of its own (`_own_engine`), committed at once: inserted in the act's
    transaction, it would stay uncommitted while that transaction goes on (a bulk revoke,
    the expiry job's batch), and every other act needing the same document would wait
    for it while holding its own connection's lock, which the long transaction may want
    next (a deadlock). The connection is not taken from the act's pool, so acts at once
    cannot use the pool up waiting for a second connection each. A stored document that
    no receipt names is harmless: documents are content-addressed. SQLite runs one
    writing transaction at a time, which already holds the database: it inserts in
    place."""
    digest = sha256_of(document)
    if session.get(ScopeWording, digest) is not None:
        return digest
    bind = session.get_bind()
    values = {"sha256": digest, "document": document, "created_at": utcnow()}
    if bind.dialect.name == "postgresql":
        engine = bind if isinstance(bind, Engine) else bind.engine
        with _own_engine(engine.url).begin() as own:
            own.execute(pg_insert(ScopeWording).values(**values)
                        .on_conflict_do_nothing(index_elements=["sha256"]))
    else:
        session.execute(sqlite_insert(ScopeWording).values(**values)
                        .on_conflict_do_nothing(index_elements=["sha256"]))
    return digest


@lru_cache(maxsize=8)
def _own_engine(url: URL) -> Engine:
    """An engine for the document inserts, without a pool: each insert opens and closes
    its own connection (new documents are rare: a new scope set, language or text), so
    it holds no connection between them and never waits for the act's pool."""
    return create_engine(url.set(drivername="postgresql+psycopg"), poolclass=NullPool)


def parsed(row: ScopeWording) -> dict[str, dict[str, str]]:
    """A stored document's scope entries by scope name."""
    return {entry["scope"]: entry for entry in json.loads(row.document)["scopes"]}
