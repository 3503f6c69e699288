"""Which peers may say who the client is (issue 14, finding 8).

`X-Forwarded-For` and `X-Forwarded-Proto` are believed only from the proxies in
`KOPPEL_TRUSTED_PROXIES`; uvicorn's own handling (which trusts 127.0.0.1 by default) is
off in `koppel serve`. With the setting empty, the client address of a request, and so
the address the per-address limits count, is always the connecting peer's.
"""

from __future__ import annotations

from fastapi import FastAPI
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from shared.config import Settings


def trust_forwarded_headers(app: FastAPI, settings: Settings) -> None:
    """Take the client address and scheme from forwarded headers, only when the request
    comes from a trusted proxy (the first untrusted address from the right is the client)."""
    if settings.trusted_proxies:
        app.add_middleware(ProxyHeadersMiddleware,
                           trusted_hosts=[str(network) for network in settings.trusted_proxies])
