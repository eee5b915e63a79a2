"""Settings: one object, read from the environment (prefix MISSIVE_) and from `.env`.

The embedded default needs no server: SQLite, a filesystem Celery broker and a Maildir outbox, all
under `var/` in the working directory. Anything else is production and must bring its own secret.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_serializer, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.errors import ConfigError as ConfigError  # raised here; most callers import it from here
from app.mail.urls import MailboxConfig, MaildirConfig, SmtpConfig, parse_imap_url, parse_mail_url

# URL settings that may carry a password in their user part; a repr shows them without it.
_URL_SETTINGS = ("database_url", "broker_url", "redis_url")


SERVED_URL_FILE = "served-url"


def served_url(var_dir: Path) -> str | None:
    """The base URL `missive quickstart` serves this var folder on, while it runs."""
    try:
        text = (var_dir / SERVED_URL_FILE).read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return text if urlsplit(text).scheme in ("http", "https") and "\n" not in text else None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="MISSIVE_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    var_dir: Path = Path("var")
    database_url: str = ""
    broker_url: str = ""
    redis_url: str = ""
    redis_prefix: str = "missive:"
    # Parsed and checked as settings load (app/mail/urls.py); it may carry the SMTP password.
    mail_url: SecretStr = SecretStr("")
    base_url: str = "http://127.0.0.1:8000"
    secret_key: SecretStr = SecretStr("")
    bounce_address: str = "bounces@localhost"
    send_rate: float = 0
    dkim_selector: str = ""
    dkim_domain: str = ""
    dkim_private_key_path: str = ""
    # An optional second signature, Ed25519-SHA256 (RFC 8463), under a selector of its own.
    dkim_ed25519_selector: str = ""
    dkim_ed25519_private_key_path: str = ""

    # How long a confirmation link stays valid.
    confirm_ttl_hours: int = Field(default=72, ge=1)
    # Sign-up limits: requests per client IP per minute, requests per address per hour, and at
    # most one confirmation mail per address in this many minutes.
    signup_ip_per_minute: int = Field(default=20, ge=1)
    signup_address_per_hour: int = Field(default=5, ge=1)
    confirm_resend_minutes: int = Field(default=15, ge=0)
    # How long after unsubscribing the reader may undo it from the page; later, they sign up
    # again with double opt-in (the link is in every issue they forward).
    unsubscribe_undo_hours: int = Field(default=24, ge=0)
    # How long an issue's preview link (the sample reader's copy, no token) keeps working.
    preview_link_days: int = Field(default=7, ge=1, le=365)
    # Request bodies: a JSON document or form, a CSV import, one raw message (a bounce report).
    max_json_bytes: int = Field(default=1024 * 1024, ge=1024)
    max_csv_bytes: int = Field(default=50 * 1024 * 1024, ge=1024)
    max_message_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)

    # Provider webhooks (POST /webhooks/…); each provider is refused until its settings are set.
    # Amazon SES through SNS: the TopicArns allowed to post, comma-separated.
    ses_topic_arns: str = ""
    # Confirm an SNS SubscriptionConfirmation by fetching its SubscribeURL (only ever from
    # https://sns.<region>.amazonaws.com/); unset, the URL is logged for a person to open.
    ses_auto_confirm: bool = False
    # SendGrid signed Event Webhook: the verification key SendGrid shows (base64 DER, P-256).
    sendgrid_public_key: str = ""
    # Postmark: the HTTP Basic credentials written into the webhook URL.
    postmark_user: str = ""
    postmark_password: SecretStr = SecretStr("")
    # Mailgun: the HTTP webhook signing key (HMAC-SHA256 of timestamp + token).
    mailgun_signing_key: SecretStr = SecretStr("")

    # Sending. A worker claims `send_batch` ledger rows at a time and hands them to SMTP in
    # windows of `send_window` (the most that can be left `unknown` if it is killed).
    send_batch: int = Field(default=500, ge=1, le=10000)
    send_window: int = Field(default=64, ge=1, le=1000)
    send_lease_seconds: int = Field(default=120, ge=2)
    send_max_attempts: int = Field(default=5, ge=1)
    send_retry_seconds: int = Field(default=60, ge=1)
    send_pause_after_failures: int = Field(default=200, ge=1)
    send_max_outage_seconds: int = Field(default=900, ge=1)
    send_drain_tasks: int = Field(default=8, ge=1, le=256)
    send_rekick_seconds: int = Field(default=60, ge=1)

    # Newsroom CSV imports: a run holds its import under a lease it renews with each batch
    # (a run that stops renewing, its worker killed, is taken up where it had got to once the
    # lease runs out); a queued import no worker has taken this long has its task sent again.
    import_lease_seconds: int = Field(default=60, ge=2)
    import_requeue_seconds: int = Field(default=300, ge=10)

    # Bounces: this many soft bounces within this many days suppress an address; a send whose
    # complaints pass this share of its deliveries blocks the newsletter's next send.
    bounce_soft_limit: int = Field(default=3, ge=1)
    bounce_soft_days: int = Field(default=30, ge=1)
    complaint_block_rate: float = Field(default=0.003, gt=0, le=1)
    # This many refusals of the sender (blocked IP, spam content, …) within the window pause
    # the send: the mail is being refused, and sending more only hurts the reputation.
    bounce_refusal_burst: int = Field(default=20, ge=1)
    bounce_refusal_window_minutes: int = Field(default=10, ge=1)
    # A bounce mailbox read by `missive beat`: imaps://user:pass@host:993/INBOX (or imap://
    # with ?tls=starttls); what cannot be parsed is moved to the folder ?failed=… for a person.
    bounce_imap_url: SecretStr = SecretStr("")

    # Operations: log lines as `text` or `json` (one object a line); the reverse proxies whose
    # X-Forwarded-For / X-Forwarded-Proto are believed (comma-separated IPs or CIDR networks;
    # empty: none, the peer address is the client); a bearer token /metrics asks for (empty:
    # open, for a scraper on a private network).
    log_format: Literal["text", "json"] = "text"
    trusted_proxies: str = ""
    metrics_token: str = ""

    # The guarded fetcher (feeds, images for the PDF edition): `host[:port]` entries that may
    # be reached although they resolve to a loopback or private address; size and time limits.
    fetch_allow_hosts: str = ""
    fetch_max_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    fetch_timeout_seconds: float = Field(default=20, gt=0, le=300)

    @model_validator(mode="after")
    def _fill_embedded_defaults(self) -> Settings:
        self.var_dir = self.var_dir.expanduser().resolve()
        if not self.database_url:
            self.database_url = f"sqlite:///{self.var_dir / 'missive.db'}"
        if not self.broker_url:
            self.broker_url = "filesystem://"
        if not self.mail_url.get_secret_value():
            self.mail_url = SecretStr(f"maildir://{self.var_dir / 'outbox'}")
        # Both raise ConfigError, which pydantic passes through as it is: one line to the user.
        parse_mail_url(self.mail_url)
        if self.bounce_imap_url.get_secret_value():
            parse_imap_url(self.bounce_imap_url)
        if "base_url" not in self.model_fields_set and self.embedded:
            # `missive quickstart` (make run) notes the address it serves on, so that the
            # commands run beside it (`missive issue create`) print links that open.
            self.base_url = served_url(self.var_dir) or self.base_url
        self.base_url = self.base_url.rstrip("/")
        scheme = urlsplit(self.base_url).scheme
        if scheme not in ("http", "https"):
            raise ValueError("MISSIVE_BASE_URL must be an http:// or https:// URL")
        for proxy in self.proxy_networks:
            try:
                ipaddress.ip_network(proxy, strict=False)
            except ValueError as exc:
                raise ValueError(f"MISSIVE_TRUSTED_PROXIES: {proxy!r} is not an IP address or "
                                 "CIDR network") from exc
        self._check_dkim()
        return self

    def _check_dkim(self) -> None:
        """Half a DKIM configuration would send every mail unsigned without a word: refuse it."""
        rsa = {"MISSIVE_DKIM_DOMAIN": self.dkim_domain, "MISSIVE_DKIM_SELECTOR": self.dkim_selector,
               "MISSIVE_DKIM_PRIVATE_KEY_PATH": self.dkim_private_key_path}
        ed = {"MISSIVE_DKIM_ED25519_SELECTOR": self.dkim_ed25519_selector,
              "MISSIVE_DKIM_ED25519_PRIVATE_KEY_PATH": self.dkim_ed25519_private_key_path}
        for group in (rsa, ed):
            missing = [name for name, value in group.items() if not value]
            if missing and len(missing) < len(group):
                given = [name for name in group if name not in missing]
                raise ValueError(f"DKIM is half configured: {', '.join(given)} set but "
                                 f"{', '.join(missing)} not")
        if any(ed.values()) and not all(rsa.values()):
            raise ValueError("MISSIVE_DKIM_ED25519_* needs MISSIVE_DKIM_DOMAIN, "
                             "MISSIVE_DKIM_SELECTOR and MISSIVE_DKIM_PRIVATE_KEY_PATH too")

    @field_serializer(*_URL_SETTINGS)
    def _dump_without_password(self, url: str) -> str:
        return str(_without_password(url))

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            yield name, (_without_password(value) if name in _URL_SETTINGS else value)

    @property
    def mail(self) -> SmtpConfig | MaildirConfig:
        """Where mail goes, from MISSIVE_MAIL_URL (checked when the settings loaded)."""
        return parse_mail_url(self.mail_url)

    @property
    def bounce_imap(self) -> MailboxConfig | None:
        """The bounce mailbox of MISSIVE_BOUNCE_IMAP_URL, or None when it is unset."""
        return parse_imap_url(self.bounce_imap_url) if self.bounce_imap_url.get_secret_value() \
            else None

    @property
    def proxy_networks(self) -> list[str]:
        """MISSIVE_TRUSTED_PROXIES as a list of addresses and networks."""
        return [p.strip() for p in self.trusted_proxies.split(",") if p.strip()]

    @property
    def embedded(self) -> bool:
        """True when running on the serverless default (SQLite): the secret may be generated."""
        return self.database_url.startswith("sqlite")

    @property
    def broker_folder(self) -> Path:
        return self.var_dir / "broker"

    def require_secret(self) -> str:
        """The signing key: configured, or in the embedded default generated once into var/."""
        configured = self.secret_key.get_secret_value()
        if configured:
            if len(configured) < 16:
                raise ConfigError("MISSIVE_SECRET_KEY is too short: use at least 16 characters")
            return configured
        if not self.embedded:
            raise ConfigError(
                "MISSIVE_SECRET_KEY is not set: it is required outside the embedded SQLite "
                "default (generate one with: python -c 'import secrets; "
                "print(secrets.token_urlsafe(48))')"
            )
        key_file = self.var_dir / "secret_key"
        if not key_file.exists():
            self.var_dir.mkdir(parents=True, exist_ok=True)
            # Write aside and link into place, so a process racing us reads a whole key.
            tmp = key_file.with_name(f".secret_key.{os.getpid()}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_urlsafe(48))
            try:
                os.link(tmp, key_file)
            except FileExistsError:
                pass
            finally:
                tmp.unlink()
        self.secret_key = SecretStr(key_file.read_text().strip())
        return self.secret_key.get_secret_value()


def _without_password(url: Any) -> Any:
    if not isinstance(url, str):
        return url
    parts = urlsplit(url)
    if not parts.password:
        return url
    return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1)).geturl()


def _one_line(exc: ValidationError) -> str:
    """pydantic's report as one line naming the environment variables to fix."""
    problems = []
    for error in exc.errors():
        name = "MISSIVE_" + "_".join(str(part) for part in error["loc"]).upper()
        message = str(error["msg"]).removeprefix("Value error, ")
        problems.append(message if not error["loc"] else f"{name}: {message}")
    return "; ".join(problems)


@lru_cache
def get_settings() -> Settings:
    """The settings, loaded and checked once; ConfigError (one line) when they cannot work."""
    try:
        settings = Settings()
    except ValidationError as exc:
        raise ConfigError(_one_line(exc)) from None
    settings.require_secret()
    return settings
