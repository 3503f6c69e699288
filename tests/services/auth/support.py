"""Driving the running auth service the way a browser and a partner app do.

`Browser` keeps cookies and follows nothing by itself, so every step (authorize, login,
consent, the redirect back to the app) is visible to the test. Forms are read from the
HTML the server sends, like a user agent would.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from tests.fixtures.auth_server import AuthServer, Client

DEFAULT_SCOPE = "employee.info.read offline_access"


# ---- PKCE and authorization requests ------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True)
class Pkce:
    """An RFC 7636 verifier and its S256 challenge, computed here, not by the server."""

    verifier: str
    challenge: str

    @classmethod
    def new(cls) -> Pkce:
        verifier = secrets.token_urlsafe(48)
        return cls(verifier, b64url(hashlib.sha256(verifier.encode()).digest()))


@dataclass
class AuthRequest:
    """One authorization request of `client`, with its state and PKCE pair."""

    client: Client
    scope: str = DEFAULT_SCOPE
    redirect_uri: str | None = None
    state: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    pkce: Pkce = field(default_factory=Pkce.new)
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def target(self) -> str:
        """Where the answer goes: the given redirect URI, else the registered one."""
        return self.redirect_uri or self.client.redirect_uri

    def params(self, **overrides: str | None) -> dict[str, str]:
        """The query; an override of None leaves that parameter out."""
        params: dict[str, str | None] = {
            "response_type": "code",
            "client_id": self.client.client_id,
            "redirect_uri": self.target,
            "scope": self.scope,
            "state": self.state,
            "code_challenge": self.pkce.challenge,
            "code_challenge_method": "S256",
            **self.extra,
            **overrides,
        }
        return {k: v for k, v in params.items() if v is not None}


# ---- Reading HTML -------------------------------------------------------------------


@dataclass
class Form:
    action: str
    method: str
    fields: list[tuple[str, str]] = field(default_factory=list)
    buttons: list[tuple[str, str]] = field(default_factory=list)

    def value(self, name: str) -> str:
        return next(v for k, v in self.fields if k == name)

    def values(self, name: str) -> list[str]:
        return [v for k, v in self.fields if k == name]


class _PageParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []
        self.assets: list[str] = []
        self.links: list[str] = []
        self.scopes: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append(Form(a.get("action", ""), a.get("method", "get").lower()))
        elif tag == "input" and self.forms and "name" in a:
            kind = a.get("type", "text").lower()
            if kind not in ("radio", "checkbox") or "checked" in a:
                self.forms[-1].fields.append((a["name"], a.get("value", "")))
        elif tag == "button" and self.forms and "name" in a:
            self.forms[-1].buttons.append((a["name"], a.get("value", "")))
        if tag in ("img", "script", "iframe", "source", "video", "audio") and "src" in a:
            self.assets.append(a["src"])
        if tag == "link" and "href" in a:
            self.assets.append(a["href"])
        if tag == "a" and "href" in a:
            self.links.append(a["href"])
        if "data-scope" in a:
            self.scopes.append(a["data-scope"])
        if "data-error" in a:
            self.errors.append(a["data-error"])


def parse_page(html: str) -> _PageParser:
    parser = _PageParser()
    parser.feed(html)
    parser.close()
    return parser


def only_form(response: httpx.Response) -> Form:
    """The page's form: its only one, or the one that posts back to the page's own path
    (a consent page also has the "use another account" form, to /switch-account)."""
    forms = parse_page(response.text).forms
    if len(forms) > 1:
        forms = [f for f in forms if f.action == urlsplit(str(response.url)).path]
    assert len(forms) == 1, f"expected one form, got {len(forms)}: {response.text[:500]}"
    return forms[0]


def form_to(response: httpx.Response, action: str) -> Form:
    """The page's one form that posts to `action`."""
    forms = [f for f in parse_page(response.text).forms if f.action == action]
    assert len(forms) == 1, f"expected one form to {action}: {response.text[:500]}"
    return forms[0]


def shown_scopes(response: httpx.Response) -> list[str]:
    """The scopes a consent page lists."""
    return parse_page(response.text).scopes


# ---- Answers sent back to the app ---------------------------------------------------


