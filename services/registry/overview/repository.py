"""The overview's queries: filters, keyset order, and the per-app summary.

Every query is confined to one environment (the caller's, from the token). Pages use
keyset conditions on (sort value, id), never OFFSET.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    DateTime,
    Row,
    String,
    and_,
    bindparam,
    case,
    cast,
    distinct,
    exists,
    func,
    literal,
    literal_column,
    or_,
    tuple_,
    type_coerce,
)
from sqlalchemy.dialects.postgresql import JSONB, aggregate_order_by
from sqlalchemy.orm import QueryableAttribute, load_only
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import Select

from services.registry.connections.health import (
    EXPIRING_SOON,
    UNUSED,
    UNUSED_AFTER,
    USER_DEACTIVATED,
)
from services.registry.overview.cells import FORMULA_START, LINE_END, QUOTE_TRIGGERS
from services.registry.overview.schemas import OverviewFilter
from shared.models import App, Connection, ConnectionCompany, ConnectionStatus, User
from shared.scopes import SCOPES

STALE_AFTER = UNUSED_AFTER  # "stale" is the health flag unused_90_days
# Planner settings for the statements of an export batch (`export_text`), set for its
# transaction only.
EXPORT_PLAN = {"jit": "off", "enable_hashjoin": "off", "enable_mergejoin": "off",
               "enable_seqscan": "off", "max_parallel_workers_per_gather": "0"}
NEVER = datetime(1970, 1, 1, tzinfo=UTC)
# Where a connection that never expires sorts in expiry order: after every expiry.
FOREVER = datetime(9999, 12, 31, tzinfo=UTC)


@dataclass(frozen=True)
class NullableSort:
    """A sort on a timestamp that may be NULL: NULL sorts as `null_value`, first
    (`nulls_low`, like "never used") or last (like "never expires") ascending."""

    column: Any
    null_value: datetime
    nulls_low: bool


def nullable_sort(sort: str) -> NullableSort | None:
    """The nullable-timestamp sort of `sort` (with or without `-`), None for id order."""
    key = sort.lstrip("-")
    if key == "last_used_at":
        return NullableSort(col(Connection.last_used_at), NEVER, True)
    if key == "expires_at":
        return NullableSort(col(Connection.expires_at), FOREVER, False)
    return None


def sort_value(connection: Connection | Row[*tuple[Any, ...]], sort: str) -> datetime:
    """The connection's position value in the sort order (`created_at` for id order)."""
    by = nullable_sort(sort)
    if by is None:
        return connection.created_at
    value = getattr(connection, sort.lstrip("-"))
    return by.null_value if value is None else value


def last_activity():
    """When the connection was last used, or made if it never was."""
    return func.coalesce(col(Connection.last_used_at), col(Connection.created_at))


def stale_condition(now: datetime):
    return and_(col(Connection.status) != ConnectionStatus.REVOKED,
                last_activity() < now - STALE_AFTER)


def flags_text(now: datetime, expiring_limit: datetime, app_flags):
    """connections/health.py `flags` in SQL (PostgreSQL export): the connection's flags,
    space-separated, in the same order; `app_flags` is the app's own (text, NULL for
    none). A revoked connection has none."""
    status = col(Connection.status)
    live = status != ConnectionStatus.REVOKED
    expiring = case((and_(live, status != ConnectionStatus.EXPIRED,
                          col(Connection.expires_at) < expiring_limit),
                     literal(EXPIRING_SOON, String)))
    unused = case((stale_condition(now), literal(UNUSED, String)))
    deactivated = case((and_(live, col(User.active).is_(False)),
                        literal(USER_DEACTIVATED, String)))
    app = case((live, func.nullif(app_flags, literal("", String))))
    return func.concat_ws(literal(" ", String), expiring, unused, deactivated, app,
                          type_=String)


