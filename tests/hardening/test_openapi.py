"""The OpenAPI document is true: schemathesis against a real server finds no server error and
no answer the document does not describe."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx

from tests.conftest import ROOT

# Bounded: five examples per operation and a fixed seed (about two to four minutes). Every
# check but positive_data_acceptance, which expects any request the schema allows to succeed:
# Missive refuses some such requests on rules no schema states (a cursor it did not issue, a
# report that is not a bounce, an address email-validator refuses, acknowledging a newsletter
# that is not blocked), each with a documented 4xx and its reason.
CHECKS = "all"
EXCLUDED = "positive_data_acceptance"


def test_the_document_names_every_answer(server):
    doc = httpx.get(f"{server.url}/openapi.json").json()
    schemas = doc["components"]["schemas"]
    assert "HTTPValidationError" not in schemas and "Error" in schemas
    ops = doc["paths"]
    assert set(ops["/api/v1/subscribers"]["post"]["responses"]) >= {
        "201", "400", "401", "403", "409", "413", "422"}
    assert "text/csv" in ops["/api/v1/subscribers/import"]["post"]["requestBody"]["content"]
    assert "message/rfc822" in ops["/api/v1/bounces"]["post"]["requestBody"]["content"]
    assert "429" in ops["/subscribe/{slug}"]["post"]["responses"]
    assert "message/rfc822" in ops["/api/v1/issues/{issue_id}/preview.eml"]["get"][
        "responses"]["200"]["content"]
    slug = next(p for p in ops["/subscribe/{slug}"]["get"]["parameters"] if p["name"] == "slug")
    assert slug["schema"]["pattern"].startswith("^[a-z0-9]")
    assert all(op.get("summary") for path in ops.values() for op in path.values())


def test_schemathesis_finds_nothing(server, token, newsletter, tmp_path: Path):
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.hardening.st_hooks",
           "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [str(Path(sys.executable).with_name("st")), "run", f"{server.url}/openapi.json",
         "--header", f"Authorization: Bearer {token}", "--checks", CHECKS,
         "--exclude-checks", EXCLUDED,
         "--max-examples", "5", "--workers", "2", "--seed", "20261130", "--no-color"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    errors = done.stdout.find("ERRORS ==")
    tail = (done.stdout[errors:errors + 4000] if errors >= 0 else "") + done.stdout[-3000:]
    print(tail)
    assert done.returncode == 0, tail + done.stderr[-2000:]
    assert "Server error" not in done.stdout


def test_a_wrong_method_names_every_method_of_the_path(client, auth):
    # GET and POST on /api/v1/issues are two routes; Allow must name both.
    r = client.request("OPTIONS", "/api/v1/issues", headers=auth)
    assert r.status_code == 405 and r.headers["allow"] == "GET, POST"
    r = client.put("/api/v1/subscribers/1", headers=auth, json={})
    assert r.status_code == 405 and r.headers["allow"] == "DELETE, GET, PATCH"
    # /issues/next is a path of its own, not issue "next" with a bad id.
    r = client.patch("/api/v1/issues/next", headers=auth, json={})
    assert r.status_code == 405 and r.headers["allow"] == "GET"
    assert client.get("/api/v1/issues/abc", headers=auth).status_code == 404
