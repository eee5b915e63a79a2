"""Each reader's copy of an issue: the pre-built message, personalised, signed, addressed."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from app.issues import service as issues
from app.issues.render import PrebuiltMessage, Recipient, assemble, personal_values
from app.mail import outbound, signing
from app.mail.pipeline import Outgoing
from app.mail.signing import BodyPlan
from app.sending.models import Send
from app.subscribers.unsubscribe import unsubscribe_links, unsubscribe_token_for


@dataclass(frozen=True)
class Prebuilt:
    send_id: int
    message: PrebuiltMessage
    domain: str
    # The body canonicalised for DKIM once per issue (None: sign each copy whole).
    plan: BodyPlan | None = None


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
            newsletter = issue.newsletter
            domain = newsletter.from_email.rpartition("@")[2]
            headers = outbound.standard_headers(kind="issue", name=newsletter.name,
                                                slug=newsletter.slug, domain=domain,
                                                campaign=f"send-{send_id}")
            headers.pop("List-Id")  # the rendering has it already
            # The Date header is the send's start, the same in every copy and every worker.
            message = issues.prebuilt(issue, date=send.started_at, extra_headers=headers)
        built = Prebuilt(send_id=send_id, message=message, domain=domain,
                         plan=BodyPlan.of(message.segments, message.slots)
                         if signing.signer() is not None else None)
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
    values = personal_values(prebuilt.message, recipient)
    plan = prebuilt.plan
    return outbound.issue_copy(
        delivery_id=delivery_id, recipient=email,
        message=assemble(prebuilt.message, values),
        body_hash=plan.body_hash(values) if plan is not None else None)
