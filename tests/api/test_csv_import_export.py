"""Bulk CSV in and out through the editor API."""

from __future__ import annotations

import csv
import io
import time

import pytest
from sqlalchemy import func, select

from app.newsletters.models import Newsletter
from app.subscribers.models import ConsentEvent, Subscriber, Subscription, Suppression

IMPORT = "/api/v1/subscribers/import"
EXPORT = "/api/v1/subscribers/export"


def post_csv(client, auth, content, newsletter="alliance-digest", **params):
    return client.post(IMPORT, params={"newsletter": newsletter, **params}, content=content,
                       headers={**auth, "content-type": "text/csv"})


def stored(db) -> dict[str, tuple]:
    """email → (name, attributes, {newsletter id: status}) for everyone stored."""
    db.expire_all()
    subs: dict[int, dict[int, str]] = {}
    for sid, nid, status in db.execute(
        select(Subscription.subscriber_id, Subscription.newsletter_id, Subscription.status)
    ):
        subs.setdefault(sid, {})[nid] = status
    return {s.email: (s.name, s.attributes, subs.get(s.id, {}))
            for s in db.scalars(select(Subscriber))}


def count(db, model) -> int:
    return db.scalar(select(func.count()).select_from(model))


@pytest.fixture
def second_newsletter(client, auth, newsletter):
    r = client.post("/api/v1/newsletters", headers=auth, json={
        "slug": "field-notes", "name": "Field Notes", "from_name": "Field Notes",
        "from_email": "notes@riverside-water.example.org"})
    assert r.status_code == 201
    return r.json()


# --- import ------------------------------------------------------------------------------------


def test_import_stores_rows_with_extra_columns_as_attributes(client, auth, newsletter, db):
    body = (
        "email,name,city,plan\r\n"
        "Ada@Example.ORG,Ada Lovelace,London,pro\r\n"
        "grace@example.org,,Arlington,\r\n"
        "linus@example.org,Linus\r\n"
    )
    r = post_csv(client, auth, body.encode())
    assert r.status_code == 200, r.text
    report = r.json()
    assert (report["created"], report["updated"], report["errors"]) == (3, 0, [])
    assert stored(db) == {
        "Ada@example.org": ("Ada Lovelace", {"city": "London", "plan": "pro"},
                            {newsletter.id: "active"}),
        "grace@example.org": ("", {"city": "Arlington"}, {newsletter.id: "active"}),
        "linus@example.org": ("Linus", {}, {newsletter.id: "active"}),
    }
    consent = db.execute(select(ConsentEvent.action, ConsentEvent.source)).all()
    assert sorted(consent) == [("import", "csv-import:tests")] * 3


def test_header_is_matched_loosely_and_a_bom_is_ignored(client, auth, newsletter, db):
    body = "\ufeff Name ,EMAIL,Team\nAda,ada@example.org,Engines\n".encode()
    r = post_csv(client, auth, body)
    assert r.json()["created"] == 1, r.text
    assert stored(db) == {"ada@example.org": ("Ada", {"Team": "Engines"},
                                              {newsletter.id: "active"})}


def test_a_bad_row_is_reported_with_its_line_and_the_rest_go_in(client, auth, newsletter, db):
    lines = [
        "email,name,city",                                          # 1
        "ok1@example.org,One,Oslo",                                 # 2
        "not-an-address,Two,Rome",                                  # 3
        '"ok2@example.org","Two\nlines in a name",Bern',            # 4-5
        "ok3@example.org,Three,Bonn",                               # 6
        'ok4@example.org,"Carriage\rReturn",Lyon',                  # 7
        "ok5@example.org,Five,Kyiv,one too many",                   # 8
        "",                                                         # 9, blank: skipped
        "ok6@example.org,Six",                                      # 10
        'ok7@example.org,Seven,"=HYPERLINK(""x"")"',                # 11, stored as text
        "a@b@example.org,Bad",                                      # 12
        "ok8@example.org,Eight,Nul\x00",                            # 13
        "ok9@example.org," + "n" * 201,                             # 14
        "x" * 250 + "@example.org,Long",                            # 15
        "ok10@example.org,Ten,Turku",                               # 16
        'ok11@example.org,"unterminated,Bern',                      # 17: runs to the end
    ]
    r = post_csv(client, auth, "\n".join(lines).encode())
    assert r.status_code == 200, r.text
    report = r.json()
    details = {e["line"]: e["detail"] for e in report["errors"]}
    assert sorted(details) == [3, 4, 7, 8, 12, 13, 14, 15, 17], report["errors"]
    assert "invalid email" in details[3]
    assert "line breaks" in details[4] and "line breaks" in details[7]
    assert "4 cells" in details[8] and "3 columns" in details[8]
    assert "longer than 200" in details[14]
    assert "longer than 254" in details[15]
    assert report["created"] == 5 and report["updated"] == 0
    rows = stored(db)
    assert sorted(rows) == ["ok10@example.org", "ok1@example.org", "ok3@example.org",
                            "ok6@example.org", "ok7@example.org"]
    assert rows["ok7@example.org"][1] == {"city": '=HYPERLINK("x")'}


