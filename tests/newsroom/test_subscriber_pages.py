"""Subscribers in the newsroom: find, page, add, edit, unsubscribe, import with errors, export."""

from __future__ import annotations

import html
import io
import re

from tests.newsroom.conftest import csrf_of


def _readers(db, newsletter, n: int, prefix: str = "reader") -> list[int]:
    from app.subscribers.models import Subscriber, Subscription

    ids = []
    for i in range(n):
        s = Subscriber(email=f"{prefix}{i}@example.org", email_key=f"{prefix}{i}@example.org",
                       name=f"Reader {i}")
        db.add(s)
        db.flush()
        db.add(Subscription(subscriber_id=s.id, newsletter_id=newsletter.id, status="active"))
        ids.append(s.id)
    db.commit()
    return ids


def test_search_filters_and_pages(signed_in, newsletter, db):
    _readers(db, newsletter, 60)
    editor = signed_in("editor")
    first = editor.get("/admin/subscribers")
    assert first.status_code == 200
    assert len(re.findall(r'href="/admin/subscribers/\d+"', first.text)) == 50
    cursor = html.unescape(re.search(r'cursor=([^"&]+)"', first.text).group(1))
    second = editor.get(f"/admin/subscribers?cursor={cursor}")
    assert "reader59@example.org" in second.text and "reader0@example.org" not in second.text
    found = editor.get("/admin/subscribers?q=reader42")
    assert "reader42@example.org" in found.text and "reader41@example.org" not in found.text
    none = editor.get("/admin/subscribers?status=unsubscribed")
    assert "No subscriber matches" in none.text
    assert editor.get("/admin/subscribers?status=bogus").status_code == 422


def test_add_edit_unsubscribe(signed_in, newsletter, db):
    from sqlalchemy import select

    from app.subscribers.models import ConsentEvent, Subscriber

    editor = signed_in("editor")
    page = editor.get("/admin/subscribers/new")
    token = csrf_of(page.text)
    r = editor.post("/admin/subscribers/new", data={"csrf_token": token, "email": "not-an-address",
                                                    "newsletter": "alliance-digest"})
    assert r.status_code == 422 and 'aria-describedby="e-email"' in r.text
    r = editor.post("/admin/subscribers/new", data={
        "csrf_token": token, "email": "New@Example.org", "name": "New Reader",
        "newsletter": "alliance-digest", "status": "active"}, follow_redirects=False)
    assert r.status_code == 303
    subscriber = db.scalars(select(Subscriber).where(Subscriber.email_key == "new@example.org")
                            ).one()
    page = editor.get(r.headers["location"])
    assert "Subscriber added." in page.text and "New Reader" in page.text
    r = editor.post(f"/admin/subscribers/{subscriber.id}", data={
        "csrf_token": token, "email": "new@example.org", "name": "Renamed"},
        follow_redirects=False)
    assert r.status_code == 303
    r = editor.post(f"/admin/subscribers/{subscriber.id}/unsubscribe", data={
        "csrf_token": token, "newsletter": "alliance-digest"}, follow_redirects=False)
    assert r.status_code == 303
    db.expire_all()
    subscriber = db.get(Subscriber, subscriber.id)
    assert subscriber.name == "Renamed"
    assert subscriber.subscriptions[0].status == "unsubscribed"
    actions = db.scalars(select(ConsentEvent.action).where(
        ConsentEvent.subscriber_id == subscriber.id)).all()
    assert "unsubscribe" in actions
    page = editor.get(f"/admin/subscribers/{subscriber.id}")
    assert "Consent log" in page.text and "web:editor" in page.text


