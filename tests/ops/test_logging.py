"""Log lines of a running web server: time, level, logger, message and the request id."""

from __future__ import annotations

import json
import re

import httpx

from tests.conftest import wait_until

TEXT_LINE = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00 (DEBUG|INFO|WARNING|ERROR|CRITICAL) "
    r"[\w.]+ ")


def test_text_lines_carry_time_level_logger_and_request_id(serve):
    server = serve()
    r = httpx.get(f"{server.url}/healthz", headers={"X-Request-ID": "trace-42"})
    assert r.headers["X-Request-ID"] == "trace-42"
    line = wait_until(lambda: next((x for x in server.lines() if "GET /healthz" in x
                                    and "trace-42" in x), None), what="the access log line")
    assert TEXT_LINE.match(line), line
    assert " INFO uvicorn.access " in line and line.endswith("[request_id=trace-42]")
    # Our own INFO lines are shown, not only warnings.
    assert any(TEXT_LINE.match(x) and " INFO missive.web " in x for x in server.lines())


def test_request_id_is_made_when_missing_or_unfit(serve):
    server = serve()
    plain = httpx.get(f"{server.url}/healthz")
    assert re.fullmatch(r"[0-9a-f]{32}", plain.headers["X-Request-ID"])
    unfit = httpx.get(f"{server.url}/healthz", headers={"X-Request-ID": "x" * 300})
    assert re.fullmatch(r"[0-9a-f]{32}", unfit.headers["X-Request-ID"])
    other = httpx.get(f"{server.url}/healthz", headers={"X-Request-ID": "a b<script>"})
    assert re.fullmatch(r"[0-9a-f]{32}", other.headers["X-Request-ID"])
    assert plain.headers["X-Request-ID"] != unfit.headers["X-Request-ID"]


def test_json_lines(serve):
    server = serve(MISSIVE_LOG_FORMAT="json")
    httpx.get(f"{server.url}/healthz", headers={"X-Request-ID": "trace-43"})
    httpx.get(f"{server.url}/subscribe/no-such-list", headers={"X-Request-ID": "trace-44"})
    wait_until(lambda: any("trace-44" in x for x in server.lines()), what="the access log")
    records = [json.loads(x) for x in server.lines() if x.strip()]  # every line is JSON
    for record in records:
        assert {"time", "level", "logger", "message", "process"} <= set(record), record
        assert record["process"] == "web"
    access = [r for r in records if r["logger"] == "uvicorn.access"]
    by_id = {r.get("request_id"): r for r in access}
    assert "GET /healthz" in by_id["trace-43"]["message"]
    assert "404" in by_id["trace-44"]["message"]
    assert by_id["trace-43"]["level"] == "INFO"
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00$", by_id["trace-43"]["time"])
    assert any(r["logger"] == "missive.web" and r["level"] == "INFO" for r in records)
