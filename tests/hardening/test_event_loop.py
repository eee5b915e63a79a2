"""No request can freeze the server: nothing blocking runs on the event loop.

Two checks. One reads the code: an `async def` in app/ may await, and may hand work to a thread,
but may not itself touch the database or the disk. The other runs a real server and does what
froze it: two slow CSV imports on one token while a reader signs up.
"""

from __future__ import annotations

import ast
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select

from app.subscribers.models import Subscriber
from tests.conftest import ROOT

# Names that reach the database or the disk when called. A call is allowed only as an argument
# handed to a thread (run_in_threadpool, anyio.to_thread.run_sync, asyncio.to_thread).
_BLOCKING_ROOTS = {
    "session", "session_scope", "get_session", "get_sessionmaker", "get_engine", "open",
    "tempfile", "shutil", "Path", "os", "service", "repository", "repo", "csvio", "newsletters",
    "webhooks", "parse", "authenticate", "token_from_header",
}
_THREAD_HANDOFFS = {"run_in_threadpool", "run_sync", "to_thread"}
# async code that is not a request path: the SMTP client runs its own loop in a worker thread.
_NOT_ON_THE_WEB_LOOP = {Path("app/mail/pipeline.py")}


def _root_name(node: ast.expr) -> str | None:
    while isinstance(node, ast.Attribute | ast.Call | ast.Subscript):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def _call_name(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")


def _blocking_calls(fn: ast.AsyncFunctionDef) -> Iterator[str]:
    handed_off: set[int] = set()
    for node in ast.walk(fn):
        if isinstance(node, ast.Call) and _call_name(node) in _THREAD_HANDOFFS:
            for arg in [*node.args, *(k.value for k in node.keywords)]:
                handed_off.update(id(n) for n in ast.walk(arg))
    for node in ast.walk(fn):
        if isinstance(node, ast.Call) and id(node) not in handed_off:
            root = _root_name(node.func)
            if root in _BLOCKING_ROOTS:
                yield f"{ast.unparse(node.func)}() at line {node.lineno}"
    for arg in fn.args.args:
        annotation = ast.unparse(arg.annotation) if arg.annotation else ""
        if "Session" in annotation:
            yield f"parameter {arg.arg}: {annotation} (a session used on the event loop)"


def _async_functions() -> Iterator[tuple[Path, ast.AsyncFunctionDef]]:
    for path in sorted((ROOT / "app").rglob("*.py")):
        rel = path.relative_to(ROOT)
        if rel in _NOT_ON_THE_WEB_LOOP:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.AsyncFunctionDef):
                yield rel, node


def test_no_async_function_touches_the_database_or_disk() -> None:
    found = [f"{rel}:{fn.name}: {call}" for rel, fn in _async_functions()
             for call in _blocking_calls(fn)]
    assert not found, "blocking calls on the event loop:\n" + "\n".join(found)


def test_the_check_catches_a_blocking_call() -> None:
    source = (
        "async def route(request, session: SessionDep):\n"
        "    target = newsletters.get_by_slug(session, 'x')\n"
        "    await run_in_threadpool(csvio.import_csv, session)\n"
    )
    fn = ast.parse(source).body[0]
    assert isinstance(fn, ast.AsyncFunctionDef)
    found = list(_blocking_calls(fn))
    assert any("newsletters.get_by_slug" in f for f in found)
    assert any("parameter session" in f for f in found)
    assert not any("import_csv" in f for f in found)


def test_no_async_route_or_dependency_takes_a_session(test_env: dict[str, str]) -> None:
    import inspect

    from fastapi.routing import APIRoute
    from sqlalchemy.orm import Session

    from app.main import create_app

    def walk(dependant: Any) -> Iterator[Any]:
        yield dependant
        for sub in dependant.dependencies:
            yield from walk(sub)

    offenders = []
    for route in create_app().routes:
        if not isinstance(route, APIRoute):
            continue
        for dep in walk(route.dependant):
            if dep.call is None or not inspect.iscoroutinefunction(dep.call):
                continue
            hints = [p.annotation for p in inspect.signature(dep.call).parameters.values()]
            if any("Session" in str(h) or h is Session for h in hints):
                offenders.append(f"{route.path}: {dep.call.__name__}")
    assert not offenders


# --- the live check -------------------------------------------------------------------------


def _slow_csv(prefix: str, rows: int, pause: float) -> Iterator[bytes]:
    yield b"email,name\n"
    for i in range(rows):
        yield f"{prefix}{i}@example.org,Reader {i}\n".encode()
        time.sleep(pause)


def test_two_slow_imports_on_one_token_do_not_freeze_sign_up(server, token, newsletter, db):
    auth = {"Authorization": f"Bearer {token}", "content-type": "text/csv"}
    results: dict[str, Any] = {}

    def run_import(prefix: str) -> None:
        with httpx.Client(timeout=60) as c:
            results[prefix] = c.post(f"{server.url}/api/v1/subscribers/import",
                                     params={"newsletter": "alliance-digest"},
                                     content=_slow_csv(prefix, 30, 0.2), headers=auth)

    imports = [threading.Thread(target=run_import, args=(p,)) for p in ("one", "two")]
    for t in imports:
        t.start()
    time.sleep(1.5)  # both uploads are under way, each holding its request open
    assert all(t.is_alive() for t in imports)
    timings = []
    with httpx.Client(timeout=30) as c:
        for i in range(3):
            started = time.monotonic()
            r = c.post(f"{server.url}/subscribe/alliance-digest",
                       json={"email": f"reader{i}@example.org"})
            timings.append(time.monotonic() - started)
            assert r.status_code == 202, r.text
            listed = c.get(f"{server.url}/api/v1/subscribers", headers=auth)
            assert listed.status_code == 200
    assert any(t.is_alive() for t in imports), "the imports should still be uploading"
    # Frozen, these never answered; a second each is generous on a busy machine.
    assert max(timings) < 1.0, timings
    for t in imports:
        t.join(60)
    for prefix in ("one", "two"):
        assert results[prefix].status_code == 200, results[prefix].text
        assert results[prefix].json()["created"] == 30
    db.expire_all()
    assert db.scalar(select(func.count()).select_from(Subscriber).where(
        Subscriber.email.like("one%"))) == 30


def test_an_import_stops_when_its_client_goes_and_keeps_what_it_committed(server, token,
                                                                         newsletter, db):
    rows = b"".join(f"gone{i:05d}@example.org,Reader {i}\n".encode() for i in range(2500))
    body = b"email,name\n" + rows
    head = (f"POST /api/v1/subscribers/import?newsletter=alliance-digest HTTP/1.1\r\n"
            f"Host: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: text/csv\r\nContent-Length: {len(body) * 10}\r\n\r\n").encode()
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(head + body)

        def stored() -> int:
            db.expire_all()
            return int(db.scalar(select(func.count()).select_from(Subscriber)) or 0)

        deadline = time.monotonic() + 30
        while stored() < 2000 and time.monotonic() < deadline:
            time.sleep(0.2)
    # The client is gone with most of its promised body unsent.
    time.sleep(2)
    assert stored() == 2000  # two whole batches committed; the third, cut short, rolled back
    assert "Traceback" not in server.log.read_text()