def test_csv_import_runs_in_a_worker_and_reports_the_bad_line(signed_in, newsletter, db,
                                                                worker):
    from sqlalchemy import select

    from app.subscribers.models import ImportJobPart, Subscriber
    from tests.conftest import wait_until

    editor = signed_in("editor")
    token = csrf_of(editor.get("/admin/subscribers").text)
    csv_body = b"email,name,city\nann@example.org,Ann,Oslo\nnot an address,Bob,Rome\n" \
               b"cy@example.org,Cy,Lima\n"
    r = editor.post("/admin/subscribers/import", data={
        "csrf_token": token, "newsletter": "alliance-digest"},
        files={"file": ("readers.csv", csv_body, "text/csv")}, follow_redirects=False)
    assert r.status_code == 303
    job_page = r.headers["location"]
    assert re.fullmatch(r"/admin/subscribers/imports/\d+", job_page)
    first = editor.get(job_page)
    assert first.status_code == 200 and "readers.csv" in first.text
    done = wait_until(lambda: (p := editor.get(job_page).text) and "data-finished" in p and p,
                      timeout=60, what="the import to finish")
    assert '<meta http-equiv="refresh"' not in done
    # The subscribers page leads back to it.
    assert f'href="{job_page}"' in editor.get("/admin/subscribers").text
    report = done[done.index('id="import-report"'):]
    assert "3 rows done: 2 created" in report and "1 line with errors" in report
    assert re.search(r"<td class=\"num\">3</td><td>[^<]*invalid email", report)
    db.expire_all()
    assert set(db.scalars(select(Subscriber.email))) == {"ann@example.org", "cy@example.org"}
    assert db.scalars(select(ImportJobPart)).all() == []  # the stored file is gone
    export = editor.get("/admin/subscribers/export?newsletter=alliance-digest")
    assert export.status_code == 200 and "attachment" in export.headers["content-disposition"]
    assert "ann@example.org" in export.text and "cy@example.org" in export.text


def test_import_progress_is_recorded_and_a_bad_file_is_reported(newsletter, db, test_env,
                                                                 monkeypatch):
    """In process (the task's body): progress after each batch, and a file refused whole."""
    from app.subscribers import csvio, imports

    # The task's body runs here: no worker of the session may take the job first.
    monkeypatch.setattr(imports, "enqueue_after_commit", lambda *args: None)

    seen = []
    lines = "".join(f"r{i}@example.org,R {i}\n" for i in range(csvio.BATCH + 10))
    body = ("email,name\n" + lines + "oops,Bad\n").encode()
    job = imports.start(db, io.BytesIO(body), newsletter=newsletter, filename="big.csv",
                        pending=False, created_by="tests")
    db.commit()
    original = imports._progress

    def spy(report, bytes_done):
        seen.append((report.created, bytes_done))
        return original(report, bytes_done)

    monkeypatch.setattr(imports, "_progress", spy)
    imports.run(job.id)
    imports.run(job.id)  # a second delivery of the task does nothing
    db.expire_all()
    job = imports.get(db, job.id)
    assert (job.status, job.created, job.error_count) == ("done", csvio.BATCH + 10, 1)
    assert job.errors == [{"line": csvio.BATCH + 12, "detail": job.errors[0]["detail"]}]
    assert seen[0][0] == csvio.BATCH and 0 < seen[0][1] < len(body)
    assert seen[-1] == (csvio.BATCH + 10, len(body))

    bad = imports.start(db, io.BytesIO(b"name\nNo Email\n"), newsletter=newsletter,
                        filename="bad.csv", pending=False, created_by="tests")
    db.commit()
    imports.run(bad.id)
    db.expire_all()
    bad = imports.get(db, bad.id)
    assert bad.status == "failed" and "'email' column" in bad.detail