def test_line_numbers_count_lines_not_records(client, auth, newsletter):
    # A quoted cell may span lines; the line reported is where the row starts, in the file.
    body = ('email,name,note\n'             # 1
            'a@example.org,A,"one\n'        # 2
            'two\n'                         # 3
            'three"\n'                      # 4
            'bad,B,x\n'                     # 5
            'c@example.org,C,"x\r\n'       # 6
            'y"\r\n'                        # 7
            'also-bad,D,x\n'                # 8
            'd@example.org,D,fine\n')       # 9
    r = post_csv(client, auth, body.encode())
    assert [e["line"] for e in r.json()["errors"]] == [2, 5, 6, 8], r.text
    assert r.json()["created"] == 1


def test_reimport_updates_and_merges_instead_of_duplicating(client, auth, newsletter, db):
    first = "email,name,city,plan\nada@example.org,Ada,London,pro\nbob@example.org,Bob,Paris,\n"
    assert post_csv(client, auth, first.encode()).json()["created"] == 2
    again = ("email,name,plan,team\n"
             "ADA@example.org,,basic,Engines\n"       # empty name: keeps the stored one
             "bob@EXAMPLE.org,Robert,,Ops\n")
    r = post_csv(client, auth, again.encode())
    report = r.json()
    assert (report["created"], report["updated"], report["errors"]) == (0, 2, [])
    assert count(db, Subscriber) == 2 and count(db, Subscription) == 2
    assert stored(db) == {
        "ada@example.org": ("Ada", {"city": "London", "plan": "basic", "team": "Engines"},
                            {newsletter.id: "active"}),
        "bob@example.org": ("Robert", {"city": "Paris", "team": "Ops"},
                            {newsletter.id: "active"}),
    }


def test_the_same_address_twice_in_one_file_is_one_subscriber(client, auth, newsletter, db):
    body = "email,name,city,plan\nada@example.org,Ada,London,\nADA@example.org,Ada L.,,pro\n"
    r = post_csv(client, auth, body.encode())
    assert r.json()["errors"] == []
    assert r.json()["created"] + r.json()["updated"] == 2
    assert stored(db) == {"ada@example.org": ("Ada L.", {"city": "London", "plan": "pro"},
                                              {newsletter.id: "active"})}


def test_an_unsubscribed_reader_stays_unsubscribed(client, auth, newsletter, second_newsletter,
                                                   db):
    r = client.post("/api/v1/subscribers", headers=auth, json={
        "email": "left@example.org", "name": "Left",
        "subscriptions": [{"newsletter": "alliance-digest", "status": "unsubscribed"}]})
    assert r.status_code == 201
    body = b"email,name\nleft@example.org,Left Again\nnew@example.org,New\n"
    report = post_csv(client, auth, body).json()
    assert (report["created"], report["updated"], report["kept_unsubscribed"]) == (1, 1, 1)
    rows = stored(db)
    assert rows["left@example.org"] == ("Left Again", {}, {newsletter.id: "unsubscribed"})
    # Importing onto another newsletter is a new subscription there, and leaves this one alone.
    report = post_csv(client, auth, body, newsletter="field-notes").json()
    assert (report["created"], report["updated"]) == (0, 2)
    field_notes = db.scalar(select(Newsletter.id).where(Newsletter.slug == "field-notes"))
    assert stored(db)["left@example.org"][2] == {newsletter.id: "unsubscribed",
                                                 field_notes: "active"}


