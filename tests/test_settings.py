"""Settings fail fast with one line, and no secret shows in a repr, a dump or a log line."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.config import ConfigError, Settings, get_settings
from app.mail.urls import MaildirConfig, SmtpConfig
from tests.conftest import ROOT

SECRETS = {
    "MISSIVE_SECRET_KEY": "key-5ecr3t-abcdefghijkl",
    "MISSIVE_MAIL_URL": "smtp://relay:smtp-pa55word@mail.example.org:587?tls=starttls&pool=3",
    "MISSIVE_BOUNCE_IMAP_URL": "imaps://bounces:imap-pa55word@imap.example.org/INBOX",
    "MISSIVE_POSTMARK_PASSWORD": "postmark-pa55word",
    "MISSIVE_MAILGUN_SIGNING_KEY": "mailgun-signing-k3y",
    "MISSIVE_DATABASE_URL": "postgresql+psycopg://missive:db-pa55word@db.example.org/missive",
    "MISSIVE_REDIS_URL": "redis://:redis-pa55word@redis.example.org:6379/1",
}
LEAKS = ("5ecr3t", "smtp-pa55word", "imap-pa55word", "postmark-pa55word", "mailgun-signing-k3y",
         "db-pa55word", "redis-pa55word")


@pytest.fixture
def fresh_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """Settings read anew from the environment the test sets; the suite's come back after."""
    get_settings.cache_clear()
    yield monkeypatch
    monkeypatch.undo()
    get_settings.cache_clear()


def test_secrets_never_show(fresh_settings, caplog):
    for name, value in SECRETS.items():
        fresh_settings.setenv(name, value)
    settings = get_settings()
    mail, imap = settings.mail, settings.bounce_imap
    assert isinstance(mail, SmtpConfig) and imap is not None
    shown = [repr(settings), str(settings), settings.model_dump_json(), repr(mail), repr(imap)]
    with caplog.at_level(logging.INFO):
        logging.getLogger("missive.test").info("settings %s / %r / %s", settings, settings, mail)
    shown.append(caplog.text)
    for text in shown:
        for secret in LEAKS:
            assert secret not in text
    # Still usable where they are needed, and the rest of each URL still readable.
    assert "db.example.org" in repr(settings) and "redis.example.org" in repr(settings)
    assert settings.require_secret() == SECRETS["MISSIVE_SECRET_KEY"]
    assert mail.password is not None and mail.password.get_secret_value() == "smtp-pa55word"
    assert (mail.host, mail.port, mail.tls, mail.pool) == ("mail.example.org", 587, "starttls", 3)
    assert imap.password.get_secret_value() == "imap-pa55word"


def test_embedded_default_is_a_maildir(fresh_settings, tmp_path: Path):
    for name in ("MISSIVE_MAIL_URL", "MISSIVE_DATABASE_URL", "MISSIVE_SECRET_KEY"):
        fresh_settings.delenv(name, raising=False)
    fresh_settings.setenv("MISSIVE_VAR_DIR", str(tmp_path))
    assert get_settings().mail == MaildirConfig(tmp_path.resolve() / "outbox")


def test_commands_beside_make_run_use_the_url_it_serves_on(fresh_settings, tmp_path: Path):
    for name in ("MISSIVE_DATABASE_URL", "MISSIVE_BASE_URL"):
        fresh_settings.delenv(name, raising=False)
    fresh_settings.setenv("MISSIVE_VAR_DIR", str(tmp_path))
    assert get_settings().base_url == "http://127.0.0.1:8000"
    (tmp_path / "served-url").write_text("http://127.0.0.1:8100\n")
    get_settings.cache_clear()
    assert get_settings().base_url == "http://127.0.0.1:8100"
    # A configured base URL always wins.
    fresh_settings.setenv("MISSIVE_BASE_URL", "https://news.example.org")
    get_settings.cache_clear()
    assert get_settings().base_url == "https://news.example.org"