def test_scope_and_roles(signed_in, newsletter, other_newsletter, db):
    from app.subscribers.models import Subscriber

    [mine] = _readers(db, other_newsletter, 1, "notes")
    [theirs] = _readers(db, newsletter, 1, "digest")
    limited = signed_in("editor", newsletters=("river-notes",))
    listing = limited.get("/admin/subscribers")
    assert "notes0@example.org" in listing.text and "digest0@example.org" not in listing.text
    assert limited.get("/admin/subscribers?newsletter=alliance-digest").status_code == 404
    assert limited.get(f"/admin/subscribers/{theirs}").status_code == 404
    assert limited.get(f"/admin/subscribers/{mine}").status_code == 200
    assert limited.get("/admin/subscribers/export").status_code == 422
    assert limited.get("/admin/subscribers/export?newsletter=alliance-digest").status_code == 404
    token = csrf_of(listing.text)
    r = limited.post(f"/admin/subscribers/{theirs}/unsubscribe",
                     data={"csrf_token": token, "newsletter": "alliance-digest"})
    assert r.status_code == 404
    r = limited.post("/admin/subscribers/import", data={
        "csrf_token": token, "newsletter": "alliance-digest"},
        files={"file": ("x.csv", b"email\nz@example.org\n", "text/csv")})
    assert r.status_code == 404
    from app.subscribers import imports

    their_import = imports.start(db, io.BytesIO(b"email\nz@example.org\n"),
                                 newsletter=newsletter, filename="x.csv", pending=False,
                                 created_by="tests")
    db.commit()
    assert limited.get(f"/admin/subscribers/imports/{their_import.id}").status_code == 404
    assert f"/admin/subscribers/imports/{their_import.id}" not in limited.get(
        "/admin/subscribers").text
    r = limited.post("/admin/subscribers/import", data={
        "csrf_token": token, "newsletter": "river-notes"},
        files={"file": ("empty.csv", b"", "text/csv")})
    assert r.status_code == 422 and "The file is empty." in r.text
    viewer = signed_in("viewer")
    page = viewer.get(f"/admin/subscribers/{theirs}")
    assert page.status_code == 200 and "Unsubscribe from" not in page.text
    r = viewer.post(f"/admin/subscribers/{theirs}/unsubscribe",
                    data={"csrf_token": csrf_of(page.text), "newsletter": "alliance-digest"})
    assert r.status_code == 403
    db.expire_all()
    assert db.get(Subscriber, theirs).subscriptions[0].status == "active"


def test_search_finds_part_of_an_address_or_a_name_and_pages_deep(signed_in, newsletter, db):
    from app.subscribers.models import Subscriber, Subscription

    for i, (email, name) in enumerate([("ines.moreau@example.org", "Inès Moreau"),
                                       ("t.okafor@post.example.net", "Tobi Okafor"),
                                       ("moreau.fan@example.com", "Someone Else")]):
        s = Subscriber(email=email, email_key=email, name=name)
        db.add(s)
        db.flush()
        db.add(Subscription(subscriber_id=s.id, newsletter_id=newsletter.id,
                            status="active" if i else "pending"))
    db.commit()
    _readers(db, newsletter, 120)
    editor = signed_in("editor")
    by_address = editor.get("/admin/subscribers?q=post.example")
    assert "t.okafor@post.example.net" in by_address.text
    assert "ines.moreau@example.org" not in by_address.text
    by_name = editor.get("/admin/subscribers?q=%C3%A8s%20MOR")  # "ès MOR": the name's middle
    assert "ines.moreau@example.org" in by_name.text
    assert "moreau.fan@example.com" not in by_name.text
    both = editor.get("/admin/subscribers?q=moreau")
    assert "ines.moreau@example.org" in both.text and "moreau.fan@example.com" in both.text
    literal = editor.get("/admin/subscribers?q=reader_1")  # "_" is not a wildcard
    assert "No subscriber matches" in literal.text
    # Follow "Next page" to the third page: it holds exactly the readers after the second.
    page, seen = editor.get("/admin/subscribers"), []
    for _ in range(3):
        seen.append(re.findall(r'href="/admin/subscribers/\d+">([^<]+)<', page.text))
        found = re.search(r'cursor=([^"&]+)"', page.text)
        if found is None:
            break
        page = editor.get(f"/admin/subscribers?cursor={html.unescape(found.group(1))}")
    assert [len(p) for p in seen] == [50, 50, 23]
    assert seen[2] == [f"reader{i}@example.org" for i in range(97, 120)]
    assert len({a for p in seen for a in p}) == 123
