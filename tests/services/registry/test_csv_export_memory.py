"""The overview's CSV export streams 100,000 rows in bounded memory (issue 4).

The registry runs as in production (a uvicorn child process on a real socket) on a
PostgreSQL database of this test's own (dropped afterwards), seeded with the COPY-based
code of `koppel bench seed-connections` (5,000 connections with their users, apps and
companies), multiplied to 100,000 inside PostgreSQL (INSERT ... SELECT over
generate_series; the copies are revoked, so that the one-live-connection rule holds).
While the whole export streams, the server's resident memory is sampled: its growth
over a warmed-up baseline must stay far below the size of the CSV, and must not keep
growing as rows go by (the second half of the stream adds nothing the first did not).
"""

from __future__ import annotations

import contextlib
import csv
import io
import random
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import psutil
import pytest
from sqlalchemy import Connection, Engine, func, literal
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session, col, select

from cli.bench import seed
from services.registry.overview.service import EXPORT_TEXT_BATCH
from shared.config import Settings
from shared.db.engine import create_sync_engine, sync_session_factory
from shared.db.types import utcnow
from shared.models import App, TokenFamily, User
from shared.models import Connection as ConnectionRow
from shared.signing import Signer
from shared.vault import KeyRing, SecretBox
from tests.fixtures.backend import REPO_ROOT
from tests.fixtures.database import fresh_database, migrate

pytestmark = pytest.mark.postgres_only

ROWS = 100_000
SEEDED = 5_000
MIB = 2**20
# Far below the CSV (about 42 MiB): building it, or its rows, in memory breaks this.
# The export's working set (the batch being written and the EXPORT_AHEAD batches read
# ahead) is in the baseline, since the warm-up ran at the same depth; what remains is
# what the longer stream adds (4 to 6 MiB seen; without that warm-up, 8 to 10 MiB).
MAX_GROWTH = 10 * MIB
# Constant memory: what the second half of the stream adds over the first half's peak.
MAX_LATE_GROWTH = 4 * MIB
SCOPE = "environment.connections.read"


@contextlib.contextmanager
def registry_process(env: dict[str, str], log: Path) -> Iterator[tuple[str, int]]:
    """`uvicorn services.registry.app:create_app --factory` on a socket of its own."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "services.registry.app:create_app", "--factory",
             "--fd", str(sock.fileno()), "--app-dir", str(REPO_ROOT), "--log-level", "warning",
             "--no-access-log"],
            env={**env, "KOPPEL_LOG_LEVEL": "warning"}, cwd=REPO_ROOT, stdout=out,
            stderr=subprocess.STDOUT, pass_fds=(sock.fileno(),))
    sock.close()
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, log.read_text()[-3000:]
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.1)
        yield url, process.pid
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def multiply_connections(conn: Connection, environment_id, factor: int) -> None:
    """Each connection of the environment `factor - 1` more times, revoked, with new ids."""
    table = ConnectionRow.__table__
    copies = {c.name: c for c in table.columns}
    copies.update(id=func.gen_random_uuid(), status=literal("revoked"),
                  revoked_at=table.c.created_at, revoked_by=literal("user"))
    source = (select(*[value.label(name) for name, value in copies.items()])
              .select_from(table.join(func.generate_series(2, factor).table_valued("n"),
                                      literal(True)))
              .where(table.c.environment_id == environment_id))
    conn.execute(table.insert().from_select(list(copies), source))
    conn.exec_driver_sql("ANALYZE connections")


def _accountant_token(sessions: sessionmaker[Session], keyring: KeyRing, settings: Settings,
                      accountant_id, first_party_client_id: str) -> str:
    with sessions() as session:
        accountant = session.get(User, accountant_id)
        first_party = session.exec(select(App).where(
            App.client_id == first_party_client_id)).one()
        family = TokenFamily(app_id=first_party.id, user_id=accountant.id,
                             environment_id=accountant.environment_id, scopes=[SCOPE],
                             expires_at=utcnow() + timedelta(hours=1))
        session.add(family)
        session.flush()
        now = int(time.time())
        token = Signer(SecretBox(keyring)).sign(session, {
            "iss": settings.issuer, "aud": settings.api_audience, "iat": now, "exp": now + 900,
            "sub": str(accountant.id), "client_id": first_party.client_id, "scope": SCOPE,
            "environment_id": str(accountant.environment_id),
            "jti": f"{family.id}.{secrets.token_urlsafe(8)}"}, alg="ES256", typ="at+jwt")
        session.commit()
    return token


class RssSampler:
    """The child's resident set size, sampled every few milliseconds."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.005)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()