def test_pending_import_mails_each_new_reader_a_confirmation(client, auth, newsletter, worker,
                                                             inbox, db):
    client.post("/api/v1/subscribers", headers=auth, json={
        "email": "known@example.org",
        "subscriptions": [{"newsletter": "alliance-digest", "status": "active"}]})
    db.add(Suppression(email_key="bounced@example.org", reason="bounced"))
    db.commit()
    body = ("email,name\n"
            "one@example.org,One\n"
            "Two@Example.org,Two\n"
            "three@example.org,Three\n"
            "known@example.org,Known\n"
            "bounced@example.org,Bounced\n")
    r = post_csv(client, auth, body.encode(), status="pending")
    assert r.status_code == 200, r.text
    assert r.json()["created"] == 4 and r.json()["updated"] == 1
    statuses = {email: subs[newsletter.id] for email, (_, _, subs) in stored(db).items()}
    assert statuses == {"one@example.org": "pending", "Two@example.org": "pending",
                        "three@example.org": "pending", "known@example.org": "active",
                        "bounced@example.org": "pending"}
    messages = inbox.wait_for(3)
    # The known reader and the suppressed address get nothing; give a stray mail time to show.
    time.sleep(1.5)
    recipients = sorted(rcpt for _, rcpts, _ in inbox.messages for rcpt in rcpts)
    assert recipients == ["Two@example.org", "one@example.org", "three@example.org"]
    assert all(m["Subject"] == "Confirm your subscription to Alliance Digest" for m in messages)
    assert all("/confirm/" in m.get_body(("plain",)).get_content() for m in messages)


@pytest.mark.parametrize("content,reason", [
    (b"", "empty"),
    (b"\n\n", "email"),
    (b"name,city\nAda,London\n", "email"),
    (b"mail,name\nada@example.org,Ada\n", "email"),
    (b"email,name,email\na@example.org,A,b@example.org\n", "twice"),
    (b"email,,city\na@example.org,,x\n", "empty column"),
    (b"email,name,bad\x01col\na@example.org,A,x\n", "control"),
    (b"email,name," + b"k" * 65 + b"\na@example.org,A,x\n", "longer than 64"),
    (b"email,name," + ",".join(f"c{i}" for i in range(51)).encode() + b"\n", "at most 50"),
    ("email,näme\n".encode("latin-1"), "UTF-8"),
    ("email,name\n".encode("utf-16"), "UTF-8"),
    (b'"email,name\n', "not valid CSV"),
])
def test_a_file_that_cannot_be_imported_is_422_and_stores_nothing(client, auth, newsletter, db,
                                                                   content, reason):
    r = post_csv(client, auth, content)
    assert r.status_code == 422, r.text
    assert reason in r.json()["detail"]
    assert count(db, Subscriber) == 0


def test_bytes_that_are_not_utf8_are_a_reported_error(client, auth, newsletter, db):
    body = (b"email,name\n"
            b"ada@example.org,Ada\n"
            + "jose@example.org,José\n".encode("latin-1")
            + "zoe@example.org,Zoë\n".encode())
    r = post_csv(client, auth, body)
    assert r.status_code == 200, r.text
    assert [e["line"] for e in r.json()["errors"]] == [3]
    assert "UTF-8" in r.json()["errors"][0]["detail"]
    assert sorted(stored(db)) == ["ada@example.org", "zoe@example.org"]
    assert stored(db)["zoe@example.org"][0] == "Zoë"


def test_import_parameters(client, auth, newsletter, db):
    body = b"email\na@example.org\n"
    assert post_csv(client, auth, body, newsletter="nope").status_code == 404
    # A NUL in any query string is refused as such (the one rule of app/validation.py).
    assert post_csv(client, auth, body, newsletter="nul\x00").status_code == 422
    assert post_csv(client, auth, body, status="unsubscribed").status_code == 422
    r = client.post(IMPORT, content=body, headers=auth)
    assert r.status_code == 422  # no newsletter
    assert count(db, Subscriber) == 0


def test_a_suppressed_address_is_imported_but_stays_suppressed(client, auth, newsletter, db):
    db.add(Suppression(email_key="gone@example.org", reason="complained"))
    db.commit()
    post_csv(client, auth, b"email\nGone@example.org\n")
    [item] = client.get("/api/v1/subscribers", headers=auth).json()["items"]
    assert item["suppressed"] == "complained"


# --- export ------------------------------------------------------------------------------------


