"""Each reader's copy of an issue: the pre-built message, personalised, signed, addressed."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from app.config import get_settings
from app.issues import service as issues
from app.issues.render import PrebuiltMessage, Recipient, personalise
from app.mail.pipeline import Outgoing
from app.sending import verp
from app.sending.models import Send
from app.signup.service import unsubscribe_links, unsubscribe_token_for


@dataclass(frozen=True)
class Prebuilt:
    send_id: int
    message: PrebuiltMessage
    domain: str


_cache: dict[int, Prebuilt] = {}
_lock = threading.Lock()


def prebuilt_for_send(sessions: sessionmaker[Session], send_id: int) -> Prebuilt:
    """The send's pre-built message, rendered (and inlined) once per worker process."""
    with _lock:
        cached = _cache.get(send_id)
        if cached is not None:
            return cached
        with sessions() as session:
            send = session.get(Send, send_id)
            if send is None:
                raise LookupError(f"no send {send_id}")
            issue = send.issue
            # The Date header is the send's start, the same in every copy and every worker.
            message = issues.prebuilt(issue, date=send.started_at)
            domain = issue.newsletter.from_email.rpartition("@")[2]
        built = Prebuilt(send_id=send_id, message=message, domain=domain)
        if len(_cache) > 8:
            _cache.clear()
        _cache[send_id] = built
        return built


def outgoing(prebuilt: Prebuilt, *, delivery_id: int, email: str, name: str, email_key: str,
             subscription_id: int) -> Outgoing:
    """One reader's message, ready for SMTP: personal parts in, DKIM-signed when configured."""
    token = unsubscribe_token_for(subscription_id, email_key)
    url, mailto = unsubscribe_links(token)
    recipient = Recipient(
        email=email,
        name=name,
        unsubscribe_url=url,
        unsubscribe_mailto=mailto,
        message_id=f"{delivery_id}.{prebuilt.send_id}.{token[-12:]}@{prebuilt.domain}",
    )
    message = personalise(prebuilt.message, recipient)
    signer = dkim_signer()
    if signer is not None:
        message = signer(message)
    return Outgoing(key=delivery_id, envelope_from=verp.envelope_sender(delivery_id),
                    recipient=email, message=message)


SIGNED_HEADERS = (b"from", b"to", b"subject", b"date", b"message-id", b"list-id",
                  b"list-unsubscribe", b"list-unsubscribe-post", b"mime-version",
                  b"content-type")


@lru_cache
def dkim_signer() -> DkimSigner | None:
    settings = get_settings()
    if not (settings.dkim_selector and settings.dkim_domain and settings.dkim_private_key_path):
        return None
    return DkimSigner(settings.dkim_selector, settings.dkim_domain,
                      Path(settings.dkim_private_key_path).read_bytes())


class DkimSigner:
    """Signs whole messages with dkimpy, covering From, Subject and both List-Unsubscribe."""

    def __init__(self, selector: str, domain: str, private_key: bytes) -> None:
        self.selector = selector.encode()
        self.domain = domain.encode()
        self.private_key = private_key

    def __call__(self, message: bytes) -> bytes:
        import dkim

        signature: bytes = dkim.sign(
            message, self.selector, self.domain, self.private_key,
            include_headers=list(SIGNED_HEADERS), canonicalize=(b"relaxed", b"simple"),
        )
        return signature + message
