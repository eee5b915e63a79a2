"""An API token of a user limited to newsletter A reaches nothing of newsletter B."""

from __future__ import annotations

from datetime import timedelta


def test_scoped_token_gets_404_for_the_other_newsletter(client, newsletter, other_newsletter,
                                                         db, test_env):
    from app import demo
    from app.auth import service as auth
    from app.db import utcnow
    from app.issues import service as issues
    from app.newsroom import accounts
    from app.sending import service as sending
    from app.subscribers.models import Subscriber, Subscription

    theirs = demo.sample_issue(db, newsletter)
    mine = issues.create(db, {"newsletter": "river-notes", "stories": [{"headline": "Mine"}]})
    their_send = sending.schedule(db, theirs.id, at=utcnow() + timedelta(days=1),
                                  next_cadence_slot=False, actor="tests")
    reader = Subscriber(email="b@example.org", email_key="b@example.org")
    db.add(reader)
    db.flush()
    db.add(Subscription(subscriber_id=reader.id, newsletter_id=newsletter.id, status="active"))
    user = accounts.create_user(db, email="limited@example.org", role="editor",
                                newsletter_ids=[other_newsletter.id])
    token = auth.create_token(db, name="limited", role="editor", user=user)
    db.commit()
    h = {"Authorization": f"Bearer {token}"}

    for path in (f"/api/v1/issues/{theirs.id}", f"/api/v1/issues/{theirs.id}/checks",
                 f"/api/v1/sends/{their_send.id}", f"/api/v1/subscribers/{reader.id}",
                 "/api/v1/newsletters/alliance-digest",
                 "/api/v1/issues?newsletter=alliance-digest",
                 "/api/v1/subscribers?newsletter=alliance-digest"):
        assert client.get(path, headers=h).status_code == 404, path
    for path in (f"/api/v1/sends/{their_send.id}/cancel", f"/api/v1/issues/{theirs.id}/send"):
        assert client.post(path, headers=h).status_code == 404, path
    assert client.patch(f"/api/v1/issues/{theirs.id}", headers=h,
                        json={"subject": "x"}).status_code == 404
    # Unfiltered lists and creations it cannot prove are in scope are refused.
    assert client.get("/api/v1/issues", headers=h).status_code == 403
    assert client.post("/api/v1/issues", headers=h, json={"newsletter": "alliance-digest"}
                       ).status_code == 403
    # Its own newsletter works as before.
    assert client.get(f"/api/v1/issues/{mine.id}", headers=h).status_code == 200
    listed = client.get("/api/v1/issues?newsletter=river-notes", headers=h)
    assert listed.status_code == 200 and [i["id"] for i in listed.json()["items"]] == [mine.id]
    db.expire_all()
    assert sending.get(db, their_send.id).status == "scheduled"


def test_scoped_token_lists_only_its_newsletters(client, auth, newsletter, other_newsletter, db,
                                                 test_env):
    from app.auth import service as auth_service
    from app.newsroom import accounts

    user = accounts.create_user(db, email="limited@example.org", role="viewer",
                                newsletter_ids=[other_newsletter.id])
    token = auth_service.create_token(db, name="limited", role="viewer", user=user)
    db.commit()
    h = {"Authorization": f"Bearer {token}"}

    listed = client.get("/api/v1/newsletters", headers=h)
    assert listed.status_code == 200
    assert [n["slug"] for n in listed.json()["items"]] == ["river-notes"]
    assert client.get("/api/v1/newsletters/alliance-digest", headers=h).status_code == 404
    assert client.get("/api/v1/newsletters/river-notes", headers=h).status_code == 200
    # An unlimited token still lists both.
    everything = client.get("/api/v1/newsletters", headers=auth)
    assert {n["slug"] for n in everything.json()["items"]} == {"alliance-digest", "river-notes"}
