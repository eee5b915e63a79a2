"""Unsubscribe links: RFC 8058 one-click, GET and HEAD harmless, forgeries refused."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app.signup.service import unsubscribe_token
from app.subscribers.models import ConsentEvent, Subscription
from tests.sending.conftest import add_readers


@pytest.fixture
def reader(newsletter, db):
    add_readers(1)
    sub = db.scalars(select(Subscription)).one()
    return sub, f"/u/{unsubscribe_token(sub)}"


def _status(db) -> str:
    db.expire_all()
    return str(db.scalars(select(Subscription.status)).one())


@pytest.mark.parametrize("kind", ["urlencoded", "multipart"])
def test_one_click_post_in_both_content_types(client, reader, db, kind):
    _, path = reader
    if kind == "urlencoded":
        r = client.post(path, data={"List-Unsubscribe": "One-Click"}, follow_redirects=False)
    else:
        r = client.post(path, files={"List-Unsubscribe": (None, "One-Click")},
                        follow_redirects=False)
    assert r.status_code == 200
    assert "set-cookie" not in r.headers
    assert _status(db) == "unsubscribed"
    events = db.scalars(select(ConsentEvent.action)).all()
    assert "unsubscribe" in events
    # Again: still 200, still unsubscribed.
    assert client.post(path, data={"List-Unsubscribe": "One-Click"}).status_code == 200


def test_get_and_head_change_nothing(client, reader, db):
    _, path = reader
    page = client.get(path)
    assert page.status_code == 200 and f'action="{path}"' in page.text
    assert client.head(path).status_code == 200
    assert _status(db) == "active"


@pytest.mark.parametrize("mangle", [
    lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),
    lambda t: t.split(".")[0] + ".AAAAAA." + t.split(".")[2],
    lambda t: "x" + t,
    lambda t: "",
])
def test_forged_or_altered_tokens_get_404_and_change_nothing(client, reader, db, mangle):
    sub, path = reader
    forged = "/u/" + mangle(path[3:])
    if forged == "/u/":
        forged = "/u/%20"
    for method in ("get", "post"):
        assert getattr(client, method)(forged).status_code == 404
    assert client.post(forged + "/all").status_code in (404, 405)
    assert _status(db) == "active"


def test_a_confirm_token_is_not_an_unsubscribe_token(client, reader, db):
    from app.signup.service import confirm_token

    sub, _ = reader
    assert client.post(f"/u/{confirm_token(sub)}").status_code == 404
    assert _status(db) == "active"


def test_undo_and_leave_everything(client, reader, db, auth):
    _, path = reader
    client.post(path)
    page = client.get(path).text
    assert f'action="{path}/undo"' in page and f'action="{path}/all"' in page
    assert client.post(f"{path}/undo").status_code == 200
    assert _status(db) == "active"
    other = client.post("/api/v1/newsletters", headers=auth, json={
        "slug": "second-list", "name": "Second", "from_name": "Second",
        "from_email": "second@example.org"})
    assert other.status_code == 201
    sub_id = db.scalars(select(Subscription.subscriber_id)).first()
    client.patch(f"/api/v1/subscribers/{sub_id}", headers=auth,
                 json={"subscriptions": [{"newsletter": "second-list", "status": "active"}]})
    assert client.post(f"{path}/all").status_code == 200
    db.expire_all()
    assert set(db.scalars(select(Subscription.status)).all()) == {"unsubscribed"}
