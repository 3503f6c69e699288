"""Provisioning (docs/product.md 5.7): the SaaS backend creates and changes environments, debtors,
companies and users. A change that affects who may use a connection (a deactivated
user, a template that may not consent, the environment's consent templates) suspends
or resumes the connections concerned in the same transaction. A new password or a
deactivation also signs the user out everywhere (`sign_out_everywhere`)."""

from __future__ import annotations

import secrets
import uuid
from typing import Any, TypeVar

from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.concurrency import run_in_threadpool

from services.registry.connections.lifecycle import narrow_to_reach, reconcile
from services.registry.directory.repository import DirectoryRepository
from services.registry.directory.schemas import UserIn, UserPatch
from shared.audit import Actor, append_async
from shared.db.base import table_of
from shared.db.types import utcnow
from shared.errors import Conflict, Invalid, NotFound
from shared.models import Company, Debtor, Environment, User, UserTemplate
from shared.outbox import emit
from shared.pagination import after_id, check_limit, id_cursor
from shared.passwords import hash_password
from shared.policy.sandboxes import may_use_email
from shared.sessions import revoke_first_party_families
from shared.status import Subject
from shared.unit_of_work import unit_of_work

T = TypeVar("T", bound=SQLModel)
COMPANY_TEMPLATES = {UserTemplate.COMPANY, UserTemplate.HR_MANAGER,
                     UserTemplate.PAYROLL_HR_MANAGER}
WHOLE_DEBTOR_TEMPLATES = {UserTemplate.ACCOUNTANT, UserTemplate.MASTER_CLIENT}
PLACEMENT = {"template", "debtor_id", "company_ids"}  # the fields that say where a user sits


async def get(session: AsyncSession, model: type[T], ident: uuid.UUID, *,
              for_update: bool = False) -> T:
    """The row (locked until the transaction ends with `for_update`, where the database
    locks rows); 404 if there is none."""
    row = await session.get(model, ident, with_for_update=for_update or None)
    if row is None:
        raise NotFound(f"no such {table_of(model).name[:-1]}")
    return row


def apply(row: Any, changes: dict[str, Any]) -> list[str]:
    """Set the changed fields; returns their names."""
    changed = [k for k, v in changes.items() if getattr(row, k) != v]
    for name in changed:
        setattr(row, name, changes[name])
    if changed:
        row.updated_at = utcnow()
    return changed


async def audit(session: AsyncSession, actor: Actor, environment_id: uuid.UUID, action: str,
                subject: Any, **details: Any) -> None:
    await append_async(session, environment_id, action, actor, subject.__tablename__[:-1],
                       subject.id, **details)


async def create_environment(session: AsyncSession, actor: Actor, name: str,
                             consent_templates: list[str] | None) -> Environment:
    environment = Environment(name=name, consent_templates=consent_templates)
    session.add(environment)
    await session.flush()
    await audit(session, actor, environment.id, "environment.created", environment, name=name,
                consent_templates=consent_templates)
    return environment


async def update_environment(session: AsyncSession, actor: Actor, environment: Environment,
                             changes: dict[str, Any]) -> dict[str, int]:
    changed = apply(environment, changes)
    session.add(environment)
    await session.flush()
    if changed:
        await audit(session, actor, environment.id, "environment.updated", environment,
                    changed_fields=changed, consent_templates=environment.consent_templates)
    if "consent_templates" in changed:
        return await reconcile(session, actor, environment_id=environment.id)
    return {"suspended": 0, "resumed": 0}


async def create_debtor(session: AsyncSession, actor: Actor, environment: Environment,
                        fields: dict[str, Any]) -> Debtor:
    debtor = Debtor(environment_id=environment.id, **fields)
    session.add(debtor)
    await session.flush()
    await audit(session, actor, environment.id, "debtor.created", debtor, name=debtor.name)
    return debtor


async def update_debtor(session: AsyncSession, actor: Actor, debtor: Debtor,
                        changes: dict[str, Any]) -> Debtor:
    changed = apply(debtor, changes)
    session.add(debtor)
    if changed:
        await audit(session, actor, debtor.environment_id, "debtor.updated", debtor,
                    changed_fields=changed)
        emit(session, "company.updated", debtor.environment_id, debtor_id=debtor.id,
             changed_fields=changed)
    await session.flush()
    return debtor


async def create_company(session: AsyncSession, actor: Actor, debtor: Debtor,
                         fields: dict[str, Any]) -> Company:
    company = Company(environment_id=debtor.environment_id, debtor_id=debtor.id, **fields)
    session.add(company)
    await session.flush()
    await audit(session, actor, debtor.environment_id, "company.created", company,
                debtor_id=str(debtor.id), name=company.name)
    return company


async def update_company(session: AsyncSession, actor: Actor, company: Company,
                         changes: dict[str, Any]) -> Company:
    changed = apply(company, changes)
    session.add(company)
    if changed:
        await audit(session, actor, company.environment_id, "company.updated", company,
                    changed_fields=changed)
        emit(session, "company.updated", company.environment_id, debtor_id=company.debtor_id,
             company_id=company.id, changed_fields=changed)
    await session.flush()
    return company


