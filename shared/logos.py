"""Fetching an app's logo once, through the SSRF guard, and checking that it is an image.

Only raster formats are accepted, recognised by their first bytes (not by what the
server claims): SVG can carry script, and a mislabelled file must not pass.
"""

from __future__ import annotations

import hashlib

import aiohttp

from shared import ssrf

MAX_LOGO_BYTES = 256 * 1024
FETCH_TIMEOUT_S = 5.0


class LogoError(Exception):
    """The logo could not be used; the message is safe to show to the partner."""


def image_type(data: bytes) -> str | None:
    """The MIME type of a PNG, JPEG, GIF or WebP image, from its magic bytes."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


async def fetch_logo(url: str, *, allow_loopback: bool = False) -> tuple[str, bytes, str]:
    """The logo at `url`: (content type, bytes, sha256 hex), or LogoError."""
    try:
        response = await ssrf.request("GET", url, allow_loopback=allow_loopback,
                                      timeout=FETCH_TIMEOUT_S, max_body=MAX_LOGO_BYTES + 1)
    except ssrf.UnsafeURL as exc:
        raise LogoError(f"logo_uri is not allowed: {exc}") from None
    except (aiohttp.ClientError, TimeoutError):
        raise LogoError("logo_uri could not be fetched") from None
    if response.status != 200:
        raise LogoError(f"logo_uri answered {response.status}, not 200")
    if len(response.body) > MAX_LOGO_BYTES:
        raise LogoError(f"the logo is larger than {MAX_LOGO_BYTES // 1024} KiB")
    content_type = image_type(response.body)
    if content_type is None:
        raise LogoError("the logo must be a PNG, JPEG, GIF or WebP image")
    return content_type, response.body, hashlib.sha256(response.body).hexdigest()
