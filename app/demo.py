"""The sample newsletter `make run` loads, so a newcomer has something to sign up to."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.newsletters.models import Newsletter

SLUG = "alliance-digest"


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
    return newsletter
