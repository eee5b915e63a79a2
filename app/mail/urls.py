"""The mail URLs of the settings, parsed in one place: where mail goes and where bounces arrive.

Settings parse both when they load, so a typo stops `missive` at start with one line instead of
failing the first send hours later; the transports and the bounce mailbox build from the same
parse. Passwords stay `SecretStr`, so no repr or log line shows them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from pydantic import SecretStr

from app.errors import ConfigError

MAIL_SCHEMES = ("smtp", "smtps", "maildir")
TLS_MODES = ("none", "starttls", "ssl")


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    tls: str = "none"  # none | starttls | ssl
    username: str | None = None
    password: SecretStr | None = None
    pool: int = 4
    timeout: float = 30.0
    verify: bool = True


@dataclass(frozen=True)
class MaildirConfig:
    path: Path


@dataclass(frozen=True)
class MailboxConfig:
    """A bounce mailbox read over IMAP."""

    host: str
    port: int
    username: str
    password: SecretStr
    folder: str = "INBOX"
    failed_folder: str = "Missive-Unprocessed"
    tls: str = "ssl"  # ssl | starttls | none
    verify: bool = True
    timeout: float = 30.0

    @classmethod
    def from_url(cls, url: str | SecretStr) -> MailboxConfig:
        return parse_imap_url(url)


def _plain(url: str | SecretStr) -> str:
    return url.get_secret_value() if isinstance(url, SecretStr) else url


def _query(query: str) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(query).items()}


def _verify(query: dict[str, str]) -> bool:
    return query.get("verify", "1") not in ("0", "false", "no")


def parse_mail_url(url: str | SecretStr) -> SmtpConfig | MaildirConfig:
    """MISSIVE_MAIL_URL as a config, or ConfigError saying in one line what is wrong with it."""
    raw = _plain(url)
    parts = urlsplit(raw)
    if parts.scheme == "maildir":
        path = unquote(raw[len("maildir://"):])
        if not path:
            raise ConfigError("MISSIVE_MAIL_URL maildir:// needs a path")
        return MaildirConfig(Path(path).expanduser().resolve())
    if parts.scheme not in ("smtp", "smtps"):
        raise ConfigError(
            f"MISSIVE_MAIL_URL scheme {parts.scheme!r} is not smtp://, smtps:// or maildir://")
    query = _query(parts.query)
    tls = query.get("tls", "ssl" if parts.scheme == "smtps" else "none")
    if tls not in TLS_MODES:
        raise ConfigError(f"MISSIVE_MAIL_URL tls={tls!r} must be none, starttls or ssl")
    if not parts.hostname:
        raise ConfigError("MISSIVE_MAIL_URL needs a host, e.g. smtp://mail.example.org:587")
    pool_text = query.get("pool", "4")
    if not pool_text.isdigit() or not 1 <= int(pool_text) <= 1000:
        raise ConfigError(f"MISSIVE_MAIL_URL pool={pool_text!r} must be a number from 1 to 1000")
    try:
        port = parts.port or (465 if tls == "ssl" else 25)
    except ValueError:
        raise ConfigError("MISSIVE_MAIL_URL has a port that is not a number from 1 to 65535"
                          ) from None
    return SmtpConfig(
        host=parts.hostname, port=port, tls=tls,
        username=unquote(parts.username) if parts.username else None,
        password=SecretStr(unquote(parts.password)) if parts.password else None,
        pool=int(pool_text), verify=_verify(query),
    )


def parse_imap_url(url: str | SecretStr) -> MailboxConfig:
    """MISSIVE_BOUNCE_IMAP_URL (imaps://user:pass@host:993/INBOX?failed=Folder, or imap://…
    ?tls=starttls|none) as a config, or ConfigError saying in one line what is wrong."""
    parts = urlsplit(_plain(url))
    if parts.scheme not in ("imap", "imaps"):
        raise ConfigError("MISSIVE_BOUNCE_IMAP_URL must be imaps:// or imap://")
    query = _query(parts.query)
    tls = query.get("tls", "ssl" if parts.scheme == "imaps" else "starttls")
    if tls not in TLS_MODES:
        raise ConfigError(f"MISSIVE_BOUNCE_IMAP_URL tls={tls!r} must be ssl, starttls or none")
    if not (parts.hostname and parts.username):
        raise ConfigError("MISSIVE_BOUNCE_IMAP_URL needs a user and a host")
    try:
        port = parts.port or (993 if tls == "ssl" else 143)
    except ValueError:
        raise ConfigError(
            "MISSIVE_BOUNCE_IMAP_URL has a port that is not a number from 1 to 65535") from None
    return MailboxConfig(
        host=parts.hostname, port=port, username=unquote(parts.username),
        password=SecretStr(unquote(parts.password or "")),
        folder=unquote(parts.path.lstrip("/")) or "INBOX",
        failed_folder=query.get("failed", "Missive-Unprocessed"), tls=tls,
        verify=_verify(query),
    )
