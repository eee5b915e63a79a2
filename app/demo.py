"""The sample newsletter and issue `make run` loads, so a newcomer has something to sign up to
and an issue to preview."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app import resources
from app.issues.models import Issue
from app.newsletters.models import Newsletter

SLUG = "alliance-digest"
SAMPLE_ISSUE = resources.SAMPLES / "alliance-digest-2.22.yaml"


def load(session: Session) -> Newsletter:
    """Create the sample newsletter unless it exists; return it."""
    newsletter = session.scalars(select(Newsletter).where(Newsletter.slug == SLUG)).first()
    if newsletter is None:
        newsletter = Newsletter(
            slug=SLUG,
            name="Alliance Digest",
            description=(
                "A bi-weekly digest from the Riverside Water Alliance: what cities along the "
                "river are doing about drought, floods and the pipes in between."
            ),
            from_name="Alliance Digest",
            from_email="digest@riverside-water.example.org",
            reply_to="editors@riverside-water.example.org",
            footer=(
                "You receive the Alliance Digest because you signed up at "
                "riverside-water.example.org. Forward it to a colleague: they can subscribe "
                "with the link below."
            ),
            postal_address="Riverside Water Alliance, 12 Weir Lane, Millbrook 40112",
            cadence="biweekly",
        )
        session.add(newsletter)
        session.flush()
    load_sample_issue(session, newsletter)
    return newsletter


def load_sample_issue(session: Session, newsletter: Newsletter) -> None:
    """Create the sample issue (a draft, Vol 2.22) unless that number exists."""
    from app.issues import repository as issues_repo
    from app.issues import service as issues

    data = issues.parse_document(SAMPLE_ISSUE.read_bytes(), kind="yaml")
    if issues_repo.by_number(session, newsletter.id, data["volume"], data["number"]) is None:
        issues.create(session, data)


def sample_issue(session: Session, newsletter: Newsletter) -> Issue | None:
    """The sample issue, if it is still there."""
    from app.issues import repository as issues_repo
    from app.issues import service as issues

    data = issues.parse_document(SAMPLE_ISSUE.read_bytes(), kind="yaml")
    return issues_repo.by_number(session, newsletter.id, data["volume"], data["number"])


FIRST_ADMIN = "admin@example.org"


def first_admin_link(session: Session) -> str:
    """The first admin's one-time sign-in token, creating that admin when there is no user.

    `make run` prints it each time it starts, so a newcomer never needs a password to begin."""
    from app.auth.models import User
    from app.newsroom import accounts

    admin = session.scalars(select(User).where(User.role == "admin").order_by(User.id)).first()
    if admin is None:
        admin = accounts.create_user(session, email=FIRST_ADMIN, role="admin")
    return accounts.issue_sign_in_token(session, admin)