async def _placement(session: AsyncSession, environment_id: uuid.UUID, template: UserTemplate,
                     debtor_id: uuid.UUID | None, company_ids: list[uuid.UUID]
                     ) -> uuid.UUID | None:
    """Check where a user of `template` sits; returns the user's debtor."""
    if template == UserTemplate.ACCOUNTANT:
        if debtor_id is not None or company_ids:
            raise Invalid("an accountant reaches the whole environment: no debtor or companies")
        return None
    companies = await DirectoryRepository(session).companies(company_ids)
    if len(companies) != len(set(company_ids)) or any(
        c.environment_id != environment_id for c in companies
    ):
        raise Invalid("unknown company", field="company_ids")
    debtors = {c.debtor_id for c in companies}
    if template in COMPANY_TEMPLATES:
        if not companies:
            raise Invalid(f"a {template.value} user needs at least one company",
                          field="company_ids")
        if len(debtors) > 1 or (debtor_id is not None and debtor_id not in debtors):
            raise Invalid("the companies must all belong to the user's debtor",
                          field="company_ids")
        return debtors.pop()
    if debtor_id is None:
        raise Invalid(f"a {template.value} user needs a debtor", field="debtor_id")
    debtor = await session.get(Debtor, debtor_id)
    if debtor is None or debtor.environment_id != environment_id:
        raise Invalid("unknown debtor", field="debtor_id")
    if template == UserTemplate.MASTER_CLIENT and companies:
        raise Invalid("a master client reaches every company of its debtor: no companies")
    if debtors - {debtor_id}:
        raise Invalid("the companies must belong to the user's debtor", field="company_ids")
    return debtor_id


async def _password_hash(password: str | None) -> str:
    # Without a password the user cannot log in with one (the SaaS may set it later).
    return await run_in_threadpool(hash_password, password or secrets.token_urlsafe(32))


async def create_user(session: AsyncSession, actor: Actor, environment: Environment,
                      body: UserIn) -> User:
    repo = DirectoryRepository(session)
    if not may_use_email(body.email, environment):
        raise Invalid("addresses on this domain are reserved for partner sandboxes",
                      field="email")
    if await repo.email_taken(body.email):
        raise Conflict("a user with this email exists", field="email")
    debtor_id = await _placement(session, environment.id, body.template, body.debtor_id,
                                 body.company_ids)
    user = User(environment_id=environment.id, email=body.email, name=body.name,
                template=body.template, debtor_id=debtor_id, active=body.active,
                password_hash=await _password_hash(body.password))
    session.add(user)
    await session.flush()
    await repo.set_user_companies(user.id, body.company_ids)
    await audit(session, actor, environment.id, "user.created", user,
                template=user.template.value, active=user.active)
    return user


async def update_user(session: AsyncSession, actor: Actor, user: User, patch: UserPatch
                      ) -> dict[str, int]:
    """Change a user; suspends or resumes their connections as the rules say."""
    repo = DirectoryRepository(session)
    given = patch.model_dump(exclude_unset=True)
    old_companies = await repo.user_company_ids(user.id)
    changes: dict[str, Any] = {}
    company_ids = old_companies
    # Where the user sits is checked only when the patch moves them: a deactivation or a
    # new password must work for every user, also one whose stored rows an older
    # version or a seed left in another shape (a master client with company rows).
    if PLACEMENT & given.keys():
        template = given.get("template") or user.template
        company_ids = given.get("company_ids", old_companies)
        if template in WHOLE_DEBTOR_TEMPLATES and "company_ids" not in given:
            company_ids = []  # they reach by debtor or environment, never by company rows
        debtor_id = given.get("debtor_id", user.debtor_id
                              if template != UserTemplate.ACCOUNTANT else None)
        if template in COMPANY_TEMPLATES and "debtor_id" not in given:
            debtor_id = None
        debtor_id = await _placement(session, user.environment_id, template, debtor_id,
                                     company_ids)
        changes.update(template=template, debtor_id=debtor_id)
    for name in ("name", "active"):
        if given.get(name) is not None:
            changes[name] = given[name]
    changed = apply(user, changes)
    if patch.password is not None:
        user.password_hash = await _password_hash(patch.password)
        changed.append("password")
    session.add(user)
    await session.flush()
    if sorted(set(company_ids)) != old_companies:
        await repo.set_user_companies(user.id, company_ids)
        changed.append("company_ids")
    if changed:
        await audit(session, actor, user.environment_id, "user.updated", user,
                    changed_fields=changed)
    if "active" in changed:
        unit_of_work(session).publish_status(Subject.USER, user.id, user.active)
    if patch.password is not None or given.get("active") is False:
        await sign_out_everywhere(session, user)
    counts = await reconcile(session, actor, user_id=user.id)
    if {"company_ids", "debtor_id", "template"} & set(changed):
        counts["narrowed"] = await narrow_to_reach(session, user, actor)
    return counts


async def sign_out_everywhere(session: AsyncSession, user: User) -> None:
    """A new password or a deactivation ends what the user was logged in to: their
    login sessions and their first-party token families (after the commit). Their
    third-party connections follow the connection rules instead (`reconcile`)."""
    work = unit_of_work(session)
    for family_id in await revoke_first_party_families(session, user.id):
        work.publish_status(Subject.FAMILY, family_id, False)
    work.sign_out(user.id)


async def list_users(session: AsyncSession, key: bytes, environment: Environment,
                     cursor: str | None, limit: int, template: UserTemplate | None,
                     active: bool | None) -> tuple[list[User], str | None]:
    """A page of the environment's users, in id (creation) order."""
    check_limit(limit)
    after = after_id(key, "users", cursor)
    users = await DirectoryRepository(session).users(environment.id, after, limit + 1,
                                                     template, active)
    more = len(users) > limit
    users = users[:limit]
    return users, id_cursor(key, "users", users[-1].id) if more else None
