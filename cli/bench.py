"""`koppel bench seed-connections`: fill one environment with N synthetic connections, for
the overview benchmark (bench/overview_bench.py). Never for production data.

The spread follows a large accountancy environment: about N/400 debtors with one to four
companies each, N/8 users (a master client per debtor, company-level logins, a few
accountants, 2 % deactivated), about N/3300 partner apps whose popularity falls off like
Zipf's law, creation times over three years, 70 % used at some point, 10 % revoked and
the connections of deactivated users suspended. PostgreSQL gets COPY; SQLite multi-row
INSERTs. Rows go in chunks, so memory stays flat whatever N is.
"""

from __future__ import annotations

import io
import json
import random
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, cast

import typer
from sqlalchemy import Connection as DbConnection
from sqlalchemy import Table, select
from sqlmodel import col

from cli.context import engine_for, load_settings
from cli.db import check_migrated
from cli.output import CliError, emit_json, handle_errors, stderr
from shared.db.base import table_of
from shared.db.types import UUIDList
from shared.models import (
    App,
    Company,
    Connection,
    ConnectionCompany,
    Debtor,
    Environment,
    Partner,
    User,
    UserCompany,
)

app = typer.Typer(help="Synthetic data for benchmarks.", no_args_is_help=True)

CHUNK = 50_000
YEARS = 3
SCOPE_SETS = [
    ["company.info.read", "employee.info.read", "offline_access"],
    ["company.info.read", "employee.info.read", "employee.employment.read", "offline_access"],
    ["company.info.read", "employee.info", "employee.payment.read", "offline_access"],
    ["company.info.read", "employee.bankaccount.read", "employee.payment.read"],
    ["company.info.read", "employee.leave", "employee.absence.read", "offline_access"],
    ["company.info.read", "payroll.run.read", "offline_access"],
]
UNUSABLE_PASSWORD = "!bench-seed-no-login"
# Consent lifetimes a seeded expiring connection has (days from its consent).
LIFETIMES_DAYS = (90, 180, 365, 730)


def uuid7_at(moment: datetime, rng: random.Random) -> uuid.UUID:
    """A UUIDv7 for `moment`, so that id order is creation order (as the overview expects)."""
    ms = int(moment.timestamp() * 1000)
    rand = rng.getrandbits(74)
    value = (ms << 80) | (0x7 << 76) | ((rand >> 62) << 64) | (0b10 << 62) | (rand & (2**62 - 1))
    return uuid.UUID(int=value)


@dataclass
class Seeded:
    environment_id: uuid.UUID
    accountant_id: uuid.UUID
    first_party_client_id: str
    debtors: int
    companies: int
    users: int
    apps: int
    connections: int
    connection_companies: int


class Writer:
    """Bulk rows into one table: COPY on PostgreSQL, executemany INSERT on SQLite."""

    def __init__(self, conn: DbConnection) -> None:
        self.conn = conn
        self.postgres = conn.dialect.name == "postgresql"

    def write(self, table: Table, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        if not self.postgres:
            self.conn.execute(table.insert(), rows)
            return
        columns = list(rows[0])
        arrays = {c for c in columns if isinstance(table.c[c].type, UUIDList)}
        buffer = io.StringIO()
        for row in rows:
            buffer.write("\t".join(_copy_array(row[c]) if c in arrays else _copy_cell(row[c])
                                   for c in columns))
            buffer.write("\n")
        raw = self.conn.connection.driver_connection
        if raw is None:
            raise CliError("the database connection was closed")
        with raw.cursor() as cursor, cursor.copy(
            f"COPY {table.name} ({', '.join(columns)}) FROM STDIN"
        ) as copy:
            copy.write(buffer.getvalue())


def _copy_cell(value: Any) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list | dict):
        return json.dumps(value).replace("\\", "\\\\")
    return str(value)


def _copy_array(value: list[uuid.UUID]) -> str:
    """A list of UUIDs as a PostgreSQL array literal (COPY's text format)."""
    return "{" + ",".join(str(v) for v in value) + "}"


def _zipf_cumulative(n: int, exponent: float = 0.9) -> list[float]:
    total, cumulative = 0.0, []
    for rank in range(n):
        total += 1 / (rank + 1) ** exponent
        cumulative.append(total)
    return cumulative


def _chunks(count: int) -> Iterator[int]:
    while count > 0:
        yield min(CHUNK, count)
        count -= CHUNK


