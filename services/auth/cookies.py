"""The auth service's browser cookies: one way to set them."""

from __future__ import annotations

from fastapi import Response

from shared.runtime import Runtime


def set_cookie(
    runtime: Runtime, response: Response, name: str, value: str, *, max_age: int
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        httponly=True,
        samesite="lax",
        path="/",
        secure=runtime.settings.issuer.startswith("https://"),
    )
