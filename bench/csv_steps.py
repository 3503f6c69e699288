"""What PostgreSQL spends per row of the CSV export, step by step (docs/performance.md,
"CSV export (registry)"):

    KOPPEL_DATABASE_URL=postgresql://.../koppel_bench_overview \\
        .venv/bin/python -m bench.csv_steps [--batches 50] [--rounds 3]

On the overview bench database (bench/harness/overview_scenarios.py), over the same
batches of 2,000 rows in id order: the export's own statement for a batch
(repository.py `_export_rows` and `_export_lines`, with the app and scope-list cells of
every app and scope list as parameters), then statements that make only the row's id
plus one step, each timed with the export's planner settings. A step's cost is its
statement's less the id-only one's. Not a test: run it under the bench lock.
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any

from sqlalchemy import String, bindparam, case, cast, create_engine, func, literal, text
from sqlalchemy.dialects.postgresql import JSONB, aggregate_order_by
from sqlalchemy.types import Uuid
from sqlmodel import col, select

from services.registry.overview.repository import (
    EXPORT_PLAN,
    OverviewRepository,
    flags_text,
    iso_text,
    safe_text,
    stale_condition,
)
from services.registry.overview.schemas import OverviewFilter
from shared.db.engine import sync_url
from shared.models import Connection, ConnectionCompany, User

SIZE = 2000
LOW, HIGH = bindparam("low", type_=Uuid()), bindparam("high", type_=Uuid())


def _cells(name: str):
    return func.coalesce(
        cast(bindparam(name, type_=JSONB), JSONB)[cast(col(Connection.app_id) if name == "apps"
                                                       else col(Connection.scopes), String)]
        .astext, literal("", String))


def _only(environment_id, step, join: bool = False):
    """A batch's lines of the id and `step` only (joined to the user with `join`)."""
    stmt: Any = select(col(Connection.id).label("key"), (
        cast(col(Connection.id), String) + step + literal("\n", String)).label("line"))
    if join:
        stmt = stmt.join(User, col(User.id) == Connection.user_id)
    rows = stmt.where(Connection.environment_id == environment_id,
                      col(Connection.id) > LOW, col(Connection.id) <= HIGH).subquery()
    return select(func.string_agg(rows.c.line, aggregate_order_by(literal("", String),
                                                                  rows.c.key)), func.count())


def statements(environment_id, now: datetime) -> dict:
    # Only builds statements: no session.
    repo = OverviewRepository(None)  # type: ignore[arg-type]
    rows = repo._export_rows(environment_id, OverviewFilter(), "created_at", now, now)
    company = col(ConnectionCompany.company_id)
    aggregate = func.array_to_string(func.array(
        select(company).where(ConnectionCompany.connection_id == Connection.id)
        .order_by(company).scalar_subquery()), literal(" ", String))
    times = [func.coalesce(iso_text(c), literal("", String)) for c in (
        col(Connection.created_at), col(Connection.last_used_at), col(Connection.revoked_at),
        col(Connection.expires_at))]
    app_flags = cast(bindparam("app_flags", type_=JSONB), JSONB)[
        cast(col(Connection.app_id), String)].astext
    return {
        "the export's statement": repo._export_lines(
            rows.where(col(Connection.id) > LOW, col(Connection.id) <= HIGH), "created_at"),
        "the id only": _only(environment_id, literal("", String)),
        "user look-up (join, email)": _only(environment_id, col(User.email), join=True),
        "  + email made safe (safe_text)": _only(environment_id, safe_text(col(User.email)),
                                                 join=True),
        "company ids: the column": _only(environment_id, repo._company_text()),
        "company ids: aggregated from rows": _only(environment_id, aggregate),
        "four timestamps (iso_text)": _only(environment_id, times[0] + times[1] + times[2]
                                            + times[3]),
        "app and scope cells (JSONB)": _only(environment_id, _cells("apps") + _cells("scopes")),
        "flags and stale (with the join)": _only(environment_id, flags_text(
            now, now, app_flags) + case((stale_condition(now), literal("true", String)),
                                        else_=literal("false", String)), join=True),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--environment", default="Bench 1M")
    parser.add_argument("--batches", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    engine = create_engine(sync_url(os.environ["KOPPEL_DATABASE_URL"]))
    with engine.connect() as db:
        environment_id = db.execute(text("SELECT id FROM environments WHERE name = :n"),
                                    {"n": args.environment}).scalar_one()
        bounds = list(db.execute(text(
            "SELECT id FROM (SELECT id, row_number() OVER (ORDER BY id) AS n FROM connections"
            " WHERE environment_id = :e) AS s WHERE n % :k = 0 ORDER BY n LIMIT :b"),
            {"e": environment_id, "k": SIZE, "b": args.batches + 1}).scalars())
        params = {
            "apps": {a: "client,name,publisher" for a in db.execute(
                text("SELECT id::text FROM apps")).scalars()},
            "scopes": {s: "scopes,sensitive" for s in db.execute(text(
                "SELECT DISTINCT scopes::text FROM connections WHERE environment_id = :e"),
                {"e": environment_id}).scalars()},
            "app_flags": {}}
        db.commit()
        best: dict[str, float] = {}
        for _ in range(args.rounds):
            for name, stmt in statements(environment_id, datetime.now(UTC)).items():
                started, count = time.perf_counter(), 0
                for low, high in pairwise(bounds):
                    with db.begin():
                        db.execute(select(*[func.set_config(k, v, True)
                                            for k, v in EXPORT_PLAN.items()]))
                        count += db.execute(stmt, {**params, "low": low, "high": high}
                                            ).one()[1]
                best[name] = min(best.get(name, 1e9),
                                 (time.perf_counter() - started) / count * 1e6)
    base = best["the id only"]
    for name, us in best.items():
        step = "" if name in ("the export's statement", "the id only") else \
            f"  step {us - base:+.2f}"
        print(f"{name:36s} {us:6.2f} us/row{step}")
    print(f"{count:,} rows a round ({args.batches} batches of {SIZE:,}), best of "
          f"{args.rounds} rounds")


if __name__ == "__main__":
    main()