def seed(conn: DbConnection, name: str, count: int, rng: random.Random) -> Seeded:
    """Create the environment `name` with `count` connections (in the caller's transaction)."""
    if conn.execute(select(col(Environment.id)).where(col(Environment.name) == name)).first():
        raise CliError(f"an environment named {name!r} exists: choose another name")
    writer = Writer(conn)
    now = datetime.now(UTC)
    start = now - timedelta(days=365 * YEARS)
    tag = uuid.uuid4().hex[:8]

    def at(fraction: float) -> datetime:
        return start + (now - start) * fraction

    env_id = uuid7_at(start, rng)
    # Every NOT NULL column without a server default is named: COPY applies no model
    # default.
    writer.write(table_of(Environment), [{"id": env_id, "name": name, "created_at": start,
                                          "updated_at": start,
                                          "default_app_state": "allowed"}])
    n_debtors = max(2, count // 400)
    debtors: list[dict[str, Any]] = []
    companies_of: dict[uuid.UUID, list[uuid.UUID]] = {}
    debtor_id: uuid.UUID | None
    company_rows = []
    for i in range(n_debtors):
        created = at(rng.random() * 0.2)
        debtor_id = uuid7_at(created, rng)
        debtors.append({"id": debtor_id, "environment_id": env_id, "name": f"Debtor {i}",
                        "number": f"D{i:06d}", "created_at": created, "updated_at": created})
        companies_of[debtor_id] = []
        for j in range(1 + i % 4):
            company_id = uuid7_at(created, rng)
            companies_of[debtor_id].append(company_id)
            company_rows.append({"id": company_id, "environment_id": env_id,
                                 "debtor_id": debtor_id, "name": f"Company {i}-{j}",
                                 "number": f"C{i:06d}{j}", "created_at": created,
                                 "updated_at": created})
    writer.write(table_of(Debtor), debtors)
    writer.write(table_of(Company), company_rows)

    n_apps = max(10, count // 3300)
    partners = [{"id": uuid7_at(start, rng), "name": f"Bench partner {tag}-{i}",
                 "created_at": start, "updated_at": start} for i in range(max(1, n_apps // 3))]
    writer.write(table_of(Partner), partners)
    first_party = f"bench-first-party-{tag}"
    apps = [{"id": uuid7_at(start, rng), "client_id": first_party, "partner_id": None,
             "first_party": True, "environment_id": env_id, "name": "Bench SaaS",
             "scopes": [], "contacts": [],
             "redirect_uris": ["http://127.0.0.1:9/cb"], "grant_types": ["client_credentials"],
             "response_types": [], "status": "active", "created_at": start, "updated_at": start}]
    for i in range(n_apps):
        apps.append({"id": uuid7_at(start, rng), "client_id": f"bench-{tag}-app-{i}",
                     "partner_id": partners[i % len(partners)]["id"], "first_party": False,
                     "environment_id": None,
                     "name": f"Bench app {i}", "scopes": SCOPE_SETS[i % len(SCOPE_SETS)],
                     "contacts": [], "redirect_uris": ["https://partner.example/cb"],
                     "grant_types": ["authorization_code", "refresh_token"],
                     "response_types": ["code"], "status": "active", "created_at": start,
                     "updated_at": start})
    writer.write(table_of(App), [{**a, "publisher": None, "platform": False,
                                  "token_endpoint_auth_method": "client_secret_basic"}
                                 for a in apps])
    partner_apps = apps[1:]

    # Users: accountants, a master client per debtor, company-level logins.
    # Enough users that the user x app pairs are at most about a third taken.
    n_users = max(count // 8, 3 * count // n_apps + n_debtors + 3)
    users, user_reach, user_companies = [], [], []
    user_rows: list[dict[str, Any]] = []
    templates = ["company", "hr_manager", "payroll_hr_manager"]
    for i in range(n_users):
        created = at(rng.random() * 0.5)
        user_id = uuid7_at(created, rng)
        if i < 3:
            template, debtor_id, reach = "accountant", None, []
        elif i < 3 + n_debtors:
            debtor_id = debtors[i - 3]["id"]
            template, reach = "master_client", companies_of[debtor_id]
        else:
            debtor_id = debtors[rng.randrange(n_debtors)]["id"]
            own = companies_of[debtor_id]
            template = templates[i % 3]
            reach = rng.sample(own, min(len(own), 1 + rng.randrange(2)))
            user_companies += [{"user_id": user_id, "company_id": c} for c in reach]
        active = template == "accountant" or rng.random() >= 0.02
        user_rows.append({"id": user_id, "environment_id": env_id,
                          "email": f"u{i}.{tag}@bench.koppel.invalid", "name": f"User {i}",
                          "password_hash": UNUSABLE_PASSWORD, "template": template,
                          "active": active, "debtor_id": debtor_id, "employee_id": None,
                          "created_at": created, "updated_at": created})
        if template != "accountant":
            users.append((user_id, debtor_id, active, created))
            user_reach.append(reach)
    for rows in (user_rows[i:i + CHUNK] for i in range(0, len(user_rows), CHUNK)):
        writer.write(table_of(User), rows)
    writer.write(table_of(UserCompany), user_companies)

    # Connections: a user picks apps by popularity, never the same app twice.
    app_cumulative = _zipf_cumulative(len(partner_apps))
    taken: set[int] = set()
    made = links = 0
    for size in _chunks(count):
        rows, link_rows = [], []
        while len(rows) < size:
            u = rng.randrange(len(users))
            a = rng.choices(range(len(partner_apps)), cum_weights=app_cumulative)[0]
            key = u * len(partner_apps) + a
            if key in taken:
                continue
            taken.add(key)
            user_id, debtor_id, active, user_created = users[u]
            created = user_created + (now - user_created) * rng.random()
            connection_id = uuid7_at(created, rng)
            roll = rng.random()
            status, reason, revoked_at, revoked_by = "active", None, None, None
            if roll < 0.10:
                status, revoked_by = "revoked", "user"
                revoked_at = created + (now - created) * rng.random()
            elif not active:
                status, reason = "suspended", "user_deactivated"
            last_used = None
            if rng.random() < 0.7:
                last_used = now - (now - created) * rng.random() ** 3
            app_row = partner_apps[a]
            # The consent lifecycle's columns: a third expire (some have), and a used
            # connection knows when it last needed some of its scopes.
            expires = None
            if rng.random() < 0.3:
                expires = created + timedelta(days=rng.choice(LIFETIMES_DAYS))
                if status == "active" and expires <= now:
                    status = "expired"
            granted = cast(list[str], app_row["scopes"])
            scope_used = {} if last_used is None else {
                scope: (last_used - (last_used - created) * rng.random()).isoformat()
                for scope in granted if rng.random() < 0.6}
            rows.append({"id": connection_id, "environment_id": env_id, "user_id": user_id,
                         "app_id": app_row["id"], "debtor_id": debtor_id,
                         "scopes": app_row["scopes"], "status": status,
                         "suspended_reason": reason, "revoked_at": revoked_at,
                         "revoked_by": revoked_by, "revoke_reason": None,
                         "created_at": created, "updated_at": created,
                         "last_used_at": last_used, "expires_at": expires,
                         "scope_used_at": scope_used})
            reach = user_reach[u]
            covered = rng.sample(reach, min(len(reach), 1 + rng.randrange(2)))
            # Written with the row, equal to its links: their insert then finds nothing
            # to change (the triggers of migration 0028 would otherwise update each row).
            rows[-1]["company_ids"] = sorted(covered)
            for company_id in covered:
                link_rows.append({"connection_id": connection_id, "company_id": company_id})
        rows.sort(key=lambda r: r["id"])
        writer.write(table_of(Connection), rows)
        writer.write(table_of(ConnectionCompany), link_rows)
        made += len(rows)
        links += len(link_rows)
        stderr().print(f"connections: {made}/{count}")
    return Seeded(env_id, user_rows[0]["id"], first_party, n_debtors, len(company_rows),
                  n_users, n_apps, made, links)


@app.command("seed-connections")
@handle_errors
def seed_connections(
    environment: Annotated[str, typer.Option("--environment", help="A new environment's name.")],
    count: Annotated[int, typer.Option("--count", min=1, max=20_000_000,
                                       help="How many connections.")],
    random_seed: Annotated[int, typer.Option("--seed", help="The random seed.")] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """Create an environment filled with COUNT synthetic connections (benchmarks only)."""
    settings = load_settings()
    started = time.perf_counter()
    with engine_for(settings) as engine:
        check_migrated(settings, engine)
        with engine.begin() as conn:
            result = seed(conn, environment, count, random.Random(random_seed))
        if engine.dialect.name == "postgresql":
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("ANALYZE")
    document = {**{k: (str(v) if isinstance(v, uuid.UUID) else v)
                   for k, v in result.__dict__.items()},
                "seconds": round(time.perf_counter() - started, 1)}
    if as_json:
        emit_json(document)
    else:
        stderr().print(f"seeded {result.connections} connections in {document['seconds']} s")
