"""`koppel directory ...`: provisioning for operators (docs/product.md 5.7), the same rules as the
registry's directory API (it runs the same service functions): a deactivated user, or a
template that may not consent, suspends their connections at once and publishes the new
status after the commit; undoing it resumes them. A new password or a deactivation ends
the user's login sessions and first-party token families after the commit. Every change
is audited as `operator`.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer
from pydantic import ValidationError
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from cli.context import ensure_sqlite_dir, flush_after_commit, load_settings
from cli.output import CliError, emit_json, handle_errors, stdout
from services.registry.directory import service
from services.registry.directory.repository import DirectoryRepository
from services.registry.directory.schemas import UserIn, UserPatch
from shared.audit import Actor
from shared.config import Settings
from shared.db.engine import async_session_factory, create_async_db_engine
from shared.errors import KoppelError
from shared.models import Company, Debtor, Environment, User, UserTemplate
from shared.unit_of_work import UnitOfWork

app = typer.Typer(help="Environments, debtors, companies and users (provisioning).",
                  no_args_is_help=True)
environment_app = typer.Typer(help="Environments (tenants).", no_args_is_help=True)
debtor_app = typer.Typer(help="Debtors of an environment.", no_args_is_help=True)
company_app = typer.Typer(help="Payroll companies of a debtor.", no_args_is_help=True)
user_app = typer.Typer(help="Users (logins).", no_args_is_help=True)
app.add_typer(environment_app, name="environment")
app.add_typer(debtor_app, name="debtor")
app.add_typer(company_app, name="company")
app.add_typer(user_app, name="user")

OPERATOR = Actor("operator")
R = TypeVar("R")
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]
Template = Annotated[UserTemplate, typer.Option("--template", help="The user's template.")]


async def _in_transaction(settings: Settings,
                          work: Callable[[AsyncSession], Awaitable[R]]) -> R:
    """Run `work` in one transaction; publish status changes and nudge the relay after."""
    ensure_sqlite_dir(settings)
    engine = create_async_db_engine(settings.resolved_database_url, pool_size=1)
    try:
        async with async_session_factory(engine)() as session:
            try:
                result = await work(session)
                await session.commit()
            except KoppelError as exc:
                await session.rollback()
                raise CliError(exc.detail) from None
            except ValidationError as exc:
                await session.rollback()
                raise CliError("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                                         for e in exc.errors())) from None
    finally:
        await engine.dispose()
    await flush_after_commit(settings, UnitOfWork.detach(session))
    return result


def _run(work: Callable[[AsyncSession], Awaitable[dict]], as_json: bool) -> None:
    document = asyncio.run(_in_transaction(load_settings(), work))
    if as_json:
        emit_json(document)
        return
    console = stdout()
    for key, value in document.items():
        console.print(f"{key}: {value}", highlight=False)


def _uuid(text: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise CliError(f"{what} must be an id (UUID), not {text!r}") from None


async def _find_user(session: AsyncSession, reference: str) -> User:
    """A user by id or email."""
    if "@" in reference:
        user = (await session.exec(select(User).where(User.email == reference.lower()))).first()
        if user is None:
            raise CliError(f"no user with email {reference!r}")
        return user
    user = await session.get(User, _uuid(reference, "USER"))
    if user is None:
        raise CliError(f"no user {reference}")
    return user


def _environment_doc(environment: Environment) -> dict:
    return {"id": str(environment.id), "name": environment.name,
            "consent_templates": environment.consent_templates}


def _row_doc(row: Debtor | Company) -> dict:
    doc = {"id": str(row.id), "environment_id": str(row.environment_id), "name": row.name,
           "number": row.number}
    if isinstance(row, Company):
        doc["debtor_id"] = str(row.debtor_id)
    return doc


async def _user_doc(session: AsyncSession, user: User) -> dict:
    company_ids = await DirectoryRepository(session).user_company_ids(user.id)
    return {"id": str(user.id), "environment_id": str(user.environment_id),
            "email": user.email, "name": user.name, "template": str(user.template),
            "debtor_id": str(user.debtor_id) if user.debtor_id else None,
            "company_ids": [str(c) for c in company_ids], "active": user.active}


@environment_app.command("create")
@handle_errors
def create_environment(
    name: Annotated[str, typer.Argument(help="The environment's name.")],
    consent_templates: Annotated[list[UserTemplate] | None, typer.Option(
        "--consent-template", help="A template that may consent (repeat it); default: "
        "the templates of docs/product.md section 3.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Create an environment (a tenant)."""
    if not name.strip():
        raise CliError("the name is empty")
    templates = sorted({t.value for t in consent_templates}) if consent_templates else None

    async def work(session: AsyncSession) -> dict:
        environment = await service.create_environment(session, OPERATOR, name.strip(),
                                                       templates)
        return {"environment": _environment_doc(environment)}

    _run(work, as_json)


