"""The send pages: list, progress as HTML and JSON, and the controls, within the user's scope."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.newsroom.conftest import csrf_of


@pytest.fixture
def later_send(newsletter, db):
    """A send of the sample issue scheduled for tomorrow (no worker touches it)."""
    from app import demo
    from app.db import utcnow
    from app.sending import service as sending

    issue = demo.sample_issue(db, newsletter)
    send = sending.schedule(db, issue.id, at=utcnow() + timedelta(days=1),
                            next_cadence_slot=False, actor="tests")
    db.commit()
    return send


def test_send_page_progress_and_controls(signed_in, later_send, db):
    from app.sending.models import Send

    send_id = later_send.id
    editor = signed_in("editor")
    listing = editor.get("/admin/sends")
    assert listing.status_code == 200 and f"/admin/sends/{later_send.id}" in listing.text
    page = editor.get(f"/admin/sends/{later_send.id}")
    assert page.status_code == 200
    assert f'data-progress-url="/admin/sends/{send_id}/progress.json"' in page.text
    # Without JavaScript the page refreshes itself while the send is not finished.
    assert '<noscript><meta http-equiv="refresh"' in page.text
    progress = editor.get(f"/admin/sends/{later_send.id}/progress.json").json()
    assert progress["status"] == "scheduled" and progress["finished"] is False
    assert {"sent", "pending", "failed", "unknown", "rate_per_second", "seconds_left"} <= set(
        progress)
    token = csrf_of(page.text)
    r = editor.post(f"/admin/sends/{later_send.id}/pause", data={"csrf_token": token},
                    follow_redirects=False)
    assert r.status_code == 303
    db.expire_all()
    assert db.get(Send, later_send.id).status == "paused"
    assert "The send is paused." in editor.get(r.headers["location"]).text
    # Cancelling a send that never started gives the issue back as a draft.
    r = editor.post(f"/admin/sends/{later_send.id}/cancel", data={"csrf_token": token},
                    follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/admin/issues/")
    db.expire_all()
    assert db.get(Send, send_id) is None


def test_viewer_cannot_steer_and_scoped_editor_cannot_see(signed_in, later_send,
                                                          other_newsletter, db):
    from app.sending.models import Send

    viewer = signed_in("viewer")
    page = viewer.get(f"/admin/sends/{later_send.id}")
    assert page.status_code == 200 and "Pause</button>" not in page.text
    r = viewer.post(f"/admin/sends/{later_send.id}/pause", data={"csrf_token": csrf_of(page.text)})
    assert r.status_code == 403
    limited = signed_in("editor", newsletters=("river-notes",))
    token = csrf_of(limited.get("/admin").text)
    assert f"/admin/sends/{later_send.id}" not in limited.get("/admin/sends").text
    for path in ("", "/progress.json"):
        assert limited.get(f"/admin/sends/{later_send.id}{path}").status_code == 404
    for action in ("pause", "cancel", "resume", "acknowledge-complaints"):
        r = limited.post(f"/admin/sends/{later_send.id}/{action}", data={"csrf_token": token})
        assert r.status_code == 404, action
    db.expire_all()
    assert db.get(Send, later_send.id).status == "scheduled"
