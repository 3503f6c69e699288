"""FastAPI glue: an endpoint names its operation, and the declared policy answers.

    allowed = Authorizer(get_session)              # once per service (deps.py)
    Reader = Annotated[Caller, Depends(allowed("employees.read"))]

    @router.get("/v1/employees")
    async def list_employees(caller: Reader): ...

Routes that take another credential (or none), or that ask the policy in their body on
a fast path, name their operation with `declare`. `annotate_operations` copies each
route's operation into its OpenAPI operation (`x-koppel-operation`) and refuses to build
an app with a route that names none, so no route can escape the policy unnoticed.
"""
# No `from __future__ import annotations`: FastAPI must resolve the annotations of the
# dependencies defined inside the functions below.

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request, Security
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.security import HTTPBearer
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.auth_deps import (
    PrincipalDep,
    authenticate,
    bearer_token,
    get_usage_recorder,
    principal,
)
from shared.errors import Forbidden, Unauthorized
from shared.models import App, Partner, User
from shared.openapi import Document, amend, api_routes, operations
from shared.policy.callers import APPS, USERS
from shared.policy.reach import Caller
from shared.policy.resolve import authorize, consented_scope, resolve
from shared.policy.rules import RULES, Credential, Rule
from shared.tokens import Principal
from shared.vault import TokenKind, token_digest

OPERATION_KEY = "x-koppel-operation"
_ATTRIBUTE = "koppel_operation"


def _named(dependency: Callable, operation: str) -> Callable:
    setattr(dependency, _ATTRIBUTE, operation)
    dependency.__name__ = "policy_" + operation.replace(".", "_")
    return dependency


def declare(operation: str) -> Callable[[], Any]:
    """A dependency that only names the route's operation (it must be in the table)."""
    if operation not in RULES:
        raise KeyError(f"{operation!r} is not declared in shared/policy/rules.py")

    async def dependency() -> None:
        return None

    return _named(dependency, operation)


@dataclass(frozen=True)
class UserCaller:
    """A user calling through a first-party app, authorized for one operation."""

    principal: Principal
    user: User
    caller: Caller


@dataclass(frozen=True)
class AppCaller:
    """An app calling on its own behalf (client credentials), authorized for one
    operation."""

    principal: Principal
    app: App
    caller: Caller


@dataclass(frozen=True)
class PartnerCaller:
    """A partner acting for itself: with its initial access token (`app` None) or one
    of its apps' client-credentials tokens, authorized for one operation."""

    partner_id: uuid.UUID
    app: App | None
    caller: Caller | None


# Only document the two bearer credentials a partner's operation takes (the dependency
# reads the header itself): the access token, as `principal` documents it, and the
# partner's initial access token.
_access_token = HTTPBearer(auto_error=False, bearerFormat="JWT",
                           scheme_name=principal.scheme_name,
                           description=principal.model.description)
_initial_access_token = HTTPBearer(
    auto_error=False, scheme_name="InitialAccessToken",
    description="The partner's initial access token (koppel partner create)")


async def _partner_of_token(session: AsyncSession, request: Request, token: str) -> Partner:
    digest = token_digest(request.app.state.runtime.keyring.digest_key, token)
    partner = (await session.exec(
        select(Partner).where(Partner.initial_access_token_digest == digest))).first()
    if partner is None:
        exc = Unauthorized("the initial access token is wrong or revoked")
        exc.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
        raise exc
    return partner


async def note_scope_use(request: Request, caller: Caller, rule: Rule) -> None:
    """Note which consented scope a connection's call needed (shared/last_used.py: at most
    one Redis round trip per connection, scope and minute; never an error)."""
    if caller.connection_id is None:
        return
    scope = consented_scope(caller, rule)
    if scope is not None:
        await get_usage_recorder(request).scope_used(caller.connection_id, scope)


