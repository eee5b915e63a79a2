"""Where templates live, and the Jinja2 environments that read them."""

from __future__ import annotations

from functools import lru_cache

from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from app import resources

TEMPLATES_DIR = resources.TEMPLATES


@lru_cache
def pages() -> Jinja2Templates:
    """Templates for the public HTML pages (autoescaped)."""
    return Jinja2Templates(directory=str(TEMPLATES_DIR / "pages"))


@lru_cache
def mail_env() -> Environment:
    """Email templates: HTML autoescaped, text not; a missing variable is an error, not blank."""
    return Environment(
        loader=FileSystemLoader(str(TEMPLATES_DIR / "email")),
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
