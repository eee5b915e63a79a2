"""Building whole messages from templates: the confirmation and welcome mails of sign-up."""

from __future__ import annotations

import email.policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any

from app.db import utcnow
from app.newsletters.models import Newsletter
from app.web import mail_env

# 998 columns: long headers such as List-Unsubscribe stay on one line instead of being
# RFC 2047-encoded, which breaks them in mail clients.
POLICY = email.policy.SMTP.clone(max_line_length=998)


def sender(newsletter: Newsletter) -> Address:
    local, _, domain = newsletter.from_email.rpartition("@")
    return Address(display_name=newsletter.from_name, username=local, domain=domain)


def recipient(name: str, address: str) -> Address:
    local, _, domain = address.rpartition("@")
    if not domain.isascii():
        # The IDNA form needs nothing of the relay; only a non-ASCII local part does.
        domain = domain.encode("idna").decode("ascii")
    return Address(display_name=name, username=local, domain=domain)


def build(
    *,
    template: str,
    newsletter: Newsletter,
    to: Address,
    subject: str,
    context: dict[str, Any],
    headers: dict[str, str] | None = None,
    message_id: str | None = None,
) -> bytes:
    """A multipart/alternative message from `email/<template>.txt` and `.html`.

    Both parts are quoted-printable, so the message is 7-bit clean and needs no 8BITMIME.
    `message_id` is without angle brackets; a random one is made when it is None.
    """
    env = mail_env()
    ctx = {"newsletter": newsletter, **context}
    msg = EmailMessage(policy=POLICY)
    msg["From"] = sender(newsletter)
    msg["To"] = to
    if newsletter.reply_to:
        msg["Reply-To"] = newsletter.reply_to
    msg["Subject"] = subject
    msg["Date"] = format_datetime(utcnow())
    msg["Message-ID"] = (f"<{message_id}>" if message_id
                         else make_msgid(domain=newsletter.from_email.rpartition("@")[2]))
    for key, value in (headers or {}).items():
        msg[key] = value
    msg.set_content(env.get_template(f"{template}.txt").render(ctx), cte="quoted-printable")
    msg.add_alternative(env.get_template(f"{template}.html").render(ctx), subtype="html",
                        cte="quoted-printable")
    if not to.username.isascii():
        # RFC 6532: the address is written as UTF-8 (the transport then asks for SMTPUTF8).
        return msg.as_bytes(policy=POLICY.clone(utf8=True))
    return msg.as_bytes(policy=POLICY)