class Authorizer:
    """Makes, per operation, the dependency that resolves the caller on the service's
    request session and authorizes it by the declared rule (403 if not allowed)."""

    def __init__(self, session_dependency: Callable[..., Any], *, with_reach: bool) -> None:
        self.session_dependency = session_dependency
        self.with_reach = with_reach

    def __call__(self, operation: str) -> Callable[..., Any]:
        rule = RULES[operation]
        Session = Annotated[AsyncSession, Depends(self.session_dependency, scope="function")]

        async def dependency(request: Request, principal: PrincipalDep, session: Session
                             ) -> Caller:
            return await self.authorized(request, principal, session, rule)

        return _named(dependency, operation)

    async def authorized(self, request: Request, principal: Principal, session: AsyncSession,
                         rule: Rule) -> Caller:
        """The caller resolved on `session` and authorized by `rule` (403 if not allowed),
        its use of a consented scope noted: the work of the operation's dependency, for
        routes served without dependency solving (shared/direct_route.py)."""
        caller = authorize(await resolve(session, principal, with_reach=self.with_reach), rule)
        await note_scope_use(request, caller, rule)
        return caller

    def user(self, operation: str) -> Callable[..., Any]:
        """Like calling the authorizer, for an operation that only users may perform;
        gives the caller with its user row."""
        if not RULES[operation].callers <= USERS:
            raise ValueError(f"{operation} is not for users only")
        checked = self(operation)

        async def dependency(caller: Annotated[Caller, Depends(checked)]) -> UserCaller:
            assert caller.user is not None  # resolve() sets it for every user kind
            return UserCaller(caller.principal, caller.user, caller)

        return dependency

    def app(self, operation: str) -> Callable[..., Any]:
        """Like calling the authorizer, for an operation that only apps acting for
        themselves may perform; gives the caller with its app row."""
        if not RULES[operation].callers <= APPS:
            raise ValueError(f"{operation} is not for apps only")
        checked = self(operation)

        async def dependency(caller: Annotated[Caller, Depends(checked)]) -> AppCaller:
            assert caller.app is not None  # resolve() sets it for every app kind
            return AppCaller(caller.principal, caller.app, caller)

        return dependency


    def partner(self, operation: str) -> Callable[..., Any]:
        """For an operation of a partner's own (the rule allows partner apps and `also`
        the initial access token): the partner behind either credential. An initial
        access token (`kpiat_...`) is looked up by its digest; anything else is an
        access token, resolved and authorized by the rule like every other."""
        rule = RULES[operation]
        if rule.also != Credential.INITIAL_ACCESS_TOKEN or not rule.callers <= APPS:
            raise ValueError(f"{operation} is not a partner's operation")
        Session = Annotated[AsyncSession, Depends(self.session_dependency, scope="function")]
        prefix = TokenKind.INITIAL_ACCESS_TOKEN.value + "_"
        with_reach = self.with_reach

        async def dependency(request: Request, session: Session,
                             _a: Annotated[Any, Security(_access_token)],
                             _i: Annotated[Any, Security(_initial_access_token)]
                             ) -> PartnerCaller:
            token = bearer_token(request)
            if token.startswith(prefix):
                partner = await _partner_of_token(session, request, token)
                return PartnerCaller(partner.id, None, None)
            # An access token goes through the one authentication of every route: its
            # scheme, and a DPoP-bound token's proof (RFC 9449 section 7).
            principal = await authenticate(request)
            caller = authorize(await resolve(session, principal, with_reach=with_reach), rule)
            if caller.app is None or caller.app.partner_id is None:
                raise Forbidden("the app belongs to no partner")
            return PartnerCaller(caller.app.partner_id, caller.app, caller)

        return _named(dependency, operation)


def _operations(dependant: Dependant) -> Iterator[str]:
    operation = getattr(dependant.call, _ATTRIBUTE, None)
    if operation is not None:
        yield operation
    for sub in dependant.dependencies:
        yield from _operations(sub)


def route_operation(route: APIRoute) -> str | None:
    """The one operation a route names (ValueError if it names several)."""
    found = set(_operations(route.dependant))
    if len(found) > 1:
        raise ValueError(f"{route.path} names several operations: {sorted(found)}")
    return found.pop() if found else None


def _route_operations(app: FastAPI) -> dict[tuple[str, str], str | None]:
    """(method, path) -> the operation each API route of the app names (or None)."""
    return {(method, path): route_operation(route) for method, path, route in api_routes(app)}


def annotate_operations(app: FastAPI) -> None:
    """Publish each route's operation in the OpenAPI document (`x-koppel-operation`);
    refuse to build an app with a route that names none."""
    named = _route_operations(app)
    missing = sorted(f"{method.upper()} {path}" for (method, path), op in named.items()
                     if op is None)
    if missing:
        raise RuntimeError("routes without a declared operation (shared/policy): "
                           + ", ".join(missing))

    def change(document: Document) -> None:
        for method, path, operation in operations(document):
            operation[OPERATION_KEY] = named[(method, path)]

    amend(app, change)
