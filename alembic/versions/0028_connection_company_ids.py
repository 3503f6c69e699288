"""The companies a connection covers, on the connection row (issue 18, item 6)

Revision ID: 0028
Revises: 0027

`connections.company_ids` holds the connection's company ids, sorted, so the registry's
CSV export reads them with the row instead of aggregating `connection_companies` per
row (2 to 3.4 of PostgreSQL's 11 us per exported row). `connection_companies` stays
the source of truth; the database keeps the copy equal to it after every write of it,
in the same transaction, whoever writes (the consent, an approval, narrowing to reach,
a bulk seed, a test fixture):

- PostgreSQL: statement-level triggers (insert, delete, update) with transition tables
  recompute the column of the connections the statement touched: one UPDATE per
  statement however many rows it wrote. They lock those connections first, then read
  the rows in a new statement: two transactions changing one connection's companies at
  once take turns, and the second reads what the first committed (READ COMMITTED; under
  REPEATABLE READ the second fails to serialize instead of writing a stale copy).
- SQLite: row-level triggers (it has no others, and one writer at a time).
- Both: an UPDATE that sets the column itself (a stale ORM value flushed, a hand-written
  statement) gets the value recomputed from the rows instead (PostgreSQL: a BEFORE
  trigger, skipped for the triggers' own updates; SQLite: an AFTER trigger that stops
  once the value is right). A connection is inserted before its rows (their foreign
  key): it is inserted with none (the model's default), or, in a bulk seed, with the
  rows' value, which their insert then recomputes.

Existing rows are filled from `connection_companies`. The column's representation is
shared/db/types.py `UUIDList` (uuid[]; JSON on SQLite).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0028"
down_revision: str | None = "0027"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FUNCTION = "connection_company_ids_sync"

POSTGRES_FUNCTION = f"""
CREATE FUNCTION {FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Lock the statement's connections (in id order), then read their companies in a
    -- statement of its own: its snapshot holds what a concurrent writer of the same
    -- connection committed while we waited for the lock.
    PERFORM 1 FROM connections
        WHERE id IN (SELECT connection_id FROM changed) ORDER BY id FOR UPDATE;
    UPDATE connections AS c SET company_ids = n.ids
    FROM (SELECT d.connection_id,
                 coalesce(array_agg(cc.company_id ORDER BY cc.company_id)
                          FILTER (WHERE cc.company_id IS NOT NULL), '{{}}') AS ids
          FROM (SELECT DISTINCT connection_id FROM changed) AS d
          LEFT JOIN connection_companies AS cc ON cc.connection_id = d.connection_id
          GROUP BY d.connection_id) AS n
    WHERE c.id = n.connection_id AND c.company_ids IS DISTINCT FROM n.ids;
    RETURN NULL;
END
$$
"""

GUARD = "connection_company_ids_kept"
POSTGRES_GUARD = f"""
CREATE FUNCTION {GUARD}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.company_ids := coalesce((SELECT array_agg(company_id ORDER BY company_id)
                                 FROM connection_companies
                                 WHERE connection_id = NEW.id), '{{}}');
    RETURN NEW;
END
$$
"""
# Only for statements of the application (depth 0): the sync trigger's own UPDATE (at
# depth 1) has just computed the value.
POSTGRES_GUARD_TRIGGER = (
    f"CREATE TRIGGER connections_company_ids_kept BEFORE UPDATE OF company_ids ON "
    f"connections FOR EACH ROW WHEN (pg_trigger_depth() < 1) EXECUTE FUNCTION {GUARD}()")

# (trigger, event, the transition table it reads as `changed`)
POSTGRES_TRIGGERS = [
    ("connection_companies_inserted", "INSERT", "NEW"),
    ("connection_companies_deleted", "DELETE", "OLD"),
    ("connection_companies_updated_from", "UPDATE", "OLD"),
    ("connection_companies_updated_to", "UPDATE", "NEW"),
]

POSTGRES_BACKFILL = """
UPDATE connections AS c SET company_ids = n.ids
FROM (SELECT connection_id, array_agg(company_id ORDER BY company_id) AS ids
      FROM connection_companies GROUP BY connection_id) AS n
WHERE c.id = n.connection_id
"""


def _sqlite_recompute(connection_id: str) -> str:
    """The UPDATE that rewrites one connection's column from its rows (SQLite)."""
    return f"""UPDATE connections SET company_ids = (
        SELECT json_group_array(company_id) FROM (
            SELECT company_id FROM connection_companies
            WHERE connection_id = {connection_id} ORDER BY company_id))
        WHERE id = {connection_id};"""


# (trigger, event, the statements of its body)
SQLITE_TRIGGERS = [
    ("connection_companies_inserted", "INSERT", [_sqlite_recompute("NEW.connection_id")]),
    ("connection_companies_deleted", "DELETE", [_sqlite_recompute("OLD.connection_id")]),
    ("connection_companies_updated", "UPDATE", [_sqlite_recompute("OLD.connection_id"),
                                                _sqlite_recompute("NEW.connection_id")]),
]

_SQLITE_VALUE = """(SELECT json_group_array(company_id) FROM (
    SELECT company_id FROM connection_companies
    WHERE connection_id = NEW.id ORDER BY company_id))"""
SQLITE_GUARD_TRIGGER = (
    "CREATE TRIGGER connections_company_ids_kept AFTER UPDATE OF company_ids ON connections "
    f"WHEN NEW.company_ids IS NOT {_SQLITE_VALUE} "
    f"BEGIN UPDATE connections SET company_ids = {_SQLITE_VALUE} WHERE id = NEW.id; END")

SQLITE_BACKFILL = """
UPDATE connections SET company_ids = (
    SELECT json_group_array(company_id) FROM (
        SELECT company_id FROM connection_companies
        WHERE connection_id = connections.id ORDER BY company_id))
"""


def _postgres() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def upgrade() -> None:
    postgres = _postgres()
    column_type = postgresql.ARRAY(sa.Uuid()) if postgres else sa.JSON()
    # A plain ALTER TABLE on SQLite too: batch mode would copy the table, and dropping
    # the old one deletes its `connection_companies` rows (ON DELETE CASCADE).
    op.add_column("connections", sa.Column(
        "company_ids", column_type, nullable=False,
        server_default=sa.text("'{}'" if postgres else "'[]'")))
    if postgres:
        op.execute(POSTGRES_BACKFILL)
        op.execute(POSTGRES_FUNCTION)
        for name, event, table in POSTGRES_TRIGGERS:
            op.execute(f"CREATE TRIGGER {name} AFTER {event} ON connection_companies "
                       f"REFERENCING {table} TABLE AS changed FOR EACH STATEMENT "
                       f"EXECUTE FUNCTION {FUNCTION}()")
        op.execute(POSTGRES_GUARD)
        op.execute(POSTGRES_GUARD_TRIGGER)
    else:
        op.execute(SQLITE_BACKFILL)
        for name, event, body in SQLITE_TRIGGERS:
            op.execute(f"CREATE TRIGGER {name} AFTER {event} ON connection_companies "
                       f"BEGIN {' '.join(body)} END")
        op.execute(SQLITE_GUARD_TRIGGER)


def downgrade() -> None:
    if _postgres():
        op.execute("DROP TRIGGER connections_company_ids_kept ON connections")
        op.execute(f"DROP FUNCTION {GUARD}()")
        for name, _, _ in POSTGRES_TRIGGERS:
            op.execute(f"DROP TRIGGER {name} ON connection_companies")
        op.execute(f"DROP FUNCTION {FUNCTION}()")
    else:
        op.execute("DROP TRIGGER connections_company_ids_kept")
        for name, _, _ in SQLITE_TRIGGERS:
            op.execute(f"DROP TRIGGER {name}")
    op.drop_column("connections", "company_ids")  # ALTER TABLE on SQLite too (see above)
