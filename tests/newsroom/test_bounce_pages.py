"""Bounce events and lifting a suppression with a note."""

from __future__ import annotations

from tests.newsroom.conftest import csrf_of


def test_suppression_lifted_with_a_note(signed_in, newsletter, db):
    from sqlalchemy import select

    from app.bounces.models import BounceRecord
    from app.subscribers.models import ConsentEvent, Subscriber, Suppression

    s = Subscriber(email="gone@example.org", email_key="gone@example.org")
    db.add(s)
    db.add(Suppression(email_key="gone@example.org", reason="bounced", detail="5.1.1 no user"))
    db.add(BounceRecord(email_key="gone@example.org", kind="hard", status_code="5.1.1",
                        diagnostic="550 5.1.1 no such user", source="dsn", action="suppressed"))
    db.commit()
    editor = signed_in("editor")
    page = editor.get("/admin/bounces")
    assert page.status_code == 200 and "550 5.1.1 no such user" in page.text
    assert "gone@example.org" in page.text
    supp_id = db.scalars(select(Suppression.id)).one()
    token = csrf_of(page.text)
    r = editor.post(f"/admin/suppressions/{supp_id}/lift", data={"csrf_token": token, "note": ""},
                    follow_redirects=False)
    assert "error=note" in r.headers["location"]
    assert db.scalars(select(Suppression)).all() != []
    r = editor.post(f"/admin/suppressions/{supp_id}/lift",
                    data={"csrf_token": token, "note": "mailbox exists again"},
                    follow_redirects=False)
    assert r.headers["location"] == "/admin/bounces?notice=lifted"
    db.expire_all()
    assert db.scalars(select(Suppression)).all() == []
    log = db.scalars(select(ConsentEvent).where(ConsentEvent.subscriber_id == s.id)).one()
    assert log.action == "unsuppress" and "mailbox exists again" in log.source
    assert signed_in("viewer").post(f"/admin/suppressions/{supp_id}/lift",
                                    data={"csrf_token": token, "note": "x"}).status_code == 403


def test_limited_user_sees_no_suppression_list(signed_in, newsletter, other_newsletter, db):
    from app.subscribers.models import Suppression

    db.add(Suppression(email_key="secret@example.org", reason="complained"))
    db.commit()
    limited = signed_in("editor", newsletters=("river-notes",))
    page = limited.get("/admin/bounces")
    assert page.status_code == 200 and "secret@example.org" not in page.text


def test_newest_first_pages_walk_every_row_once(db):
    """The keyset pages shared by the newsroom's lists and the bounce API (app.db)."""
    from app.newsroom import queries
    from app.subscribers.models import Suppression

    for i in range(7):
        db.add(Suppression(email_key=f"gone{i}@example.org", reason="bounced"))
    db.commit()
    pages, before = [], None
    while True:
        rows, before = queries.suppression_page(db, email=None, before_id=before, limit=3)
        pages.append([r.email_key.removeprefix("gone").split("@")[0] for r in rows])
        if before is None:
            break
    assert pages == [["6", "5", "4"], ["3", "2", "1"], ["0"]]
    one, more = queries.suppression_page(db, email="GONE3@example.org", before_id=None, limit=3)
    assert [r.email_key for r in one] == ["gone3@example.org"] and more is None
