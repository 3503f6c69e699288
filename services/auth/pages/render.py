"""Rendering the HTML pages (Jinja2, autoescaped)."""

from __future__ import annotations

from pathlib import Path

from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from services.auth.pages.i18n import TEXT, long_date

_env = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(default=True),
)
_env.filters["long_date"] = long_date


def page(template: str, *, lang: str, status: int = 200, **context) -> HTMLResponse:
    """An HTML page in `lang`; never cached (it may carry a CSRF token)."""
    html = _env.get_template(template).render(t=TEXT[lang], lang=lang, **context)
    return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})