def callback_params(location: str, redirect_uri: str) -> dict[str, str]:
    """The query of a redirect to the app, after checking it goes to `redirect_uri`."""
    parts = urlsplit(location)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == redirect_uri, location
    assert not parts.fragment, location
    query = parse_qs(parts.query, keep_blank_values=True)
    assert all(len(v) == 1 for v in query.values()), f"repeated parameters: {location}"
    return {k: v[0] for k, v in query.items()}


# ---- The user agent -----------------------------------------------------------------


@dataclass(frozen=True)
class Tree:
    """An environment with its debtors and, per debtor, its companies (ids)."""

    environment_id: str
    debtors: list[tuple[str, list[str]]]


@dataclass
class User:
    id: str
    email: str
    password: str
    template: str


@dataclass
class Linked:
    """How an authorization ended: the redirect to the app, and the pages on the way."""

    location: str
    pages: list[str]
    scopes_shown: list[str]
    params: dict[str, str]


class Browser:
    """A user agent with its own cookie jar and (optionally) its own source address."""

    def __init__(self, server: AuthServer, source: str = "127.0.0.1") -> None:
        self.server = server
        self.http = httpx.Client(
            base_url=server.url, follow_redirects=False, timeout=30,
            transport=httpx.HTTPTransport(local_address=source),
        )

    def close(self) -> None:
        self.http.close()

    def authorize(self, request: AuthRequest, **overrides: str | None) -> httpx.Response:
        return self.http.get("/authorize", params=request.params(**overrides))

    def follow(self, response: httpx.Response) -> httpx.Response:
        """Follow a redirect that stays on the auth service (login or consent)."""
        assert response.status_code in (302, 303), (response.status_code, response.text[:300])
        location = response.headers["location"]
        assert location.startswith("/") and not location.startswith("//"), location
        return self.http.get(location)

    def submit(self, page: httpx.Response, *, decision: str | None = None,
               **overrides: str | list[str] | None) -> httpx.Response:
        """Post the page's form: its own fields, with `overrides` replacing or adding
        some (None removes a field)."""
        form = only_form(page)
        data: dict[str, Any] = {}
        for name, value in form.fields:
            data.setdefault(name, []).append(value)
        if decision is not None:
            assert ("decision", decision) in form.buttons, form.buttons
            data["decision"] = [decision]
        for name, value in overrides.items():
            if value is None:
                data.pop(name, None)
            else:
                data[name] = value if isinstance(value, list) else [value]
        return self.http.request(form.method.upper(), form.action, data=data)

    def login(self, login_page: httpx.Response, user: User, password: str | None = None
              ) -> httpx.Response:
        assert login_page.status_code == 200, login_page.text[:300]
        return self.submit(login_page, username=user.email,
                           password=password if password is not None else user.password)

    def link(self, request: AuthRequest, user: User | None = None, *,
             decision: str = "allow") -> Linked:
        """Authorize, log in if asked, decide on the consent page if shown; the end is
        the redirect back to the app."""
        return self.walk(self.authorize(request), request.target, user, decision=decision)

    def walk(self, response: httpx.Response, target: str, user: User | None = None, *,
             decision: str = "allow") -> Linked:
        """Go on from an answer of /authorize until the browser leaves for `target`."""
        pages: list[str] = []
        shown: list[str] = []
        for _ in range(6):
            location = response.headers.get("location", "")
            if response.status_code in (302, 303) and not location.startswith("/"):
                return Linked(location, pages, shown, callback_params(location, target))
            page = self.follow(response)
            path = urlsplit(str(page.url)).path
            if path == "/login" and page.status_code == 200:
                assert user is not None, "the server asked for a login"
                pages.append("login")
                response = self.login(page, user)
                assert response.status_code == 303, (response.status_code, response.text[:500])
            elif path == "/consent" and page.status_code == 200:
                pages.append("consent")
                shown = shown_scopes(page)
                response = self.submit(page, decision=decision)
            elif page.status_code in (302, 303):
                response = page
            else:
                raise AssertionError(f"stuck at {path}: {page.status_code} {page.text[:500]}")
        raise AssertionError("too many steps")

    def log_in(self, request: AuthRequest, user: User) -> httpx.Response:
        """Authorize and log in; returns the answer to the login POST."""
        login_page = self.follow(self.authorize(request))
        response = self.login(login_page, user)
        assert response.status_code == 303, response.text[:500]
        return response