def _like_json_string(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f'%"{escaped}"%'


def filter_conditions(flt: OverviewFilter, now: datetime) -> list[Any]:
    """SQL conditions for the filter (User and App are joined by the caller)."""
    conditions: list[Any] = []
    if flt.app is not None:
        # A sub-select, not a condition on the joined app: the planner then walks the
        # (environment_id, app_id, id) index in id order instead of sorting the app's rows.
        conditions.append(col(Connection.app_id) == select(App.id).where(
            App.client_id == flt.app).scalar_subquery())
    if flt.user is not None:
        conditions.append(Connection.user_id == flt.user)
    if flt.debtor is not None:
        conditions.append(Connection.debtor_id == flt.debtor)
    if flt.company is not None:
        conditions.append(exists().where(
            col(ConnectionCompany.connection_id) == Connection.id,
            col(ConnectionCompany.company_id) == flt.company,
        ))
    if flt.scope is not None:
        # A write scope grants its read scope: `x.read` also finds connections with `x`.
        names = [flt.scope]
        if flt.scope.endswith(".read") and flt.scope.removesuffix(".read") in SCOPES:
            names.append(flt.scope.removesuffix(".read"))
        text = cast(col(Connection.scopes), String)
        conditions.append(or_(*[text.like(_like_json_string(n), escape="\\") for n in names]))
    if flt.status is not None:
        conditions.append(Connection.status == flt.status)
    if flt.created_after is not None:
        conditions.append(col(Connection.created_at) >= flt.created_after)
    if flt.created_before is not None:
        conditions.append(col(Connection.created_at) < flt.created_before)
    if flt.last_used_after is not None:
        conditions.append(col(Connection.last_used_at) >= flt.last_used_after)
    if flt.last_used_before is not None:
        conditions.append(col(Connection.last_used_at) < flt.last_used_before)
    if flt.expires_before is not None:
        conditions.append(col(Connection.expires_at) < flt.expires_before)
    if flt.user_deactivated is not None:
        conditions.append(col(User.active).is_(not flt.user_deactivated))
    if flt.stale is not None:
        stale = stale_condition(now)
        conditions.append(stale if flt.stale else ~stale)
    return conditions


def _as_text(column, postgres: bool):
    """A UUID column as text on PostgreSQL (psycopg then builds no UUID objects)."""
    return cast(column, String) if postgres else column


def _raw_time(column):
    """A timestamp column read as the driver gives it (no per-value conversion)."""
    return type_coerce(column, DateTime(timezone=True))


ISO_SECONDS = 'YYYY-MM-DD"T"HH24:MI:SS"+00:00"'
ISO_MICROSECONDS = 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'


def iso_text(column):
    """A timestamptz as Python's `isoformat()` of it in UTC writes it (PostgreSQL only):
    microseconds only when there are any, and +00:00."""
    return func.to_char(
        func.timezone("UTC", column),
        case((func.date_trunc("second", column) == column, literal(ISO_SECONDS)),
             else_=literal(ISO_MICROSECONDS)))


def safe_text(column):
    """`csv_export.safe` in SQL (PostgreSQL): empty for NULL, a leading quote before what
    would start a formula, then quoted (inner quotes doubled) if it holds a comma, a quote
    or a line break. tests/services/registry/test_csv_export_sql.py holds the two to the
    same bytes. Most text needs neither, which one regular expression tells."""
    guarded = case((func.left(column, 1).in_(FORMULA_START), literal("'", String) + column),
                   else_=column)
    quote = or_(*[func.strpos(guarded, literal(c, String)) > 0 for c in QUOTE_TRIGGERS])
    quoted = case((quote, literal('"', String) + func.replace(guarded, '"', '""', type_=String)
                   + literal('"', String)), else_=guarded)
    plain = column.regexp_match(_NEEDS_CARE).is_not(True)
    return func.coalesce(case((plain, column), else_=quoted), literal("", String))


# What `safe_text` must look at twice: a formula start, or a character that needs quotes
# (the characters themselves, not escapes; "-" first in its bracket).
_NEEDS_CARE = "^[-" + "".join(c for c in FORMULA_START if c != "-") + "]|[" + "".join(
    QUOTE_TRIGGERS) + "]"


def _joined(*parts):
    """The parts (SQL text expressions) with commas between them."""
    text = parts[0]
    for part in parts[1:]:
        text = text + literal_column("','", String) + part
    return text


def keyset(stmt, sort: str, after: tuple[datetime, uuid.UUID] | None) -> list:
    """`stmt` in the sort order (id breaks ties) after the position, as one or two
    statements whose results, concatenated, are that order.

    Creation order is id order (UUIDv7 ids are time-ordered): one statement on the
    (environment_id, id) index. Last-used and expiry order treat NULL ("never used",
    "never expires") as a value below (NEVER) or above (FOREVER) every other, so those
    rows come first or last; they run as their own part (in id order) beside the others,
    so that each part walks the plain (environment_id, <column>, id) index in its own
    order, with a row-value keyset condition, and never needs a sort of the
    environment's rows."""
    descending = sort.startswith("-")
    ident = col(Connection.id)
    by = nullable_sort(sort)
    if by is None:
        if after is not None:
            stmt = stmt.where(ident < after[1] if descending else ident > after[1])
        return [stmt.order_by(ident.desc() if descending else ident.asc())]
    column = by.column
    nulls, values = stmt.where(column.is_(None)), stmt.where(column.is_not(None))
    parts = [("null", nulls), ("set", values)] if by.nulls_low else [("set", values),
                                                                      ("null", nulls)]
    if descending:
        parts.reverse()
    if after is not None:
        value, last_id = after
        here = "null" if value == by.null_value else "set"
        parts = parts[[name for name, _ in parts].index(here):]
        name, first = parts[0]
        if name == "null":
            first = first.where(ident < last_id if descending else ident > last_id)
        else:
            row = tuple_(column, ident)
            first = first.where(row < tuple_(value, last_id) if descending
                                else row > tuple_(value, last_id))
        parts[0] = (name, first)
    ordered = []
    for name, part in parts:
        keys = [ident] if name == "null" else [column, ident]
        ordered.append(part.order_by(*[k.desc() if descending else k.asc() for k in keys]))
    return ordered


# What a list row shows, in the order of `page_rows`' columns (the service unpacks them).
PAGE_COLUMNS = (
    "id", "app_id", "debtor_id", "scopes", "status", "created_at", "last_used_at",
    "revoked_at", "expires_at", "scope_used_at", "approved_by", "revoked_by",
    "revoke_reason", "app_client_id", "app_name", "app_publisher", "app_status", "user_id",
    "user_email", "user_template", "user_active",
)
# Read as text: the JSON columns (parsed by the service, a scope list once per page), and
# on PostgreSQL the ids but the app's (no UUID object built per value; the app's id is
# what health.app_flags looks up).
_JSON_TEXT = {"scopes", "scope_used_at"}
_ID_TEXT = {"id", "debtor_id", "user_id"}


def _page_columns(postgres: bool) -> list[Any]:
    """`PAGE_COLUMNS` as the columns of the connection, its app and its user."""
    columns = {
        **{name: getattr(Connection, name) for name in PAGE_COLUMNS[:13]},
        "app_client_id": App.client_id, "app_name": App.name, "app_publisher": App.publisher,
        "app_status": App.status, "user_id": Connection.user_id, "user_email": User.email,
        "user_template": User.template, "user_active": User.active,
    }
    found: list[Any] = []
    for name in PAGE_COLUMNS:
        column: Any = col(columns[name])
        if name in _JSON_TEXT:
            column = cast(column, String)
        elif name in _ID_TEXT:
            column = _as_text(column, postgres)
        found.append(column.label(name))
    return found


async def _keyset_rows(connection: Any, stmt: Any, sort: str, after: Any, limit: int
                       ) -> list:
    """Up to `limit` rows of `stmt` after the cursor's position, part by part of the
    keyset (`keyset`), stopping once the page is full."""
    rows: list = []
    for part in keyset(stmt, sort, after):
        rows += (await connection.execute(part.limit(limit - len(rows)))).all()
        if len(rows) >= limit:
            break
    return rows


def _page_select(environment_id: Any, flt: OverviewFilter, now: datetime, postgres: bool):
    """The page's rows (`PAGE_COLUMNS`, and the companies on PostgreSQL), unordered."""
    columns = _page_columns(postgres)
    if postgres:
        columns.append(OverviewRepository._company_text().label("company_ids"))
    return (
        select(*columns)
        .join(App, col(App.id) == Connection.app_id)
        .join(User, col(User.id) == Connection.user_id)
        .where(Connection.environment_id == environment_id, *filter_conditions(flt, now))
    )


# The filters whose values a cached page statement takes as parameters (`f_<name>`),
# and those that shape it; `stale` depends on the time, and a filter named in neither
# (a new one) is never cached.
_BOUND_FILTERS = ("app", "user", "debtor", "company", "status", "created_after",
                  "created_before", "last_used_after", "last_used_before", "expires_before")
_SHAPING_FILTERS = {"scope", "user_deactivated"}


@lru_cache(maxsize=256)
def _page_statement(sort: str, after: bool, bound: tuple[str, ...], scope: str | None,
                    user_deactivated: bool | None, postgres: bool):
    """A page in id order for one shape of query (its sort, whether it has a position,
    which filters it gives, its scope and user_deactivated filters), built once: building
    a statement and its cache key costs SQLAlchemy about as much as running it. Its
    values are the parameters `environment_id`, `after_id`, `limit` and `f_<filter>`."""
    # Parameters where the filter and the position hold values (the expressions take
    # them as they take values; model_construct does not validate).
    values: dict[str, Any] = {name: bindparam(f"f_{name}") for name in bound}
    symbolic = OverviewFilter.model_construct(scope=scope, user_deactivated=user_deactivated,
                                              **values)
    stmt = _page_select(bindparam("environment_id"), symbolic, NEVER, postgres)
    position: Any = (NEVER, bindparam("after_id")) if after else None
    [part] = keyset(stmt, sort, position)
    return part.limit(bindparam("limit"))


@dataclass
class ExportCells:
    """The CSV cells of the apps (id -> `client_id,name,publisher`) and scope lists
    (JSON text -> `scopes,sensitive_scopes`) an export has met so far, made by
    cells.py, and the export's statements."""

    apps: dict[str, str] = field(default_factory=dict)
    scopes: dict[str, str] = field(default_factory=dict)
    # The app-wide health flags (id -> space-separated; apps without any left out), and
    # the time before which an expiry is `expiring_soon`.
    app_flags: dict[str, str] = field(default_factory=dict)
    expiring_limit: datetime | None = None
    # The export's statements, built once (`OverviewRepository.export_text`).
    statements: dict[Any, Any] = field(default_factory=dict)


@dataclass
class ExportText:
    """A batch of `OverviewRepository.export_text`: its lines, how many, the id and
    sort value (last use or expiry, ISO text; None for NULL) of the last one, and the
    apps and scope lists it lacked cells for (then the lines are incomplete)."""

    parts: list[str] = field(default_factory=list)
    count: int = 0
    last: tuple[str, str | None] | None = None
    missing_apps: list[str] = field(default_factory=list)
    missing_scopes: list[str] = field(default_factory=list)


def _attributes(model: type, *names: str) -> list[QueryableAttribute[Any]]:
    """The model's mapped attributes by name (what load_only takes)."""
    return [getattr(model, name) for name in names]


class OverviewRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def _base(self, environment_id: uuid.UUID, flt: OverviewFilter, now: datetime):
        return (
            select(Connection, App, User)
            .join(App, col(App.id) == Connection.app_id)
            .join(User, col(User.id) == Connection.user_id)
            .where(Connection.environment_id == environment_id, *filter_conditions(flt, now))
            # What a row shows of its app and user: not their JSON columns (an app's
            # lists, a user's password hash), which cost more to load than the row.
            .options(load_only(*_attributes(App, "id", "client_id", "name", "publisher",
                                            "status")),
                     load_only(*_attributes(User, "id", "email", "template", "active")))
        )

    async def page(self, environment_id: uuid.UUID, flt: OverviewFilter, sort: str,
                   after: tuple[datetime, uuid.UUID] | None, limit: int, now: datetime,
                   ) -> list[tuple[Connection, App, User]]:
        """Up to `limit` rows after the position, in the sort order (id breaks ties)."""
        rows: list = []
        for stmt in keyset(self._base(environment_id, flt, now), sort, after):
            rows += (await self.session.exec(stmt.limit(limit - len(rows)))).all()
            if len(rows) >= limit:
                break
        return rows

    async def page_rows(self, environment_id: uuid.UUID, flt: OverviewFilter, sort: str,
                        after: tuple[datetime, uuid.UUID] | None, limit: int, now: datetime,
                        ) -> list[Row[*tuple[Any, ...]]]:
        """Like `page`, but plain rows of what a list row shows (`PAGE_COLUMNS`, in that
        order), run on the Core connection: no ORM objects are built. The JSON columns
        come as their text; on PostgreSQL the ids but the app's as text too, and a last
        column holds the connection's company ids, sorted, space-separated (a sub-select
        per row, so the page is one statement); SQLite has no arrays:
        `company_id_lists` reads them."""
        postgres = self._postgres
        given = {name for name in OverviewFilter.model_fields
                 if getattr(flt, name) is not None}
        connection = await self.session.connection()
        if nullable_sort(sort) is None and given <= {*_BOUND_FILTERS, *_SHAPING_FILTERS}:
            bound = tuple(name for name in _BOUND_FILTERS if name in given)
            params = {"environment_id": environment_id, "limit": limit,
                      **{f"f_{name}": getattr(flt, name) for name in bound}}
            if after is not None:
                params["after_id"] = after[1]
            return list((await connection.execute(_page_statement(
                sort, after is not None, bound, flt.scope, flt.user_deactivated, postgres),
                params)).all())
        return await _keyset_rows(connection, _page_select(environment_id, flt, now, postgres),
                                  sort, after, limit)

    async def company_id_lists(self, connection_ids: list[uuid.UUID],
                               ) -> dict[uuid.UUID, list[uuid.UUID]]:
        """The companies of each connection (SQLite; PostgreSQL reads them with
        `page_rows`), as plain rows."""
        if not connection_ids:
            return {}
        stmt = select(col(ConnectionCompany.connection_id),
                      col(ConnectionCompany.company_id)).where(
            col(ConnectionCompany.connection_id).in_(connection_ids))
        found: dict[uuid.UUID, list[uuid.UUID]] = {}
        db = await self.session.connection()
        for connection_id, company_id in (await db.execute(stmt)).all():
            found.setdefault(connection_id, []).append(company_id)
        return found

    async def export_batch(self, environment_id: uuid.UUID, flt: OverviewFilter, sort: str,
                           after: tuple[datetime, uuid.UUID] | None, limit: int,
                           now: datetime) -> list[tuple]:
        """Like `page`, but only the columns of the CSV export, as plain tuples:
        id, app_id, user_id, debtor_id, scopes (JSON text), status, created_at,
        last_used_at, revoked_at, the user's email, template and active flag, whether
        the connection is stale, expires_at, and the sorted company ids (on PostgreSQL
        space-separated, on SQLite as a list of UUIDs).

        Run on the Core connection (no ORM loading). PostgreSQL gives the ids as text and
        the timestamps already as the CSV writes them (`iso_text`), so no UUID or
        datetime objects are built per row; SQLite gives them as stored."""
        pg = self._postgres
        time = iso_text if pg else _raw_time
        columns = [
            _as_text(col(Connection.id), pg), _as_text(col(Connection.app_id), pg),
            _as_text(col(Connection.user_id), pg), _as_text(col(Connection.debtor_id), pg),
            cast(col(Connection.scopes), String), col(Connection.status),
            time(col(Connection.created_at)), time(col(Connection.last_used_at)),
            time(col(Connection.revoked_at)), col(User.email), col(User.template),
            col(User.active), stale_condition(now), time(col(Connection.expires_at)),
        ]
        # The company ids, from the connection row (shared/models/connection.py): on
        # PostgreSQL as the CSV cell, on SQLite as the list.
        columns.append(self._company_text() if pg else col(Connection.company_ids))
        stmt = (
            select(*columns)
            .join(User, col(User.id) == Connection.user_id)
            .where(Connection.environment_id == environment_id, *filter_conditions(flt, now))
        )
        return await _keyset_rows(await self.session.connection(), stmt, sort, after, limit)

    @staticmethod
    def _company_text():
        """The connection's company ids, sorted, space-separated: its `company_ids`
        column (kept equal to its `connection_companies` rows by the database), not an
        aggregate of those rows."""
        return func.array_to_string(col(Connection.company_ids), literal(" ", String),
                                    type_=String)

    def _export_rows(self, environment_id: uuid.UUID, flt: OverviewFilter, sort: str,
                     now: datetime, expiring_limit: datetime):
        """The rows of the export, each with its line but for the app's and the scope
        list's cells (looked up in the `apps` and `scopes` parameters, JSON objects)."""
        middle = _joined(
            cast(col(Connection.user_id), String), safe_text(col(User.email)),
            cast(col(User.template), String),
            case((col(User.active), literal("false", String)), else_=literal("true", String)),
            cast(col(Connection.debtor_id), String), self._company_text())
        stale = case((stale_condition(now), literal("true", String)),
                     else_=literal("false", String))
        tail = _joined(
            cast(col(Connection.status), String), stale, iso_text(col(Connection.created_at)),
            func.coalesce(iso_text(col(Connection.last_used_at)), literal("", String)),
            func.coalesce(iso_text(col(Connection.revoked_at)), literal("", String)),
            func.coalesce(iso_text(col(Connection.expires_at)), literal("", String)))
        app_key = cast(col(Connection.app_id), String)
        scopes_key = cast(col(Connection.scopes), String)
        app_flags = type_coerce(bindparam("app_flags", type_=JSONB), JSONB)[app_key].astext
        tail = _joined(tail, flags_text(now, expiring_limit, app_flags))
        app_cells = type_coerce(bindparam("apps", type_=JSONB), JSONB)[app_key].astext
        scope_cells = type_coerce(bindparam("scopes", type_=JSONB), JSONB)[scopes_key].astext
        by = nullable_sort(sort)
        return (
            # sqlmodel's select() is typed for up to four columns.
            select(cast(col(Connection.id), String).label("id"),  # type: ignore[call-overload]
                   col(Connection.app_id).label("app"), col(Connection.scopes).label("scopes"),
                   app_cells.label("app_cells"), scope_cells.label("scope_cells"),
                   middle.label("middle"), tail.label("tail"),
                   (by.column if by else literal(None, DateTime(timezone=True)))
                   .label("sort_value"),
                   (iso_text(by.column) if by else literal(None, String)).label("sort_text"),
                   col(Connection.id).label("key"))
            .join(User, col(User.id) == Connection.user_id)
            .where(Connection.environment_id == environment_id, *filter_conditions(flt, now))
        )

    @staticmethod
    def _export_lines(part, sort: str):
        """One row for the export rows of `part`: their lines joined in sort order, how
        many, (last-used or expiry sort) the id and sort value of the last one, and the
        apps and scope lists without cells."""
        descending, rows = sort.startswith("-"), part.subquery()
        by_value = nullable_sort(sort) is not None
        order = [rows.c.sort_value, rows.c.key] if by_value else [rows.c.key]
        order = [o.desc() if descending else o.asc() for o in order]
        line = _joined(rows.c.id, func.coalesce(rows.c.app_cells, ""), rows.c.middle,
                       func.coalesce(rows.c.scope_cells, ""), rows.c.tail) + LINE_END
        last: list[ColumnElement[Any]] = [literal(None, String), literal(None, String)]
        if by_value:  # where the next batch starts
            backwards = [o.element.asc() if descending else o.element.desc() for o in order]
            last = [func.array_agg(aggregate_order_by(c, *backwards))[1]
                    for c in (rows.c.id, rows.c.sort_text)]
        return select(  # type: ignore[call-overload]
            func.string_agg(line, aggregate_order_by(literal("", String), *order)),
            func.count(), *last,
            func.array_agg(distinct(cast(rows.c.app, String))).filter(
                rows.c.app_cells.is_(None)),
            func.array_agg(distinct(cast(rows.c.scopes, String))).filter(
                rows.c.scope_cells.is_(None)),
        )

    async def export_text(self, environment_id: uuid.UUID, flt: OverviewFilter, sort: str,
                          after: tuple[datetime, uuid.UUID] | None, limit: int | None,
                          now: datetime, cells: ExportCells, *, upto: uuid.UUID | None = None,
                          ) -> ExportText:
        """One batch of the CSV export as its CSV lines, made by PostgreSQL: the matching
        connections in sort order after the position, up to `limit` of them, or (id
        order, no limit) up to the id `upto` (inclusive) if given. The cells of apps and
        scope lists come from `cells` (made in Python, once per export); a batch that
        meets one not there gives no text but what is missing, to be filled in and read
        again. In id order the statement is built once per export (`cells.statements`)."""
        descending = sort.startswith("-")
        params: dict[str, Any] = {"apps": cells.apps, "scopes": cells.scopes,
                                  "app_flags": cells.app_flags}
        expiring_limit = cells.expiring_limit or now
        built = nullable_sort(sort) is None and limit is None
        if built:
            variant = (after is not None, upto is not None)
            statement = cells.statements.get(variant)
            if statement is None:
                stmt, ident = self._export_rows(environment_id, flt, sort, now,
                                                expiring_limit), col(Connection.id)
                if after is not None:
                    # col() is typed Mapped; the attribute has its column's type.
                    mark = bindparam("after", type_=ident.type)  # type: ignore[attr-defined]
                    stmt = stmt.where(ident < mark if descending else ident > mark)
                if upto is not None:
                    mark = bindparam("upto", type_=ident.type)  # type: ignore[attr-defined]
                    stmt = stmt.where(ident >= mark if descending else ident <= mark)
                statement = cells.statements[variant] = self._export_lines(stmt, sort)
            parts = [statement]
            params.update(after=after[1] if after is not None else None, upto=upto)
        else:
            parts = keyset(self._export_rows(environment_id, flt, sort, now, expiring_limit),
                           sort, after)
        result = ExportText()
        db = await self.session.connection()
        # A batch is a few thousand rows: joined by index look-ups (never by scanning whole
        # tables, which the planner's estimate for a range of ids tends to choose), without
        # parallel workers, and not worth compiling (JIT).
        await db.execute(select(*[func.set_config(name, value, True)
                                  for name, value in EXPORT_PLAN.items()]))
        for part in parts:
            statement = part if built else self._export_lines(
                part.limit(limit - result.count) if limit is not None else part, sort)
            found = (await db.execute(statement, params)).one()
            text, count, last_id, last_value, missing_apps, missing_scopes = found
            if not count:
                continue
            result.parts.append(text)
            result.count += count
            result.last = (last_id, last_value)
            result.missing_apps += missing_apps or []
            result.missing_scopes += missing_scopes or []
            if limit is not None and result.count >= limit:
                break
        return result

    async def export_boundaries(self, environment_id: uuid.UUID, flt: OverviewFilter,
                                descending: bool, after: uuid.UUID | None, every: int,
                                count: int, now: datetime) -> list[uuid.UUID]:
        """In id order after `after`, the ids of the `every`-th, 2 x `every`-th ... up
        to the `count`-th such matching connection: where the next batches of an export
        end, found ahead of reading them (fewer when fewer rows match)."""
        ident = col(Connection.id)
        stmt: Select[uuid.UUID, int]
        stmt = select(ident.label("id"),
                      func.row_number().over(order_by=ident.desc() if descending else ident)
                      .label("n"))
        stmt = stmt.where(Connection.environment_id == environment_id,
                          *filter_conditions(flt, now))
        if flt.user_deactivated is not None:
            stmt = stmt.join(User, col(User.id) == Connection.user_id)
        if after is not None:
            stmt = stmt.where(ident < after if descending else ident > after)
        rows = stmt.order_by(ident.desc() if descending else ident.asc()).limit(
            every * count).subquery()
        found = select(rows.c.id).where(rows.c.n % every == 0).order_by(rows.c.n)
        return list((await self.session.exec(found)).all())

    async def apps(self, app_ids: list) -> list[tuple]:
        """id (as `export_batch` gives it), client_id, name, publisher and status (for
        the health flags) of the apps."""
        ids = [a if isinstance(a, uuid.UUID) else uuid.UUID(a) for a in app_ids]
        stmt = select(  # type: ignore[call-overload]
            _as_text(col(App.id), self._postgres), App.client_id, App.name, App.publisher,
            App.status).where(col(App.id).in_(ids))
        return list((await self.session.exec(stmt)).all())

    @property
    def _postgres(self) -> bool:
        return self.session.get_bind().dialect.name == "postgresql"

    async def count(self, environment_id: uuid.UUID, flt: OverviewFilter, now: datetime,
                    *, live_only: bool = False) -> int:
        stmt = (
            select(func.count()).select_from(Connection)
            .join(App, col(App.id) == Connection.app_id)
            .join(User, col(User.id) == Connection.user_id)
            .where(Connection.environment_id == environment_id, *filter_conditions(flt, now))
        )
        if live_only:
            stmt = stmt.where(col(Connection.status) != ConnectionStatus.REVOKED)
        return (await self.session.exec(stmt)).one()

    async def live_ids(self, environment_id: uuid.UUID, flt: OverviewFilter, now: datetime,
                       after: uuid.UUID | None, limit: int) -> list[uuid.UUID]:
        """Ids of matching connections that are not revoked, in id order."""
        stmt = (
            select(Connection.id)
            .join(App, col(App.id) == Connection.app_id)
            .join(User, col(User.id) == Connection.user_id)
            .where(Connection.environment_id == environment_id, *filter_conditions(flt, now),
                   col(Connection.status) != ConnectionStatus.REVOKED)
        )
        if after is not None:
            stmt = stmt.where(col(Connection.id) > after)
        return list((await self.session.exec(stmt.order_by(col(Connection.id)).limit(limit))).all())

    async def summary(self, environment_id: uuid.UUID) -> list[tuple]:
        """Per app: counts by status, distinct users and debtors, last use."""
        def by_status(value: ConnectionStatus):
            return func.sum(case((col(Connection.status) == value, 1), else_=0))

        stmt = (
            select(App, func.count(), by_status(ConnectionStatus.ACTIVE),  # type: ignore[call-overload]
                   by_status(ConnectionStatus.SUSPENDED), by_status(ConnectionStatus.REVOKED),
                   by_status(ConnectionStatus.EXPIRED),
                   func.count(func.distinct(Connection.user_id)),
                   func.count(func.distinct(Connection.debtor_id)),
                   func.max(Connection.last_used_at))
            .join(App, col(App.id) == Connection.app_id)
            .where(Connection.environment_id == environment_id)
            .group_by(col(App.id)).order_by(col(App.name), col(App.id))
        )
        return list((await self.session.exec(stmt)).all())

    async def live_scope_sets(self, environment_id: uuid.UUID) -> list[tuple[uuid.UUID, str]]:
        """The distinct scope lists (as JSON text) of live connections, per app."""
        text = cast(col(Connection.scopes), String)
        stmt = select(Connection.app_id, text).where(
            Connection.environment_id == environment_id,
            col(Connection.status) != ConnectionStatus.REVOKED,
        ).distinct()
        return list((await self.session.exec(stmt)).all())


    async def used_scopes(self, environment_id: uuid.UUID) -> list[tuple[uuid.UUID, str]]:
        """The distinct (app, scope) pairs of the environment's scope-use maps: which
        scopes some connection of the app needed. The keys are gathered in SQL (each map
        holds per-connection times, so distinct maps are about one per connection):
        `json_object_keys` on PostgreSQL (the column is `json`), `json_each` on SQLite.
        A map that is not a JSON object (none is written) has no keys."""
        used = col(Connection.scope_used_at)
        mine = Connection.environment_id == environment_id
        if self._postgres:
            key = func.json_object_keys(used, type_=String)
            stmt = select(Connection.app_id, key).where(
                mine, func.json_typeof(used) == "object").distinct()
        else:
            entries = func.json_each(used).table_valued("key")
            stmt = (select(Connection.app_id, entries.c.key)
                    .join(entries, literal(True))
                    .where(mine, func.json_type(used) == "object").distinct())
        return list((await self.session.exec(stmt)).all())
