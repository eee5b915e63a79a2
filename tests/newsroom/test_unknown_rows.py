"""The send page lists the rows left `unknown`, a page at a time, and settles them one by one,
ticked, or all at once — through the service the API uses."""

from __future__ import annotations

import html
import re

from sqlalchemy import func, select

from tests.newsroom.conftest import csrf_of


def _send_with_unknown_rows(db, newsletter, n: int) -> tuple[int, list[int]]:
    from app import demo
    from app.db import utcnow
    from app.sending.models import Delivery, Send
    from app.subscribers.models import Subscriber, Subscription

    issue = demo.sample_issue(db, newsletter)
    send = Send(issue_id=issue.id, status="done", total=n, started_at=utcnow(),
                finished_at=utcnow())
    db.add(send)
    db.flush()
    ids = []
    for i in range(n):
        reader = Subscriber(email=f"lost{i:02d}@example.org", email_key=f"lost{i:02d}@example.org")
        db.add(reader)
        db.flush()
        sub = Subscription(subscriber_id=reader.id, newsletter_id=newsletter.id, status="active")
        db.add(sub)
        db.flush()
        row = Delivery(send_id=send.id, subscriber_id=reader.id, subscription_id=sub.id,
                       status="unknown", attempts=1, started_at=utcnow(),
                       smtp_reply=f"worker lost its claim (row {i})")
        db.add(row)
        db.flush()
        ids.append(row.id)
    db.commit()
    return send.id, ids


def _states(db, send_id: int, *, but: tuple[int, ...] = ()) -> dict[str, int]:
    """Rows by state, leaving out `but` (rows a worker may be mailing meanwhile)."""
    from app.sending.models import Delivery

    db.expire_all()
    return dict(db.execute(select(Delivery.status, func.count()).where(
        Delivery.send_id == send_id, Delivery.id.not_in(but)).group_by(Delivery.status)).all())


# Where a resent row may be by now: back in the queue, or already taken by a worker that
# another test of the session started.
WITH_THE_WORKERS = {"pending", "claimed", "sent", "failed"}


def _status(db, delivery_id: int) -> str:
    from app.sending.models import Delivery

    db.expire_all()
    return db.get(Delivery, delivery_id).status


def test_unknown_rows_listed_by_page_and_settled(signed_in, newsletter, db):
    send_id, rows = _send_with_unknown_rows(db, newsletter, 55)
    editor = signed_in("editor")
    page = editor.get(f"/admin/sends/{send_id}")
    assert page.status_code == 200
    assert "55 readers in an unknown state" in page.text
    assert "lost00@example.org" in page.text and "lost49@example.org" in page.text
    assert "lost50@example.org" not in page.text and "worker lost its claim (row 3)" in page.text
    more = html.unescape(re.search(r'href="([^"]*unknown_after=\d+)[^"]*"', page.text).group(1))
    second = editor.get(more)
    assert "lost50@example.org" in second.text and "lost54@example.org" in second.text
    assert "lost49@example.org" not in second.text
    token = csrf_of(page.text)

    # One row, from its own button.
    r = editor.post(f"/admin/sends/{send_id}/unknown/mark-delivered",
                    data={"csrf_token": token, "ids": str(rows[0])}, follow_redirects=False)
    assert r.status_code == 303
    assert "Marked delivered" in editor.get(r.headers["location"]).text
    assert _states(db, send_id) == {"sent": 1, "unknown": 54}
    # Two ticked rows, resent: they go back to the workers and the send runs again.
    r = editor.post(f"/admin/sends/{send_id}/unknown/resend",
                    data={"csrf_token": token, "ids": [str(rows[1]), str(rows[2])]},
                    follow_redirects=False)
    assert r.status_code == 303
    resent = (rows[1], rows[2])
    assert {_status(db, i) for i in resent} <= WITH_THE_WORKERS
    assert _states(db, send_id, but=resent) == {"sent": 1, "unknown": 52}
    # A row that is no longer unknown is refused, and nothing changes.
    r = editor.post(f"/admin/sends/{send_id}/unknown/mark-delivered",
                    data={"csrf_token": token, "ids": [str(rows[0]), str(rows[3])]})
    assert r.status_code == 409
    assert editor.post(f"/admin/sends/{send_id}/unknown/resend",
                       data={"csrf_token": token}).status_code == 422
    assert _states(db, send_id, but=resent) == {"sent": 1, "unknown": 52}
    # All the rest at once.
    r = editor.post(f"/admin/sends/{send_id}/unknown/mark-delivered",
                    data={"csrf_token": token, "all": "true"}, follow_redirects=False)
    assert r.status_code == 303
    assert _states(db, send_id, but=resent) == {"sent": 53}
    assert "in an unknown state" not in editor.get(f"/admin/sends/{send_id}").text


def test_viewer_and_other_newsletters_editor_cannot_settle(signed_in, newsletter,
                                                           other_newsletter, db):
    send_id, rows = _send_with_unknown_rows(db, newsletter, 2)
    viewer = signed_in("viewer")
    page = viewer.get(f"/admin/sends/{send_id}")
    assert "lost01@example.org" in page.text and "Mark delivered" not in page.text
    r = viewer.post(f"/admin/sends/{send_id}/unknown/mark-delivered",
                    data={"csrf_token": csrf_of(page.text), "all": "true"})
    assert r.status_code == 403
    limited = signed_in("editor", newsletters=("river-notes",))
    token = csrf_of(limited.get("/admin").text)
    for action in ("mark-delivered", "resend"):
        r = limited.post(f"/admin/sends/{send_id}/unknown/{action}",
                         data={"csrf_token": token, "all": "true"})
        assert r.status_code == 404
    assert _states(db, send_id) == {"unknown": 2}
