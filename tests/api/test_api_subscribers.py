"""Subscribers in the editor API: create, read, change, delete, list; bad input is a 4xx."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from app.subscribers.models import ConsentEvent, Subscriber, Subscription, Suppression
from app.validation import erased_key


def snapshot(db) -> list[tuple]:
    """Everything stored about subscribers, to show that a refused request changed nothing."""
    db.expire_all()
    subscribers = [(s.id, s.email, s.email_key, s.name, s.attributes)
                   for s in db.scalars(select(Subscriber).order_by(Subscriber.id))]
    subscriptions = [(s.subscriber_id, s.newsletter_id, s.status)
                     for s in db.scalars(select(Subscription).order_by(Subscription.id))]
    consent = db.scalar(select(func.count()).select_from(ConsentEvent))
    return [subscribers, subscriptions, consent]


@pytest.fixture
def second_newsletter(client, auth, newsletter):
    r = client.post("/api/v1/newsletters", headers=auth, json={
        "slug": "field-notes", "name": "Field Notes", "from_name": "Field Notes",
        "from_email": "notes@riverside-water.example.org"})
    assert r.status_code == 201
    return r.json()


# --- create, read, change, delete --------------------------------------------------------------


def test_create_with_subscriptions(client, auth, second_newsletter, db):
    r = client.post("/api/v1/subscribers", headers={**auth, "user-agent": "editor-script"}, json={
        "email": "  Ada.Lovelace@Example.ORG ", "name": "Ada Lovelace",
        "attributes": {"city": "London", "engine": 1, "verified": True, "note": None},
        "subscriptions": [{"newsletter": "alliance-digest", "status": "active"},
                          {"newsletter": "field-notes", "status": "pending"}],
    })
    assert r.status_code == 201, r.text
    made = r.json()
    assert made["email"] == "Ada.Lovelace@example.org"  # the domain is lowercased, not the name
    assert made["name"] == "Ada Lovelace"
    assert made["attributes"] == {"city": "London", "engine": 1, "verified": True, "note": None}
    assert made["suppressed"] is None
    assert [(s["newsletter"], s["status"]) for s in made["subscriptions"]] == [
        ("alliance-digest", "active"), ("field-notes", "pending")]

    got = client.get(f"/api/v1/subscribers/{made['id']}", headers=auth)
    assert got.status_code == 200
    assert got.json() == made

    row = db.get(Subscriber, made["id"])
    assert (row.email, row.email_key) == ("Ada.Lovelace@example.org", "ada.lovelace@example.org")
    consent = db.scalars(select(ConsentEvent).order_by(ConsentEvent.id)).all()
    assert [(c.subscriber_id, c.action, c.source, c.user_agent) for c in consent] == [
        (made["id"], "admin", "api:tests", "editor-script"),
        (made["id"], "signup", "api:tests", "editor-script"),
    ]
    assert all(c.ip == "testclient" for c in consent)


def test_the_same_address_in_another_case_is_409(client, auth, add_subscriber, db):
    first = add_subscriber("Foo@Example.org", name="First")
    before = snapshot(db)
    for other in ("foo@example.ORG", "FOO@EXAMPLE.ORG", " foo@example.org"):
        r = client.post("/api/v1/subscribers", json={"email": other, "name": "Second"},
                        headers=auth)
        assert r.status_code == 409, (other, r.text)
        assert r.json()["detail"]
    assert snapshot(db) == before
    assert client.get(f"/api/v1/subscribers/{first['id']}", headers=auth).json()["name"] == "First"


def test_patch_name_attributes_and_subscriptions(client, auth, add_subscriber, second_newsletter,
                                                 db):
    s = add_subscriber("grace@example.org", name="Grace", attributes={"city": "Arlington"})
    url = f"/api/v1/subscribers/{s['id']}"

    r = client.patch(url, headers=auth, json={"name": "Grace Hopper"})
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "Grace Hopper"
    assert r.json()["attributes"] == {"city": "Arlington"}  # untouched when not given

    r = client.patch(url, headers=auth, json={"attributes": {"rank": "Rear Admiral"}})
    assert r.json()["attributes"] == {"rank": "Rear Admiral"}
    assert r.json()["name"] == "Grace Hopper"

    r = client.patch(url, headers=auth, json={"subscriptions": [
        {"newsletter": "alliance-digest", "status": "unsubscribed"},
        {"newsletter": "field-notes", "status": "active"}]})
    assert r.status_code == 200, r.text
    subs = {x["newsletter"]: x for x in r.json()["subscriptions"]}
    assert subs["alliance-digest"]["status"] == "unsubscribed"
    assert subs["alliance-digest"]["unsubscribed_at"] is not None
    assert subs["field-notes"]["status"] == "active"

    r = client.patch(url, headers=auth, json={"email": "Grace@Navy.example.MIL"})
    assert r.json()["email"] == "Grace@navy.example.mil"

    fresh = client.get(url, headers=auth).json()
    assert fresh == r.json()
    actions = db.scalars(select(ConsentEvent.action).where(ConsentEvent.subscriber_id == s["id"])
                         .order_by(ConsentEvent.id)).all()
    assert actions == ["admin", "unsubscribe", "admin"]

    # Setting the status it already has logs nothing new.
    client.patch(url, headers=auth, json={"subscriptions": [
        {"newsletter": "field-notes", "status": "active"}]})
    assert db.scalar(select(func.count()).select_from(ConsentEvent)) == 3


def test_patch_to_an_address_another_subscriber_has_is_409(client, auth, add_subscriber, db):
    a = add_subscriber("a@example.org")
    add_subscriber("b@example.org")
    before = snapshot(db)
    r = client.patch(f"/api/v1/subscribers/{a['id']}", json={"email": "B@example.org"},
                     headers=auth)
    assert r.status_code == 409
    assert snapshot(db) == before


def test_subscribing_to_an_unknown_newsletter_is_404_and_stores_nothing(client, auth, newsletter,
                                                                         db):
    r = client.post("/api/v1/subscribers", headers=auth, json={
        "email": "x@example.org", "subscriptions": [{"newsletter": "nope"}]})
    assert r.status_code == 404
    assert snapshot(db) == [[], [], 0]


def test_delete_then_get_is_404(client, auth, add_subscriber, db):
    gone = add_subscriber("gone@example.org")
    kept = add_subscriber("kept@example.org")
    db.add(Suppression(email_key="gone@example.org", reason="complained"))
    db.commit()
    r = client.delete(f"/api/v1/subscribers/{gone['id']}", headers=auth)
    assert r.status_code == 204
    assert r.content == b""
    assert client.get(f"/api/v1/subscribers/{gone['id']}", headers=auth).status_code == 404
    assert client.delete(f"/api/v1/subscribers/{gone['id']}", headers=auth).status_code == 404
    assert client.patch(f"/api/v1/subscribers/{gone['id']}", headers=auth,
                        json={"name": "Back"}).status_code == 404
    # Subscriptions and the consent log go with the subscriber (nothing was sent to them); the
    # suppression stays, under a hash of the address.
    db.expire_all()
    assert db.scalars(select(Subscription.subscriber_id)).all() == [kept["id"]]
    assert set(db.scalars(select(ConsentEvent.subscriber_id))) == {kept["id"]}
    assert db.scalars(select(Suppression.email_key)).all() == [erased_key("gone@example.org")]
    assert client.get(f"/api/v1/subscribers/{kept['id']}", headers=auth).status_code == 200


def test_suppressed_shows_the_reason(client, auth, add_subscriber, db):
    s = add_subscriber("Bouncy@Example.org")
    assert s["suppressed"] is None
    db.add(Suppression(email_key="bouncy@example.org", reason="bounced", detail="550 5.1.1"))
    db.commit()
    got = client.get(f"/api/v1/subscribers/{s['id']}", headers=auth).json()
    assert got["suppressed"] == "bounced"
    [listed] = client.get("/api/v1/subscribers", headers=auth).json()["items"]
    assert listed["suppressed"] == "bounced"


# --- listing -----------------------------------------------------------------------------------


@pytest.fixture
def crowd(client, auth, add_subscriber, second_newsletter, db):
    """Six subscribers in every state the filters know."""
    made = {
        "pending": add_subscriber("pat.pending@example.org", name="Pat", status="pending"),
        "active": add_subscriber("ann.active@example.org", name="Ann Active"),
        "gone": add_subscriber("ulla@example.org", name="Ulla Gone", status="unsubscribed"),
        "bounced": add_subscriber("bob@bounce.example.org", name="Bob"),
        "underscore": add_subscriber("a_b@example.org", name="Under Score"),
        "percent": add_subscriber("100%club@example.org", name="Hundred 50% off"),
        "other": add_subscriber("otto@example.org", name="Otto", status=None),
    }
    # Otto only reads the other newsletter.
    r = client.patch(f"/api/v1/subscribers/{made['other']['id']}", headers=auth,
                     json={"subscriptions": [{"newsletter": "field-notes"}]})
    assert r.status_code == 200
    db.add(Suppression(email_key="bob@bounce.example.org", reason="bounced"))
    db.commit()
    return {k: v["id"] for k, v in made.items()}


def emails(client, auth, **params) -> list[str]:
    r = client.get("/api/v1/subscribers", headers=auth, params=params)
    assert r.status_code == 200, (params, r.text)
    return [i["email"] for i in r.json()["items"]]


def test_filter_by_newsletter_and_status(client, auth, crowd):
    assert emails(client, auth, newsletter="field-notes") == ["otto@example.org"]
    assert "otto@example.org" not in emails(client, auth, newsletter="alliance-digest")
    assert len(emails(client, auth, newsletter="alliance-digest")) == 6
    assert emails(client, auth, status="pending") == ["pat.pending@example.org"]
    assert emails(client, auth, status="unsubscribed") == ["ulla@example.org"]
    assert emails(client, auth, status="bounced") == ["bob@bounce.example.org"]
    assert emails(client, auth, status="complained") == []
    assert emails(client, auth, status="active", newsletter="field-notes") == ["otto@example.org"]
    assert emails(client, auth, status="active", newsletter="alliance-digest") == [
        "ann.active@example.org", "bob@bounce.example.org", "a_b@example.org",
        "100%club@example.org"]
    r = client.get("/api/v1/subscribers", headers=auth, params={"newsletter": "nope"})
    assert r.status_code == 404


def test_search_q_in_email_or_name(client, auth, crowd):
    assert emails(client, auth, q="ANN.active") == ["ann.active@example.org"]
    assert emails(client, auth, q="gone") == ["ulla@example.org"]  # in the name only
    assert emails(client, auth, q="bounce.example") == ["bob@bounce.example.org"]
    assert emails(client, auth, q="no-such-text") == []


def test_search_wildcards_match_literally(client, auth, crowd):
    # `_` and `%` are LIKE wildcards: here they are just characters.
    assert emails(client, auth, q="a_b") == ["a_b@example.org"]
    assert emails(client, auth, q="_") == ["a_b@example.org"]
    assert emails(client, auth, q="100%") == ["100%club@example.org"]
    assert emails(client, auth, q="50%") == ["100%club@example.org"]
    assert emails(client, auth, q="%") == ["100%club@example.org"]
    assert emails(client, auth, q="\\") == []


def test_cursor_walks_everyone_exactly_once(client, auth, crowd):
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        r = client.get("/api/v1/subscribers", headers=auth, params=params)
        assert r.status_code == 200
        body = r.json()
        assert len(body["items"]) <= 2
        seen += [i["id"] for i in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(crowd.values())
    assert len(seen) == len(set(seen)) == 7
    assert pages == 4
    # A filter carries over the pages too.
    first = client.get("/api/v1/subscribers", headers=auth,
                       params={"limit": 2, "status": "active"}).json()
    rest = client.get("/api/v1/subscribers", headers=auth,
                      params={"limit": 2, "status": "active", "cursor": first["next_cursor"]}
                      ).json()
    assert [i["email"] for i in first["items"] + rest["items"]] == [
        "ann.active@example.org", "bob@bounce.example.org", "a_b@example.org",
        "100%club@example.org"]
    last = client.get("/api/v1/subscribers", headers=auth,
                      params={"limit": 2, "status": "active", "cursor": rest["next_cursor"]}
                      ).json()
    assert [i["email"] for i in last["items"]] == ["otto@example.org"]
    assert last["next_cursor"] is None


@pytest.mark.parametrize("params", [
    {"cursor": "garbage!"}, {"cursor": "aWQ6eA"}, {"cursor": "bm90LWFuLWlk"}, {"cursor": "%00"},
    {"cursor": "aWQ6OTk5OTk5OTk5OTk5OTk5OTk5OTk5OTk5"}, {"cursor": "aWQ6LTE"}, {"cursor": "\x00"},
    {"limit": 0}, {"limit": -1}, {"limit": 501}, {"limit": "ten"}, {"limit": 10**30},
    {"status": "deleted"}, {"status": "\x00"}, {"q": "x" * 255}, {"q": "\x00"},
    {"q": "nul\x00byte"}, {"newsletter": "\x00"},
])
def test_bad_list_parameters_are_4xx(client, auth, crowd, params):
    r = client.get("/api/v1/subscribers", headers=auth, params=params)
    assert r.status_code in (404, 422), (params, r.status_code, r.text)
    assert r.json()["detail"]


def test_limit_bounds(client, auth, crowd):
    assert len(client.get("/api/v1/subscribers", headers=auth, params={"limit": 1}
                          ).json()["items"]) == 1
    r = client.get("/api/v1/subscribers", headers=auth, params={"limit": 500})
    assert r.status_code == 200 and r.json()["next_cursor"] is None
    assert client.get("/api/v1/subscribers", headers=auth, params={"limit": 501}
                      ).status_code == 422


# --- bad input ---------------------------------------------------------------------------------


BAD_CREATE = [
    {"email": "not-an-address"},
    {"email": "a@b@example.org"},
    {"email": "ada@example..org"},
    {"email": ""},
    {"email": "   "},
    {"email": "ada@example.org\r\nBcc: all@example.org"},
    {"email": "ada\x00@example.org"},
    {"email": "a" * 245 + "@example.org"},
    {"email": None},
    {"email": 42},
    {"email": ["ada@example.org"]},
    {"name": "Ada\r\nBcc: all@example.org"},
    {"name": "Ada\nLovelace"},
    {"name": "Ada\rLovelace"},
    {"name": "Ada\x00"},
    {"name": "n" * 201},
    {"name": 7},
    {"attributes": ["not", "an", "object"]},
    {"attributes": "city=London"},
    {"attributes": 3},
    {"attributes": {"nested": {"a": 1}}},
    {"attributes": {"list": [1, 2]}},
    {"attributes": {"bad\nkey": "x"}},
    {"attributes": {"": "x"}},
    {"attributes": {"k" * 65: "x"}},
    {"attributes": {"city": "v" * 1001}},
    {"attributes": {"city": "nul\x00"}},
    {"attributes": {f"a{i}": i for i in range(51)}},
    {"attributes": {"Status": "x"}},  # reserved: a column of the CSV export
    {"attributes": {"email": "x"}},
    {"subscriptions": [{"newsletter": "alliance-digest", "status": "bounced"}]},
    {"subscriptions": "alliance-digest"},
    {"subscriptions": [{"newsletter": "\x00"}]},
    {"unknown": 1},
]


@pytest.mark.parametrize("bad", BAD_CREATE)
def test_bad_create_is_422_and_stores_nothing(client, auth, add_subscriber, db, bad):
    add_subscriber("kept@example.org", name="Kept", attributes={"city": "Oslo"})
    before = snapshot(db)
    body = {"email": "ada@example.org", "name": "Ada", **bad}
    r = client.post("/api/v1/subscribers", json=body, headers=auth)
    assert r.status_code in (404, 422), (bad, r.status_code, r.text)
    assert r.json()["detail"]
    assert snapshot(db) == before


@pytest.mark.parametrize("bad", [b for b in BAD_CREATE if "email" not in b or b["email"]])
def test_bad_patch_is_4xx_and_changes_nothing(client, auth, add_subscriber, db, bad):
    s = add_subscriber("kept@example.org", name="Kept", attributes={"city": "Oslo"})
    before = snapshot(db)
    r = client.patch(f"/api/v1/subscribers/{s['id']}", json=bad, headers=auth)
    assert r.status_code in (404, 422), (bad, r.status_code, r.text)
    assert snapshot(db) == before


@pytest.mark.parametrize("content,status", [
    (b"{not json", 422), (b"", 422), (b"[]", 422), (b'"a string"', 422), (b"null", 422),
    (b'{"email": NaN}', 422), (b'{"email": "a@example.org", "name": Infinity}', 422),
    (b'{"email": "a@example.org"', 422),
    # Bytes that are not text at all: FastAPI's own "error parsing the body", a 400.
    (b"\xff\xfe\x00", 400),
])
def test_a_body_that_is_not_a_json_object_is_refused(client, auth, add_subscriber, db, content,
                                                     status):
    s = add_subscriber("kept@example.org")
    before = snapshot(db)
    for method, url in (("POST", "/api/v1/subscribers"),
                        ("PATCH", f"/api/v1/subscribers/{s['id']}")):
        r = client.request(method, url, content=content,
                           headers={**auth, "content-type": "application/json"})
        assert r.status_code == status, (method, content, r.status_code, r.text)
        assert r.json()["detail"]
    assert snapshot(db) == before


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_attributes_that_are_not_json_numbers_are_422(client, auth, add_subscriber, db, number):
    s = add_subscriber("kept@example.org", attributes={"score": 1})
    before = snapshot(db)
    body = f'{{"email": "ada@example.org", "attributes": {{"score": {number}}}}}'.encode()
    r = client.post("/api/v1/subscribers", content=body,
                    headers={**auth, "content-type": "application/json"})
    assert r.status_code == 422, r.text
    r = client.patch(f"/api/v1/subscribers/{s['id']}", content=b'{"attributes": {"score": '
                     + number.encode() + b"}}",
                     headers={**auth, "content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert snapshot(db) == before


@pytest.mark.parametrize("sid", ["99999999999999", "2147483648", "0", "-1", "abc", "1.5",
                                 "1e3", "%00"])
def test_an_id_that_cannot_be_a_subscriber_is_a_4xx(client, auth, add_subscriber, db, sid):
    add_subscriber("kept@example.org")
    before = snapshot(db)
    for method in ("GET", "PATCH", "DELETE"):
        r = client.request(method, f"/api/v1/subscribers/{sid}", headers=auth,
                           json={"name": "X"} if method == "PATCH" else None)
        assert r.status_code in (404, 422), (method, sid, r.status_code, r.text)
        assert r.json()["detail"]
    assert snapshot(db) == before


def test_huge_id_is_422_and_unknown_id_is_404(client, auth, newsletter):
    assert client.get("/api/v1/subscribers/99999999999999", headers=auth).status_code == 422
    assert client.get("/api/v1/subscribers/2147483647", headers=auth).status_code == 404


def test_two_editors_adding_one_address_at_once_get_one_subscriber_and_a_409(newsletter, db):
    """The second request's check cannot see the first's uncommitted row; the index can."""
    import threading

    from sqlalchemy import text

    from app.db import get_sessionmaker, session_scope
    from app.errors import Conflict
    from app.subscribers import service
    from app.subscribers.schemas import SubscriberCreate
    from tests.conftest import wait_until

    first = get_sessionmaker()()
    outcome: dict[str, str] = {}

    def second() -> None:
        try:
            with session_scope() as session:
                service.create(session, SubscriberCreate(email="Race@example.org"),
                               service.Actor("api:second"))
            outcome["second"] = "created"
        except Conflict as exc:
            outcome["second"] = f"409 {exc.detail}"
        except Exception as exc:  # a 500 in the API
            outcome["second"] = repr(exc)

    try:
        service.create(first, SubscriberCreate(email="race@example.org", name="First"),
                       service.Actor("api:first"))
        thread = threading.Thread(target=second)
        thread.start()
        # The second insert waits on the first's row in the unique index.
        wait_until(lambda: db.scalar(text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock'")), what="the second insert to wait")
        first.commit()
    finally:
        first.close()
    thread.join(15)
    assert outcome == {"second": "409 a subscriber with this address exists already"}
    db.expire_all()
    assert [(s.email, s.name) for s in db.scalars(select(Subscriber))] == [
        ("race@example.org", "First")]
