"""Issues through the editor API and the command line, on PostgreSQL (and the CLI on SQLite)."""

from __future__ import annotations

import email
import email.policy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from issuedata import BASE, ROOT, SAMPLE

from app.issues.models import Issue

SLUG = "alliance-digest"


def _doc(**fields: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "newsletter": SLUG,
        "preheader": "What changed this fortnight",
        "stories": [{"headline": "Rates go up", "body": "Council voted **yes**.",
                     "link": "https://example.org/rates"}],
        "links": [{"label": "PDF edition", "url": "https://example.org/2.pdf"}],
    }
    doc.update(fields)
    return doc


# --- create, read, update, delete -------------------------------------------------------------


def test_create_read_update_delete(client, newsletter, auth):
    r = client.post("/api/v1/issues", headers=auth, json=_doc(volume=3, number=1))
    assert r.status_code == 201, r.text
    issue = r.json()
    assert issue["status"] == "draft" and issue["sent_at"] is None
    assert (issue["volume"], issue["number"], issue["label"]) == (3, 1, "Vol 3.1")
    assert issue["subject"] == "Alliance Digest Vol 3.1" and issue["subject_is_default"]
    assert issue["stories"] == [{"headline": "Rates go up", "body": "Council voted **yes**.",
                                 "link": "https://example.org/rates"}]
    assert issue["web_url"] == f"{BASE}/archive/{SLUG}/3.1"
    assert issue["preview_url"].startswith(f"{BASE}/api/v1/issues/{issue['id']}/preview?key=")

    assert client.get(f"/api/v1/issues/{issue['id']}", headers=auth).json() == issue

    r = client.patch(f"/api/v1/issues/{issue['id']}", headers=auth,
                     json={"subject": "Rates, revisited", "hero_image": {
                         "url": "https://example.org/h.jpg", "alt": "A weir"}})
    assert r.status_code == 200, r.text
    changed = r.json()
    assert changed["subject"] == "Rates, revisited" and not changed["subject_is_default"]
    assert changed["hero_image"] == {"url": "https://example.org/h.jpg", "alt": "A weir",
                                     "credit": "", "width": None, "height": None}
    assert changed["stories"] == issue["stories"], "fields not given stay as they were"

    # null puts the default subject back
    r = client.patch(f"/api/v1/issues/{issue['id']}", headers=auth, json={"subject": None})
    assert r.json()["subject"] == "Alliance Digest Vol 3.1"

    assert client.delete(f"/api/v1/issues/{issue['id']}", headers=auth).status_code == 204
    assert client.get(f"/api/v1/issues/{issue['id']}", headers=auth).status_code == 404


def test_yaml_body_is_accepted(client, newsletter, auth):
    body = yaml.safe_dump(_doc(subject="From YAML"))
    r = client.post("/api/v1/issues", headers={**auth, "Content-Type": "application/yaml"},
                    content=body)
    assert r.status_code == 201, r.text
    assert r.json()["subject"] == "From YAML"
    r = client.post("/api/v1/issues", headers={**auth, "Content-Type": "text/csv"}, content="x")
    assert r.status_code == 415


def test_the_sample_issue_loads_through_the_api(client, newsletter, auth, db):
    # The `newsletter` fixture loads the sample issue already; as a document it is a duplicate.
    r = client.post("/api/v1/issues", headers={**auth, "Content-Type": "application/yaml"},
                    content=SAMPLE.read_bytes())
    assert r.status_code == 409
    db.query(Issue).delete()
    db.commit()
    r = client.post("/api/v1/issues", headers={**auth, "Content-Type": "application/yaml"},
                    content=SAMPLE.read_bytes())
    assert r.status_code == 201, r.text
    issue = r.json()
    assert issue["label"] == "Vol 2.22" and len(issue["stories"]) == 5
    # Paths on this server are stored as full URLs.
    assert issue["hero_image"]["url"] == f"{BASE}/static/samples/alliance-digest-2.22-hero.png"


# --- numbering --------------------------------------------------------------------------------


def test_next_number_follows_the_series(client, newsletter, auth):
    # The sample issue is Vol 2.22.
    r = client.get(f"/api/v1/issues/next?newsletter={SLUG}", headers=auth)
    assert r.json() == {"newsletter": SLUG, "volume": 2, "number": 23, "label": "Vol 2.23"}

    created = client.post("/api/v1/issues", headers=auth, json=_doc()).json()
    assert created["label"] == "Vol 2.23"
    assert client.get(f"/api/v1/issues/next?newsletter={SLUG}",
                      headers=auth).json()["label"] == "Vol 2.24"

    # A new volume starts at 1; the series then follows it.
    assert client.post("/api/v1/issues", headers=auth,
                       json=_doc(volume=3)).json()["label"] == "Vol 3.1"
    assert client.post("/api/v1/issues", headers=auth, json=_doc()).json()["label"] == "Vol 3.2"
    # Number alone: in the current volume.
    assert client.post("/api/v1/issues", headers=auth,
                       json=_doc(number=9)).json()["label"] == "Vol 3.9"
    assert client.get("/api/v1/issues/next?newsletter=nope", headers=auth).status_code == 404