def read_csv(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


def test_export_header_rows_and_formula_cells(client, auth, newsletter, second_newsletter, db):
    people = [
        ("-dash@example.org", "=cmd|' /C calc'!A0", {"score": "+1", "city": "Oslo"}),
        ("plain@example.org", "Plain Person", {"note": "@SUM(A1)", "score": "-2"}),
        ("zed@example.org", "Zed", {"zz": "=1+1", "city": "@home"}),
    ]
    ids = []
    for email, name, attrs in people:
        r = client.post("/api/v1/subscribers", headers=auth, json={
            "email": email, "name": name, "attributes": attrs,
            "subscriptions": [{"newsletter": "alliance-digest", "status": "active"}]})
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    client.patch(f"/api/v1/subscribers/{ids[1]}", headers=auth, json={"subscriptions": [
        {"newsletter": "field-notes", "status": "pending"}]})
    db.add(Suppression(email_key="plain@example.org", reason="bounced"))
    db.commit()

    r = client.get(EXPORT, headers=auth)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    rows = read_csv(r.text)
    assert rows[0] == ["email", "name", "status", "suppressed", "created_at",
                       "city", "note", "score", "zz"]
    assert len(rows) == 4
    by_email = {row[0]: row for row in rows[1:]}
    dash = by_email["'-dash@example.org"]
    assert dash[1] == "'=cmd|' /C calc'!A0"
    assert dash[2] == "alliance-digest:active"
    assert dash[3] == ""
    assert dash[5:] == ["Oslo", "", "'+1", ""]
    plain = by_email["plain@example.org"]
    assert plain[2] == "alliance-digest:active field-notes:pending"
    assert plain[3] == "bounced"
    assert plain[5:] == ["", "'@SUM(A1)", "'-2", ""]
    zed = by_email["zed@example.org"]
    assert zed[5:] == ["'@home", "", "", "'=1+1"]
    # No cell anywhere starts with a character a spreadsheet would run.
    assert not [c for row in rows for c in row if c[:1] in ("=", "+", "-", "@", "\t", "\r")]


def test_export_newsletter_filter(client, auth, newsletter, second_newsletter):
    for email, slug, status in (("a@example.org", "alliance-digest", "active"),
                                ("b@example.org", "field-notes", "pending"),
                                ("c@example.org", "alliance-digest", "unsubscribed")):
        client.post("/api/v1/subscribers", headers=auth, json={
            "email": email, "subscriptions": [{"newsletter": slug, "status": status}]})
    client.post("/api/v1/subscribers", headers=auth, json={"email": "none@example.org"})
    rows = read_csv(client.get(EXPORT, headers=auth, params={"newsletter": "alliance-digest"}
                               ).text)
    assert [(r[0], r[2]) for r in rows[1:]] == [("a@example.org", "active"),
                                               ("c@example.org", "unsubscribed")]
    rows = read_csv(client.get(EXPORT, headers=auth, params={"newsletter": "field-notes"}).text)
    assert [(r[0], r[2]) for r in rows[1:]] == [("b@example.org", "pending")]
    everyone = read_csv(client.get(EXPORT, headers=auth).text)
    assert [r[0] for r in everyone[1:]] == ["a@example.org", "b@example.org", "c@example.org",
                                            "none@example.org"]
    assert client.get(EXPORT, headers=auth, params={"newsletter": "nope"}).status_code == 404


def test_an_exported_file_reimports_without_duplicates_or_changes(client, auth, newsletter, db):
    people = [
        ("Ada@Example.org", "=Ada", {"city": "London", "score": "-3"}),
        ("-dash@example.org", "Dash", {"plan": "+pro"}),
        ("bob@example.org", "Bob, \"the\" builder", {}),
        ("zoe@example.org", "Zoë", {"city": "Zürich"}),
    ]
    for email, name, attrs in people:
        assert client.post("/api/v1/subscribers", headers=auth, json={
            "email": email, "name": name, "attributes": attrs,
            "subscriptions": [{"newsletter": "alliance-digest", "status": "active"}],
        }).status_code == 201
    client.post("/api/v1/subscribers", headers=auth, json={
        "email": "left@example.org",
        "subscriptions": [{"newsletter": "alliance-digest", "status": "unsubscribed"}]})
    before = stored(db)
    exported = client.get(EXPORT, headers=auth, params={"newsletter": "alliance-digest"}).content

    r = post_csv(client, auth, exported)
    assert r.status_code == 200, r.text
    report = r.json()
    assert (report["created"], report["updated"], report["errors"]) == (0, 5, [])
    assert stored(db) == before
    # The same file exported again is the same file.
    again = client.get(EXPORT, headers=auth, params={"newsletter": "alliance-digest"}).content
    assert again == exported