@debtor_app.command("create")
@handle_errors
def create_debtor(
    name: Annotated[str, typer.Argument(help="The debtor's name.")],
    environment: Annotated[str, typer.Option("--environment", help="The environment's id.")],
    number: Annotated[str, typer.Option("--number", help="The debtor's number.")],
    as_json: JsonOption = False,
) -> None:
    """Add a debtor to an environment."""
    if not name.strip() or not number.strip():
        raise CliError("the name and the number must not be empty")

    async def work(session: AsyncSession) -> dict:
        env = await service.get(session, Environment, _uuid(environment, "--environment"))
        debtor = await service.create_debtor(session, OPERATOR, env,
                                             {"name": name.strip(), "number": number.strip()})
        return {"debtor": _row_doc(debtor)}

    _run(work, as_json)


@company_app.command("create")
@handle_errors
def create_company(
    name: Annotated[str, typer.Argument(help="The company's name.")],
    debtor: Annotated[str, typer.Option("--debtor", help="The debtor's id.")],
    number: Annotated[str, typer.Option("--number", help="The company's number.")],
    as_json: JsonOption = False,
) -> None:
    """Add a payroll company to a debtor."""
    if not name.strip() or not number.strip():
        raise CliError("the name and the number must not be empty")

    async def work(session: AsyncSession) -> dict:
        row = await service.get(session, Debtor, _uuid(debtor, "--debtor"))
        company = await service.create_company(session, OPERATOR, row,
                                               {"name": name.strip(), "number": number.strip()})
        return {"company": _row_doc(company)}

    _run(work, as_json)


def _company_ids(values: list[str] | None) -> list[uuid.UUID]:
    return [_uuid(v, "--company") for v in values or []]


@user_app.command("create")
@handle_errors
def create_user(
    email: Annotated[str, typer.Argument(help="The login name (email).")],
    environment: Annotated[str, typer.Option("--environment", help="The environment's id.")],
    template: Template,
    name: Annotated[str | None, typer.Option("--name", help="Display name.")] = None,
    debtor: Annotated[str | None, typer.Option(
        "--debtor", help="The debtor (master client, employee).")] = None,
    companies: Annotated[list[str] | None, typer.Option(
        "--company", help="A company the user reaches (repeat it).")] = None,
    inactive: Annotated[bool, typer.Option("--inactive", help="Create it deactivated.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Add a user with a template, and the debtor or companies the template needs. The user
    has no usable password until one is set (the SaaS's own login flow does that)."""

    async def work(session: AsyncSession) -> dict:
        env = await service.get(session, Environment, _uuid(environment, "--environment"))
        body = UserIn(email=email, name=name or email.split("@")[0], template=template,
                      debtor_id=_uuid(debtor, "--debtor") if debtor else None,
                      company_ids=_company_ids(companies), active=not inactive)
        user = await service.create_user(session, OPERATOR, env, body)
        return {"user": await _user_doc(session, user)}

    _run(work, as_json)


@user_app.command("set")
@handle_errors
def set_user(
    user: Annotated[str, typer.Argument(metavar="USER", help="The user's id or email.")],
    template: Annotated[UserTemplate | None, typer.Option(
        "--template", help="A new template.")] = None,
    active: Annotated[bool | None, typer.Option(
        "--active/--inactive", help="Reactivate or deactivate the user.")] = None,
    debtor: Annotated[str | None, typer.Option("--debtor", help="A new debtor.")] = None,
    companies: Annotated[list[str] | None, typer.Option(
        "--company", help="The companies the user reaches from now on (repeat it).")] = None,
    name: Annotated[str | None, typer.Option("--name", help="A new display name.")] = None,
    password_stdin: Annotated[bool, typer.Option(
        "--password-stdin", help="Set a new password, read from the first line of "
        "standard input (never from the command line).")] = False,
    as_json: JsonOption = False,
) -> None:
    """Change a user. Deactivating them, or a template that may not consent, suspends their
    connections at once; undoing it resumes them. Revoked connections stay revoked. A new
    password or a deactivation also ends the user's login sessions and first-party tokens."""
    given: dict[str, Any] = {"template": template, "active": active, "name": name,
                             "debtor_id": _uuid(debtor, "--debtor") if debtor else None,
                             "company_ids": _company_ids(companies) if companies else None}
    if password_stdin:
        given["password"] = typer.get_text_stream("stdin").readline().rstrip("\r\n")
        if not given["password"]:
            raise CliError("--password-stdin read no password")
    given = {k: v for k, v in given.items() if v is not None}
    if not given:
        raise CliError("nothing to change: give --template, --active/--inactive, --debtor, "
                       "--company, --name or --password-stdin")

    async def work(session: AsyncSession) -> dict:
        row = await _find_user(session, user)
        counts = await service.update_user(session, OPERATOR, row, UserPatch(**given))
        return {"user": await _user_doc(session, row), "connections": counts}

    _run(work, as_json)