def test_duplicate_volume_and_number_is_a_conflict(client, newsletter, auth):
    r = client.post("/api/v1/issues", headers=auth, json=_doc(volume=2, number=22))
    assert r.status_code == 409
    [problem] = r.json()["detail"]
    assert problem["field"] == "number"
    assert "already has Vol 2.22" in problem["msg"]

    other = client.post("/api/v1/issues", headers=auth, json=_doc()).json()
    r = client.patch(f"/api/v1/issues/{other['id']}", headers=auth, json={"number": 22})
    assert r.status_code == 409


# --- validation -------------------------------------------------------------------------------


def test_validation_lists_every_problem(client, newsletter, auth):
    bad = _doc(
        volume=2, number=22,  # taken
        subject="Two\r\nlines",
        hero_image={"url": "not a url", "alt": "x"},
        stories=[
            {"body": "No headline here."},
            {"headline": "Bad link", "link": "javascript:alert(1)"},
            {"headline": "Relative link", "body": "See [our page](/about) and "
                                                  "[this](javascript:alert(2))."},
            {"headline": "   "},
        ],
        links=[{"label": "PDF", "url": "ftp://example.org/x.pdf"}, {"url": "https://e.org"}],
        headline="a typo'd field at the top",
    )
    r = client.post("/api/v1/issues", headers=auth, json=bad)
    assert r.status_code == 422
    problems = {p["field"]: p["msg"] for p in r.json()["detail"]}
    assert problems == {
        "subject": "must be one line, without line breaks or control characters",
        "hero_image.url": "'not a url' is not a full https:// or http:// address",
        "stories[0].headline": "a story needs a headline",
        "stories[1].link": "'javascript:alert(1)' is not a full https://, http:// or mailto: "
                           "address",
        "stories[2].body": "links and images need a full https:// address: link 'our page' "
                           "points to '/about'; link 'this' points to 'javascript:alert(2)'",
        "stories[3].headline": "a story needs a headline",
        "links[0].url": "'ftp://example.org/x.pdf' is not a full https://, http:// or mailto: "
                        "address",
        "links[1].label": "is required",
        "headline": "is not a field of an issue (check the spelling)",
        "number": problems["number"],
    }
    assert "already has Vol 2.22" in problems["number"]
    for p in r.json()["detail"]:
        assert isinstance(p["loc"], list)


@pytest.mark.parametrize("body,status,fragment", [
    ("{not json", 422, "invalid JSON at line 1"),
    ("[1, 2]", 422, "an issue must be a mapping of fields"),
    ('{"stories": []}', 422, "newsletter"),
    ('{"newsletter": "nope", "stories": []}', 422, "there is no newsletter 'nope'"),
    ('{"newsletter": "alliance-digest", "volume": "two"}', 422, "must be a whole number"),
    ('{"newsletter": "alliance-digest", "volume": 0}', 422, "greater than or equal to 1"),
    ('{"newsletter": "alliance-digest", "stories": "one"}', 422, "must be a list"),
])
def test_bad_documents_are_4xx_never_500(client, newsletter, auth, body, status, fragment):
    r = client.post("/api/v1/issues", headers={**auth, "Content-Type": "application/json"},
                    content=body)
    assert r.status_code == status, r.text
    assert fragment in json.dumps(r.json()["detail"])


def test_bad_yaml_says_where(client, newsletter, auth):
    r = client.post("/api/v1/issues", headers={**auth, "Content-Type": "application/yaml"},
                    content="newsletter: alliance-digest\nsubject: Vol 2.23: colons: break\n")
    assert r.status_code == 422
    assert "invalid YAML at line 2" in r.json()["detail"]


def test_hostile_text_is_stored_as_written_and_previewed_inert(client, newsletter, auth):
    evil = '<script>alert(1)</script> {{ 7*7 }} {% if 1 %}yes{% endif %}'
    r = client.post("/api/v1/issues", headers=auth, json=_doc(
        subject=evil, preheader=evil, stories=[{"headline": evil, "body": evil + "\n\n" + evil}],
        links=[{"label": evil, "url": "https://example.org/x"}]))
    assert r.status_code == 201, r.text
    issue = r.json()
    assert issue["stories"][0]["headline"] == evil
    page = client.get(f"/api/v1/issues/{issue['id']}/preview", headers=auth)
    assert page.status_code == 200
    assert "<script>" not in page.text and "&lt;script&gt;" in page.text
    assert "{{ 7*7 }}" in page.text and ">49<" not in page.text
    assert "script-src" not in page.headers["content-security-policy"]
    assert "default-src 'none'" in page.headers["content-security-policy"]
    checks = client.get(f"/api/v1/issues/{issue['id']}/checks", headers=auth).json()
    assert not checks["ok"]
    assert {"template-variable"} <= {p["code"] for p in checks["problems"]}


