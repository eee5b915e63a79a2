"""Links to this server's own files (`/static/…`, uploaded `/media/…`) inside issues.

An issue stores them as paths relative to the app ("/media/ab12….png"), never with a host: the
host and port change (`PORT=8100 make run`, a move behind a proxy), the issue does not. They are
made absolute with the current base URL only when an issue is rendered (email, archive, preview,
PDF) or shown through the API, so every copy points at the server that serves it.

Issues stored before this rule carry absolute links to the base URL of the day. Those are still
recognised as our own and re-pointed at the current base URL when they certainly are: an
uploaded image's name is the hash of its bytes, so `/media/<hash>` that we hold is that image
whatever host was written in front of it; a loopback host (`127.0.0.1`, `localhost`) is one no
reader could ever reach, so its `/static/` or `/media/` file that we hold is ours too.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

from app.config import get_settings
from app.resources import STATIC

MEDIA_NAME = re.compile(r"[0-9a-f]{32}\.(png|jpg|gif|webp)")
_LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


def media_dir() -> Path:
    """Where uploaded images are kept."""
    return get_settings().var_dir / "media"


def is_app_path(url: str) -> bool:
    """True for a path on this server ("/static/x.png"), not a URL with a host ("//h/x")."""
    return url.startswith("/") and not url.startswith("//")


def local_file(path: str) -> Path | None:
    """The file on disk behind one of our own paths (`/static/…` or `/media/<name>`), or None
    when the path names no file we serve. Query and fragment are ignored."""
    path = path.split("?", 1)[0].split("#", 1)[0]
    if path.startswith("/media/"):
        name = path[len("/media/"):]
        if not MEDIA_NAME.fullmatch(name):
            return None
        media = media_dir() / name
        return media if media.is_file() else None
    if path.startswith("/static/"):
        root = STATIC.resolve()
        static = (root / path[len("/static/"):]).resolve()
        return static if static.is_relative_to(root) and static.is_file() else None
    return None


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


def own_path(url: str, base_url: str) -> str | None:
    """The app-relative path of `url` when it points at this server, else None: any URL on
    the base URL's origin, and the older links described in the module's docstring."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    path = parts.path or "/"
    tail = (f"?{parts.query}" if parts.query else "") + (
        f"#{parts.fragment}" if parts.fragment else "")
    if _origin(url) == _origin(base_url):
        # Below the base URL's own path, if it has one (Missive served under a prefix).
        prefix = urlsplit(base_url).path.rstrip("/")
        if prefix and not path.startswith(prefix + "/"):
            return None
        return path[len(prefix):] + tail
    if local_file(path) is None:
        return None
    if path.startswith("/media/") or (parts.hostname or "").lower() in _LOOPBACK:
        return path + tail
    return None


def for_storage(url: str, base_url: str) -> str:
    """What an issue stores for `url`: our own files as a path, anything else unchanged."""
    if is_app_path(url):
        return url
    return own_path(url, base_url) or url


def absolute(url: str, base_url: str) -> str:
    """`url` as a reader's copy carries it: our own paths on the current base URL."""
    if not is_app_path(url):
        path = own_path(url, base_url)
        if path is None:
            return url
        url = path
    return base_url.rstrip("/") + url