@pytest.mark.parametrize(("name", "value", "says"), [
    ("MISSIVE_MAIL_URL", "ftp://mail.example.org", "scheme 'ftp'"),
    ("MISSIVE_MAIL_URL", "smtp://mail.example.org?tls=maybe", "tls='maybe'"),
    ("MISSIVE_MAIL_URL", "smtp://mail.example.org?pool=0", "pool='0'"),
    ("MISSIVE_MAIL_URL", "smtp://mail.example.org?pool=lots", "pool='lots'"),
    ("MISSIVE_MAIL_URL", "smtp://:25?pool=2", "needs a host"),
    ("MISSIVE_MAIL_URL", "smtp://mail.example.org:smtp", "port"),
    ("MISSIVE_MAIL_URL", "maildir://", "needs a path"),
    ("MISSIVE_BOUNCE_IMAP_URL", "pop3://u:p@imap.example.org", "imaps:// or imap://"),
    ("MISSIVE_BOUNCE_IMAP_URL", "imaps://imap.example.org/INBOX", "user and a host"),
    ("MISSIVE_BOUNCE_IMAP_URL", "imap://u:p@imap.example.org?tls=yes", "tls='yes'"),
    ("MISSIVE_SEND_BATCH", "lots", "MISSIVE_SEND_BATCH: "),
    ("MISSIVE_BASE_URL", "ftp://news.example.org", "MISSIVE_BASE_URL must be"),
    ("MISSIVE_DKIM_DOMAIN", "news.example.org",
     "half configured: MISSIVE_DKIM_DOMAIN set but MISSIVE_DKIM_SELECTOR, "
     "MISSIVE_DKIM_PRIVATE_KEY_PATH not"),
    ("MISSIVE_DKIM_ED25519_SELECTOR", "ed1", "MISSIVE_DKIM_ED25519_PRIVATE_KEY_PATH not"),
])
def test_bad_settings_fail_at_load_with_one_line(fresh_settings, name, value, says):
    fresh_settings.setenv(name, value)
    with pytest.raises(ConfigError) as exc:
        get_settings()
    message = str(exc.value)
    assert says in message and "\n" not in message
    if name != "MISSIVE_SEND_BATCH":
        assert name in message


def test_settings_object_checks_too(fresh_settings):
    # Code that builds Settings itself (tests, tools) gets the same check.
    with pytest.raises(ConfigError, match="MISSIVE_MAIL_URL"):
        Settings(mail_url="smtp://mail.example.org?tls=tls")


@pytest.mark.parametrize("command", [["serve"], ["worker"], ["beat"], ["db", "upgrade"]])
def test_processes_refuse_a_bad_mail_url_in_one_line(tmp_path: Path, command: list[str]):
    env = {**os.environ, "MISSIVE_MAIL_URL": "smtp://smtp-pa55word@mail.example.org?pool=-1",
           "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "app", *command], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "missive: MISSIVE_MAIL_URL pool='-1' must be a number from 1 to 1000"]
    assert "smtp-pa55word" not in done.stdout + done.stderr


@pytest.mark.parametrize("command", [["serve"], ["worker"]])
def test_processes_refuse_a_bad_dkim_key_at_start(tmp_path: Path, command: list[str]):
    not_a_key = tmp_path / "dkim.pem"
    not_a_key.write_text("-----BEGIN PRIVATE KEY-----\nnot base64 at all\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MISSIVE_VAR_DIR": str(tmp_path / "var"),
           "MISSIVE_DKIM_DOMAIN": "news.example.org", "MISSIVE_DKIM_SELECTOR": "s1",
           "MISSIVE_DKIM_PRIVATE_KEY_PATH": str(not_a_key)}
    env.pop("MISSIVE_DATABASE_URL", None)
    done = subprocess.run([sys.executable, "-m", "app", *command], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"missive: the DKIM key {not_a_key} is not an unencrypted PEM private key"]
