"""The registration API's documents as the OpenAPI document shows them (RFC 7591/7592).

The endpoints validate bodies themselves (services/registry/apps/metadata.py) so that
errors keep the RFC 7591 format; these models only describe the shapes.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from services.registry.apps.metadata import MAX_JWKS_KEYS, MAX_URI_LENGTH, MAX_URIS
from shared.oauth import ClientAuthMethod

GrantType = Literal["authorization_code", "refresh_token", "client_credentials"]


def _uri() -> Any:
    return Field(default=None, max_length=MAX_URI_LENGTH, description="an https URI")


class ClientMetadataIn(BaseModel):
    """Client metadata (RFC 7591 section 2) as a registration request sends it."""

    model_config = ConfigDict(title="ClientMetadata")

    client_name: str = Field(min_length=1, max_length=200)
    redirect_uris: list[str] = Field(
        default_factory=list, max_length=MAX_URIS,
        description="https URIs (http on a loopback address only), without a fragment; "
                    "required with authorization_code")
    grant_types: list[GrantType] = Field(default=["authorization_code"], min_length=1)
    response_types: list[Literal["code"]] | None = Field(
        default=None, description='["code"] with authorization_code, else empty')
    token_endpoint_auth_method: ClientAuthMethod = "client_secret_basic"
    scope: str = Field(default="", max_length=2000,
                       description="space-separated scopes from the consent catalogue")
    contacts: list[str] = Field(default_factory=list, max_length=MAX_URIS)
    client_uri: str | None = _uri()
    logo_uri: str | None = _uri()
    policy_uri: str | None = _uri()
    tos_uri: str | None = _uri()
    jwks_uri: str | None = Field(default=None, max_length=MAX_URI_LENGTH,
                                 description="for private_key_jwt (or jwks)")
    jwks: dict[str, Any] | None = Field(
        default=None, description=f"for private_key_jwt: 1 to {MAX_JWKS_KEYS} public keys")
    id_token_signed_response_alg: Literal["RS256", "ES256"] | None = Field(
        default=None, description="the algorithm of the client's ID tokens; default RS256")
    post_logout_redirect_uris: list[str] = Field(
        default_factory=list, max_length=MAX_URIS,
        description="where the browser may go after an RP-initiated logout")
    require_pushed_authorization_requests: bool = Field(
        default=False, description="authorization requests only through PAR (RFC 9126)")
    dpop_bound_access_tokens: bool = Field(
        default=False, description="access tokens always DPoP-bound (RFC 9449)")


class ClientUpdateIn(ClientMetadataIn):
    """An RFC 7592 update: the whole metadata again, with the client's id."""

    model_config = ConfigDict(title="ClientUpdate")

    client_id: str = Field(description="must be the client's own id")
    client_secret: str | None = Field(default=None,
                                      description="if sent, must be the current secret")


class ClientInformation(BaseModel):
    """The registered client (RFC 7591 section 3.2.1, RFC 7592 section 3)."""

    client_id: str
    client_id_issued_at: int
    client_name: str
    redirect_uris: list[str]
    grant_types: list[str]
    response_types: list[str]
    token_endpoint_auth_method: str
    scope: str
    contacts: list[str]
    client_uri: str | None = None
    logo_uri: str | None = None
    policy_uri: str | None = None
    tos_uri: str | None = None
    jwks_uri: str | None = None
    jwks: dict[str, Any] | None = None
    id_token_signed_response_alg: str | None = None
    post_logout_redirect_uris: list[str] = []
    require_pushed_authorization_requests: bool = False
    dpop_bound_access_tokens: bool = False
    client_secret: str | None = Field(
        default=None, description="shown once: at registration, or when the client turns "
                                  "confidential")
    client_secret_expires_at: int | None = None
    registration_access_token: str | None = Field(
        default=None, description="shown once: at registration and after each update (the "
                                  "update rotates it; the old one stops working)")
    registration_client_uri: str


class RegistrationErrorOut(BaseModel):
    """An RFC 7591 section 3.2.2 error (also the answer to a bad bearer token)."""

    error: str = Field(examples=["invalid_redirect_uri", "invalid_client_metadata",
                                 "invalid_token"])
    error_description: str


def body(model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` declaring `model` as the JSON request body."""
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": model.model_json_schema()}}}}