def test_only_drafts_change(client, newsletter, auth, db, make_issue, mark_sent):
    issue = make_issue(volume=5, number=1)
    mark_sent(issue)
    r = client.patch(f"/api/v1/issues/{issue.id}", headers=auth, json={"subject": "Too late"})
    assert r.status_code == 409 and "is sent" in r.json()["detail"]
    assert client.delete(f"/api/v1/issues/{issue.id}", headers=auth).status_code == 409


# --- listing and access -----------------------------------------------------------------------


def test_list_filters_and_pages(client, newsletter, auth, make_issue, mark_sent):
    made = [make_issue() for _ in range(4)]
    mark_sent(made[0])
    everything = client.get("/api/v1/issues?limit=2", headers=auth).json()
    assert len(everything["items"]) == 2 and everything["next_cursor"]
    seen = [i["id"] for i in everything["items"]]
    cursor = everything["next_cursor"]
    while cursor:
        page = client.get(f"/api/v1/issues?limit=2&cursor={cursor}", headers=auth).json()
        seen += [i["id"] for i in page["items"]]
        cursor = page["next_cursor"]
    assert seen == sorted(seen, reverse=True) and len(seen) == 5  # with the sample issue
    sent = client.get(f"/api/v1/issues?newsletter={SLUG}&status=sent", headers=auth).json()
    assert [i["id"] for i in sent["items"]] == [made[0].id]
    assert client.get("/api/v1/issues?status=bogus", headers=auth).status_code == 422
    assert client.get("/api/v1/issues?cursor=abc", headers=auth).status_code == 422


def test_tokens_and_roles(client, newsletter, db):
    from app.auth import service as auth_service

    assert client.get("/api/v1/issues").status_code == 401
    assert client.post("/api/v1/issues", json=_doc()).status_code == 401
    viewer = auth_service.create_token(db, name="viewer", role="viewer")
    db.commit()
    headers = {"Authorization": f"Bearer {viewer}"}
    assert client.get("/api/v1/issues", headers=headers).status_code == 200
    assert client.post("/api/v1/issues", headers=headers, json=_doc()).status_code == 403


def test_openapi_documents_the_issue_shape(client):
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/api/v1/issues"]["post"]["requestBody"]["content"]
    schema = body["application/json"]["schema"]
    story = schema["properties"]["stories"]["anyOf"][0]["items"] \
        if "anyOf" in schema["properties"]["stories"] else schema["properties"]["stories"]["items"]
    assert "headline" in story["properties"]
    assert "application/yaml" in body


# --- preview and checks -----------------------------------------------------------------------


def _sample_issue(db: Any) -> Issue:
    return db.query(Issue).filter_by(volume=2, number=22).one()


def test_preview_is_exactly_what_is_sent(client, newsletter, auth, db):
    issue = _sample_issue(db)
    eml = client.get(f"/api/v1/issues/{issue.id}/preview.eml", headers=auth)
    assert eml.status_code == 200 and eml.headers["content-type"] == "message/rfc822"
    message = email.message_from_bytes(eml.content, policy=email.policy.default)
    assert message["To"] == "Sample Reader <sample.reader@example.org>"
    assert message["List-Unsubscribe"] == f"<{BASE}/u/preview-sample>"
    html = client.get(f"/api/v1/issues/{issue.id}/preview", headers=auth)
    text = client.get(f"/api/v1/issues/{issue.id}/preview.txt", headers=auth)
    assert html.headers["content-type"].startswith("text/html")
    assert text.headers["content-type"].startswith("text/plain")
    # The parts of the message, decoded; only the Message-ID differs between two renders.
    assert html.text == message.get_body(("html",)).get_content()
    assert text.text == message.get_body(("plain",)).get_content()
    assert "Hello Sample Reader, here is what’s inside Vol 2.22:" in html.text


