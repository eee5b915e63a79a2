"""Test sends: the issue as readers will get it, to a few editors' addresses, off the ledger.

A test copy is a reader's copy in every header (DKIM, VERP, Feedback-ID, List-Unsubscribe with
HTTPS one-click and mailto), so what the editor checks is what readers get. Only the subject
carries a marker (which the editor may switch off), and the unsubscribe link opens a page that
says it belongs to a test copy and changes nothing.
"""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy.orm import Session

from app.issues import service as issues
from app.issues.render import Recipient, build_message, personalise
from app.mail import outbound
from app.mail.transport import Transport
from app.subscribers.unsubscribe import test_unsubscribe_token, unsubscribe_links
from app.validation import email_key

SUBJECT_MARKER = "[Test] "


def deliver(session: Session, issue_id: int, addresses: list[str], transport: Transport,
            *, marker: bool = True) -> int:
    """Mail the issue to each address, each copy stored as a `messages` row; the number sent."""
    issue = issues.get(session, issue_id)
    newsletter = issue.newsletter
    domain = newsletter.from_email.rpartition("@")[2]
    rendered = issues.render(issue)
    if marker:
        rendered = replace(rendered, headers={
            **rendered.headers, "Subject": SUBJECT_MARKER + rendered.headers["Subject"]})
    headers = outbound.standard_headers(kind="test", name=newsletter.name,
                                        slug=newsletter.slug, domain=domain,
                                        campaign=f"test-{issue.id}")
    headers.pop("List-Id")  # the rendering has it already
    prebuilt = build_message(rendered, extra_headers=headers)
    sent = 0
    for address in addresses:
        row = outbound.record(session, kind="test", email=address, email_key=email_key(address),
                              domain=domain, newsletter_id=newsletter.id, issue_id=issue.id)
        url, mailto = unsubscribe_links(test_unsubscribe_token(row.id))
        message = personalise(prebuilt, Recipient(
            email=address, unsubscribe_url=url, unsubscribe_mailto=mailto,
            message_id=row.message_id))
        sent += outbound.send(session, row, message, transport)
    return sent
