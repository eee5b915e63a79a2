"""Test sends: the issue as readers will get it, to a few editors' addresses, off the ledger."""

from __future__ import annotations

from sqlalchemy.orm import Session

from app.config import get_settings
from app.issues import service as issues
from app.issues.render import Recipient, personalise
from app.mail.transport import Transport


def deliver(session: Session, issue_id: int, addresses: list[str], transport: Transport) -> int:
    """Mail the issue to each address; the unsubscribe link is a harmless sample."""
    issue = issues.get(session, issue_id)
    prebuilt = issues.prebuilt(issue)
    base = get_settings().base_url
    for address in addresses:
        message = personalise(prebuilt, Recipient(
            email=address, name="", unsubscribe_url=f"{base}/u/test-send-sample"))
        transport.send(get_settings().bounce_address, [address], message)
    return len(addresses)
