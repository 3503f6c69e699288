"""A partner's sandboxes: made with the demo seeder's realistic Dutch payroll data
(shared/demo), listed, read and removed by their partner only (shared/policy/sandboxes.py:
another partner's sandbox is as unknown as a missing one)."""

from __future__ import annotations

import uuid
from typing import Any, cast

from sqlalchemy import func
from sqlmodel import Session, col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.concurrency import run_in_threadpool

from shared import ratelimit
from shared.audit import Actor, append_async
from shared.demo.seed import new_login, seed_environment
from shared.errors import Conflict, NotFound, RateLimited
from shared.models import Company, Debtor, Employee, Environment, Partner, User, UserTemplate
from shared.policy.dependency import PartnerCaller
from shared.policy.sandboxes import MAX_PER_PARTNER, owned_by, sandbox_domain
from shared.runtime import Runtime

EMPLOYEES_PER_COMPANY = 5
CREATION_WINDOW_S = 3600
TEMPLATE_ORDER = {t.value: n for n, t in enumerate(UserTemplate)}


def actor(caller: PartnerCaller) -> Actor:
    """Who acts: the partner's app, or the partner with its initial access token."""
    if caller.app is not None:
        return Actor("app", caller.app.client_id)
    return Actor("partner", str(caller.partner_id))


async def owned(session: AsyncSession, caller: PartnerCaller, sandbox_id: uuid.UUID, *,
                for_update: bool = False) -> Environment:
    """The caller's own sandbox; 404 for a missing one, another partner's or a customer's
    environment alike."""
    environment = await session.get(Environment, sandbox_id,
                                    with_for_update=for_update or None)
    if not owned_by(environment, caller.partner_id):
        raise NotFound("no such sandbox")
    assert environment is not None
    return environment


async def describe(session: AsyncSession, environment: Environment) -> dict[str, Any]:
    """The sandbox as its documents show it (no passwords)."""
    debtors = (await session.exec(select(Debtor).where(
        Debtor.environment_id == environment.id).order_by(col(Debtor.number)))).all()
    companies = (await session.exec(select(Company).where(
        Company.environment_id == environment.id).order_by(col(Company.number)))).all()
    users = (await session.exec(select(User).where(
        User.environment_id == environment.id))).all()
    employees = (await session.exec(select(func.count()).select_from(Employee).where(
        Employee.environment_id == environment.id))).one()
    return {
        "id": environment.id, "name": environment.name, "sandbox": True,
        "created_at": environment.created_at, "employee_count": employees,
        "debtors": [{"id": d.id, "name": d.name,
                     "companies": [{"id": c.id, "name": c.name} for c in companies
                                   if c.debtor_id == d.id]} for d in debtors],
        "users": [{"id": u.id, "template": u.template, "email": u.email, "name": u.name}
                  for u in sorted(users, key=lambda u: TEMPLATE_ORDER[u.template])],
    }


async def list_own(session: AsyncSession, caller: PartnerCaller) -> list[dict[str, Any]]:
    rows = (await session.exec(select(Environment).where(
        Environment.sandbox_partner_id == caller.partner_id
    ).order_by(col(Environment.created_at), col(Environment.id)))).all()
    return [await describe(session, row) for row in rows]


async def check_creation_rate(runtime: Runtime, caller: PartnerCaller) -> None:
    """Count a creation attempt of the partner; 429 (with `Retry-After`) past
    `sandbox_creations_per_hour` in the running hour, before any work is done."""
    name = f"sandbox-create:{caller.partner_id}"
    count = await ratelimit.record(runtime.redis, name, CREATION_WINDOW_S)
    if count > runtime.settings.sandbox_creations_per_hour:
        wait = await ratelimit.retry_after(runtime.redis, name, count)
        raise RateLimited(wait or CREATION_WINDOW_S,
                          "too many sandboxes created this hour; try again later")


async def create(session: AsyncSession, caller: PartnerCaller, name: str) -> dict[str, Any]:
    """A new sandbox of the partner, seeded; its logins' passwords are in this answer
    only. 409 past `MAX_PER_PARTNER`: counted under the partner's row lock on PostgreSQL,
    and on SQLite inside a transaction begun with BEGIN IMMEDIATE (shared/db/engine.py),
    which holds the database's write lock; so two requests at once cannot both take the
    last place. 409 too, writing nothing, if a generated login email belongs to another
    environment (shared/demo/seed.py)."""
    await session.get(Partner, caller.partner_id, with_for_update=True)
    count = (await session.exec(select(func.count()).select_from(Environment).where(
        Environment.sandbox_partner_id == caller.partner_id))).one()
    if count >= MAX_PER_PARTNER:
        raise Conflict(f"a partner has at most {MAX_PER_PARTNER} sandboxes; delete one first")
    environment = Environment(name=name, sandbox_partner_id=caller.partner_id)
    session.add(environment)
    await session.flush()
    # argon2 off the event loop, before the seeder (which runs on it) asks for them.
    logins = iter(await run_in_threadpool(lambda: [new_login() for _ in UserTemplate]))
    seeded = await session.run_sync(lambda sync: seed_environment(
        cast(Session, sync), environment, sandbox_domain(environment.id), EMPLOYEES_PER_COMPANY,
        logins=lambda: next(logins)))
    await append_async(session, environment.id, "sandbox.created", actor(caller),
                       "environment", environment.id, name=name,
                       partner_id=str(caller.partner_id))
    document = await describe(session, environment)
    passwords = {login["id"]: login["password"] for login in seeded["users"].values()}
    for user in document["users"]:
        user["password"] = passwords[str(user["id"])]
    return document