@pytest.fixture
def own_database(tmp_path: Path) -> Iterator[tuple[str, Engine]]:
    """A migrated database for this test alone; dropping it is the cleanup."""
    with fresh_database(tmp_path) as url:
        migrate(url)
        engine = create_sync_engine(url)
        try:
            yield url, engine
        finally:
            engine.dispose()


def test_csv_export_of_100k_rows_streams_in_bounded_memory(
    own_database: tuple[str, Engine], keyring: KeyRing, settings: Settings,
    subprocess_env: dict[str, str], tmp_path: Path,
) -> None:
    url, engine = own_database
    sessions = sync_session_factory(engine)
    with engine.begin() as conn:
        seeded = seed(conn, "CSV memory", SEEDED, random.Random(4))
        multiply_connections(conn, seeded.environment_id, ROWS // SEEDED)
    token = _accountant_token(sessions, keyring, settings, seeded.accountant_id,
                              seeded.first_party_client_id)
    with sessions() as session:
        expected_ids = sorted(str(i) for i in session.exec(select(ConnectionRow.id).where(
            ConnectionRow.environment_id == seeded.environment_id)).all())
        first = session.exec(select(ConnectionRow).where(
            ConnectionRow.environment_id == seeded.environment_id)
            .order_by(col(ConnectionRow.id)).limit(1)).one()
        first_email = session.get(User, first.user_id).email
        first_app = session.get(App, first.app_id)
        busiest_app = session.get(App, session.exec(
            select(ConnectionRow.app_id)
            .where(ConnectionRow.environment_id == seeded.environment_id)
            .group_by(col(ConnectionRow.app_id))
            .order_by(func.count().desc()).limit(1)).one())
    assert len(expected_ids) == ROWS
    headers = {"Authorization": f"Bearer {token}", "Accept": "text/csv"}
    path = "/v1/environment/connections"

    env = {**subprocess_env, "KOPPEL_DATABASE_URL": url}
    with registry_process(env, tmp_path / "registry.log") as (base, pid), \
            httpx.Client(base_url=base, headers=headers, timeout=60) as client:
        # Warm up (imports, caches, pools, and the export's own working set: the
        # busiest app's rows are over 10,000, five batches or more, so the batches read
        # ahead run at full depth), then take the baseline.
        for params in ({"status": "suspended"}, {"app": busiest_app.client_id}):
            warm = client.get(path, params=params)
            assert warm.status_code == 200, warm.text
        assert warm.text.count("\r\n") > 4 * EXPORT_TEXT_BATCH, "the warm-up is too small"
        baseline = psutil.Process(pid).memory_info().rss
        ids, head, size, half_peak = [], "", 0, None
        with RssSampler(pid) as sampler, client.stream("GET", path) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/csv")
            rest = ""
            for text in response.iter_text():
                size += len(text)
                head = head or text
                lines = (rest + text).split("\r\n")
                rest = lines.pop()
                ids += [line[:36] for line in lines]
                if half_peak is None and len(ids) > ROWS // 2:
                    half_peak = sampler.peak
            assert rest == ""
        peak = sampler.peak

    header, rows = ids[0], ids[1:]
    assert header.startswith("id,app_client_id,")
    assert len(rows) == ROWS and sorted(rows) == expected_ids  # every row, once
    assert rows == sorted(rows)  # creation (id) order
    assert size > 30 * MIB, size  # the CSV is large next to the bounds below
    growth, late = peak - baseline, peak - half_peak
    assert growth < MAX_GROWTH, f"RSS grew {growth / MIB:.1f} MiB streaming {size / MIB:.0f} MiB"
    assert late < MAX_LATE_GROWTH, f"RSS still grew {late / MIB:.1f} MiB in the second half"

    # The content of a row: the first one, as the database holds it.
    row = next(csv.DictReader(io.StringIO(head)))
    assert row["id"] == str(first.id) and row["user_email"] == first_email
    assert row["app_client_id"] == first_app.client_id and row["app_name"] == first_app.name
    assert row["debtor_id"] == str(first.debtor_id) and row["status"] == first.status
    assert row["scopes"] == " ".join(first.scopes)
    assert row["created_at"] == first.created_at.isoformat()