def test_preview_for_a_real_subscriber_has_a_working_unsubscribe_link(client, newsletter, auth,
                                                                       db):
    r = client.post("/api/v1/subscribers", headers=auth, json={
        "email": "reader@example.org", "name": "Río Reader",
        "subscriptions": [{"newsletter": SLUG, "status": "active"}]})
    assert r.status_code == 201, r.text
    subscriber_id = r.json()["id"]
    issue = _sample_issue(db)
    eml = client.get(f"/api/v1/issues/{issue.id}/preview.eml?subscriber={subscriber_id}",
                     headers=auth)
    message = email.message_from_bytes(eml.content, policy=email.policy.default)
    assert message["To"].addresses[0].display_name == "Río Reader"
    url = str(message["List-Unsubscribe"]).split(">")[0].removeprefix("<")
    assert url.startswith(f"{BASE}/u/")
    page = client.get(url.removeprefix(BASE))
    assert page.status_code == 200 and "Alliance Digest" in page.text
    assert "<button" in page.text and "invalid" not in page.text.lower()
    assert client.get(f"/api/v1/issues/{issue.id}/preview?subscriber=999999",
                      headers=auth).status_code == 404


def test_preview_link_opens_without_a_token(client, newsletter, auth, db):
    issue = _sample_issue(db)
    url = client.get(f"/api/v1/issues/{issue.id}", headers=auth).json()["preview_url"]
    path = url.removeprefix(BASE)
    assert client.get(path).status_code == 200
    assert client.get(path.replace("/preview?", "/preview.txt?")).status_code == 200
    assert client.get(path + "x").status_code == 401
    other = client.post("/api/v1/issues", headers=auth, json=_doc()).json()
    # A key opens one issue only.
    assert client.get(path.replace(f"/{issue.id}/", f"/{other['id']}/")).status_code == 401
    assert client.get(f"/api/v1/issues/{issue.id}/preview").status_code == 401


def test_checks_report(client, newsletter, auth, make_issue):
    issue = make_issue(stories=[{"headline": "Empty"}],
                       hero_image={"url": "http://example.org/h.jpg"})
    report = client.get(f"/api/v1/issues/{issue.id}/checks", headers=auth).json()
    assert report["ok"] is False
    assert report["html_bytes"] > 5000
    codes = {(p["severity"], p["code"]) for p in report["problems"]}
    assert {("error", "empty-story"), ("warning", "missing-alt"),
            ("warning", "insecure-link")} <= codes


# --- the command line -------------------------------------------------------------------------


def _missive(args: list[str], env: dict[str, str], cwd: Path = ROOT
             ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "app.cli", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_cli_issue_create(test_env, newsletter, tmp_path, db):
    env = {**os.environ, **test_env}
    doc = tmp_path / "next.yaml"
    doc.write_text(yaml.safe_dump(_doc(subject="From the command line")))
    done = _missive(["issue", "create", str(doc)], env)
    assert done.returncode == 0, done.stderr
    assert "created issue" in done.stdout and "(Vol 2.23, draft)" in done.stdout
    assert "preview: https://news.example.org/api/v1/issues/" in done.stdout
    assert db.query(Issue).filter_by(number=23).one().subject == "From the command line"

    as_json = tmp_path / "again.json"
    as_json.write_text(json.dumps(_doc(volume=2, number=23, subject="Changed")))
    clash = _missive(["issue", "create", str(as_json)], env)
    assert clash.returncode != 0
    assert clash.stderr.count("\n") == 1 and "already has Vol 2.23" in clash.stderr
    replaced = _missive(["issue", "create", "--replace", str(as_json)], env)
    assert replaced.returncode == 0, replaced.stderr
    assert "replaced issue" in replaced.stdout
    db.expire_all()
    assert db.query(Issue).filter_by(number=23).one().subject == "Changed"

    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump({"newsletter": SLUG, "stories": [
        {"body": "x"}, {"headline": "h", "link": "nope"}]}))
    bad = _missive(["issue", "create", str(broken)], env)
    assert bad.returncode != 0
    line = bad.stderr.strip()
    assert "\n" not in line
    assert "2 problems: stories[0].headline: a story needs a headline; stories[1].link:" in line
    wrong = tmp_path / "issue.txt"
    wrong.write_text("x")
    assert "must end in .yaml" in _missive(["issue", "create", str(wrong)], env).stderr


def test_migration_and_sample_on_sqlite(tmp_path):
    """The embedded default: `missive db upgrade`, the sample loaded twice, an issue from the
    command line, all on SQLite."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MISSIVE_")}
    env.update({"MISSIVE_VAR_DIR": str(tmp_path / "var"), "MISSIVE_BASE_URL": BASE})
    assert _missive(["db", "upgrade"], env, cwd=tmp_path).returncode == 0
    for _ in range(2):
        loaded = _missive(["demo", "load"], env, cwd=tmp_path)
        assert loaded.returncode == 0, loaded.stderr
    doc = tmp_path / "next.json"
    doc.write_text(json.dumps(_doc()))
    done = _missive(["issue", "create", str(doc)], env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "(Vol 2.23, draft)" in done.stdout
    clash = _missive(["issue", "create", str(SAMPLE)], env, cwd=tmp_path)
    assert clash.returncode != 0 and "already has Vol 2.22" in clash.stderr