# ---- The partner app's back channel -------------------------------------------------


def client_auth(client: Client, data: dict[str, str]) -> tuple[dict[str, str], Any]:
    """The form and the httpx `auth` for the client's token endpoint auth method."""
    if client.auth_method == "client_secret_basic":
        return data, (client.client_id, client.secret)
    if client.auth_method == "client_secret_post":
        return {**data, "client_id": client.client_id, "client_secret": client.secret}, None
    return {**data, "client_id": client.client_id}, None


def post_form(server: AuthServer, path: str, client: Client, data: dict[str, str],
              source: str = "127.0.0.1", headers: dict[str, str] | None = None
              ) -> httpx.Response:
    form, auth = client_auth(client, data)
    with httpx.Client(transport=httpx.HTTPTransport(local_address=source), timeout=30) as http:
        return http.post(f"{server.url}{path}", data=form, auth=auth, headers=headers)


def exchange(server: AuthServer, request: AuthRequest, code: str,
             client: Client | None = None, **overrides: str | None) -> httpx.Response:
    """Redeem `code` as the token request for `request` (overrides change the form)."""
    data: dict[str, str | None] = {
        "grant_type": "authorization_code", "code": code,
        "redirect_uri": request.target, "code_verifier": request.pkce.verifier, **overrides,
    }
    form = {k: v for k, v in data.items() if v is not None}
    return post_form(server, "/token", client or request.client, form)


def push(server: AuthServer, request: AuthRequest, /, **overrides: str | None
         ) -> httpx.Response:
    """The pushed authorization request (RFC 9126) of `request`, authenticated as its
    client authenticates at the token endpoint; overrides change the form."""
    return post_form(server, "/par", request.client, request.params(**overrides))


def pushed_authorize(agent: Browser, client_id: str, request_uri: str, **extra: str
                     ) -> httpx.Response:
    """/authorize with a pushed request's `request_uri` (RFC 9126 section 4)."""
    return agent.http.get("/authorize", params={"client_id": client_id,
                                                "request_uri": request_uri, **extra})


def refresh(server: AuthServer, client: Client, refresh_token: str, **extra: str
            ) -> httpx.Response:
    return post_form(server, "/token", client,
                     {"grant_type": "refresh_token", "refresh_token": refresh_token, **extra})


def introspect(server: AuthServer, client: Client, token: str) -> dict[str, Any]:
    response = post_form(server, "/introspect", client, {"token": token})
    assert response.status_code == 200, response.text
    return response.json()


def revoke(server: AuthServer, client: Client, token: str) -> httpx.Response:
    return post_form(server, "/revoke", client, {"token": token})


def oauth_error(response: httpx.Response) -> str:
    assert response.headers["content-type"].startswith("application/json"), response.text
    return response.json()["error"]


def authorization_code(agent: Browser, request: AuthRequest, user: User | None) -> str:
    """Link (logging in and consenting as needed) and return the code sent to the app."""
    linked = agent.link(request, user)
    assert "code" in linked.params, linked.location
    return linked.params["code"]


def obtain_tokens(server: AuthServer, agent: Browser, request: AuthRequest,
                  user: User | None) -> dict[str, Any]:
    """The token response for a fresh authorization of `request`."""
    response = exchange(server, request, authorization_code(agent, request, user))
    assert response.status_code == 200, response.text
    return response.json()


def verified_jwt(server: AuthServer, token: str, alg: str) -> tuple[dict, dict]:
    """Header and claims of a JWT whose signature checks out against the server's JWKS
    (found through discovery)."""
    from joserfc import jwt
    from joserfc.jwk import KeySet

    metadata = httpx.get(f"{server.url}/.well-known/openid-configuration").json()
    keys = KeySet.import_key_set(httpx.get(metadata["jwks_uri"]).json())
    decoded = jwt.decode(token, keys, algorithms=[alg])
    return decoded.header, decoded.claims
