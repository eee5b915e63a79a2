"""A plain install runs the service: what an operator gets from `pip install .` with no extras.

The test builds the wheel from a copy of the checkout, installs it into a fresh virtual
environment without the dev extras, and runs `missive db upgrade`, `serve`, `worker` and `beat`
from that environment in an empty folder (never the checkout) against the suite's PostgreSQL
(a database of its own), Redis (a key prefix of its own) and SMTP server. It then creates a
newsletter, readers and an issue through the API, schedules the send for beat to start, sees each
reader's copy arrive, and fetches the issue's hero image from the installed package's static
files.

Only the dependency wheels are kept between runs (under ~/.cache/missive-tests, keyed by the
wheel's declared requirements), so the install needs no network once they are there; the virtual
environment itself is new every run.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.conftest import (
    DB_NAME,
    PG_HOST,
    PG_PORT,
    PG_USER,
    PREFIX,
    REDIS_URL,
    ROOT,
    Inbox,
    _admin_conn,
    free_port,
    wait_until,
)
from tests.test_docker_files import dockerfile_healthcheck

# Top-level entries of the checkout the build never needs (and a stale `build/` would spoil).
NOT_COPIED = {".git", ".venv", "var", "build", "dist", "tests", "bench", ".env", ".ci",
              ".mypy_cache", ".ruff_cache", ".pytest_cache"}
DEV_ONLY = ("pytest", "aiosmtpd", "mypy", "playwright", "ruff")
HERO = "static/samples/alliance-digest-2.22-hero.png"


def _copy_ignore(folder: str, names: list[str]) -> set[str]:
    top = NOT_COPIED if Path(folder) == ROOT else set()
    return {n for n in names if n in top or n == "__pycache__" or n.endswith((".pyc",
                                                                              ".egg-info"))}


def _run(argv: list[str | Path], **kwargs: object) -> str:
    done = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=600,
                          **kwargs)  # type: ignore[call-overload]
    assert done.returncode == 0, f"{argv} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return str(done.stdout)


def _requirements(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as zf:
        meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        lines = zf.read(meta).decode().splitlines()
    return sorted(line for line in lines if line.startswith("Requires-Dist:"))


def _wheelhouse(wheel: Path) -> Path:
    """Wheels of every runtime dependency the wheel declares, built once per requirement set."""
    key = hashlib.sha256("\n".join([sys.version, *_requirements(wheel)]).encode()).hexdigest()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "missive-tests"
    house = cache / f"wheelhouse-{key[:16]}"
    if (house / ".complete").exists():
        return house
    partial = cache / f".partial-{secrets.token_hex(4)}"
    _run([sys.executable, "-m", "pip", "wheel", "-q", "-w", partial, wheel])
    for own in partial.glob("missive-*.whl"):
        own.unlink()
    (partial / ".complete").touch()
    try:
        partial.rename(house)
    except OSError:  # a parallel run finished first: theirs is the same set
        shutil.rmtree(partial, ignore_errors=True)
    return house


@pytest.fixture(scope="module")
def plain_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("plain-install")
    src, dist, venv = work / "src", work / "dist", work / "venv"
    shutil.copytree(ROOT, src, ignore=_copy_ignore)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", dist, src])
    [wheel] = dist.glob("missive-*.whl")
    house = _wheelhouse(wheel)
    _run([sys.executable, "-m", "venv", "--without-pip", venv])
    # The test environment's pip installs into the new one: no pip (nor anything else) in it
    # but Missive and what it declares. --no-compile: the processes compile what they import.
    _run([sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", "-q",
          "--no-index", "--find-links", house, "--no-compile", wheel])
    return venv


@pytest.fixture
def plain_db() -> Iterator[str]:
    name = f"{DB_NAME}_plain"
    with _admin_conn() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield f"postgresql+psycopg://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"
    with _admin_conn() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Service:
    """The installed processes, run in a folder of their own; stopped together at the end."""

    def __init__(self, venv: Path, folder: Path, env: dict[str, str], port: int) -> None:
        self.venv, self.folder, self.env, self.port = venv, folder, env, port
        self.base = env["MISSIVE_BASE_URL"]
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def run(self, *argv: str) -> str:
        return _run([self.venv / "bin" / argv[0], *argv[1:]], cwd=self.folder, env=self.env)

    def start(self, name: str, *argv: str) -> None:
        log = (self.folder / f"{name}.log").open("wb")
        self.procs[name] = subprocess.Popen(
            [str(self.venv / "bin" / "missive"), *argv], cwd=self.folder, env=self.env,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def log(self, name: str) -> str:
        return (self.folder / f"{name}.log").read_text(errors="replace")

    def alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise AssertionError(f"{name} exited with {proc.returncode}:\n"
                                     f"{self.log(name)[-3000:]}")

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.fixture
def service(plain_venv: Path, plain_db: str, smtp_server: tuple[int, Inbox],
            tmp_path: Path) -> Iterator[Service]:
    port = free_port()
    folder = tmp_path / "run"
    folder.mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MISSIVE_", "PYTHON", "VIRTUAL_ENV"))}
    env.update({
        "PATH": f"{plain_venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        "MISSIVE_DATABASE_URL": plain_db,
        "MISSIVE_BROKER_URL": REDIS_URL,
        "MISSIVE_REDIS_URL": REDIS_URL,
        # Under the run's prefix (cleared at the end of the run), apart from the suite's worker.
        "MISSIVE_REDIS_PREFIX": f"{PREFIX}plain:",
        "MISSIVE_MAIL_URL": f"smtp://127.0.0.1:{smtp_server[0]}?pool=2",
        "MISSIVE_BASE_URL": f"http://127.0.0.1:{port}",
        "MISSIVE_SECRET_KEY": secrets.token_urlsafe(32),
        "MISSIVE_BOUNCE_ADDRESS": "bounces@news.example.org",
        "MISSIVE_VAR_DIR": str(folder / "var"),
    })
    svc = Service(plain_venv, folder, env, port)
    yield svc
    svc.stop()


def test_installed_package_is_self_contained(plain_venv: Path, tmp_path: Path):
    python = str(plain_venv / "bin" / "python")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "MISSIVE_"))}
    # Every module imports with only the declared dependencies present (a missing one fails).
    probe = (
        "import importlib, importlib.util, pkgutil, app, worker\n"
        "from app import resources\n"
        "for pkg in (app, worker):\n"
        "    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
        "        if not m.name.endswith('__main__'):\n"
        "            importlib.import_module(m.name)\n"
        "import kombu.transport.redis\n"
        f"print([m for m in {DEV_ONLY!r} if importlib.util.find_spec(m)])\n"
        "print(app.__file__)\n"
        "print(resources.ROOT)\n"
    )
    out = _run([python, "-c", probe], cwd=tmp_path, env=env).splitlines()
    assert out[0] == "[]", f"dev-only packages in a plain install: {out[0]}"
    site = plain_venv.resolve()
    assert Path(out[1]).resolve().is_relative_to(site)
    bundle = Path(out[2])
    assert bundle.is_relative_to(site) and bundle.name == "_bundle"
    for shipped in ("templates/pages/subscribe.html", "templates/email/issue.html",
                    "migrations/env.py", "migrations/script.py.mako", HERO,
                    "static/samples/alliance-digest-2.22.pdf",
                    "samples/alliance-digest-2.22.yaml"):
        assert (bundle / shipped).is_file(), f"{shipped} is not in the wheel"
    assert sorted(p.name for p in (bundle / "migrations" / "versions").glob("*.py")) == sorted(
        p.name for p in (ROOT / "migrations" / "versions").glob("*.py"))
    # `python -m app` is the same command line as `missive`.
    assert "db" in _run([python, "-m", "app", "--help"], cwd=tmp_path, env=env)


def test_installed_web_worker_and_beat_send_an_issue(service: Service, inbox: Inbox):
    base = service.base
    assert "database is up to date" in service.run("missive", "db", "upgrade")
    token = service.run("python", "-m", "app", "token", "create", "plain", "--role",
                        "admin").strip()
    service.start("web", "serve", "--port", str(service.port))
    service.start("worker", "worker", "--concurrency", "1")
    service.start("beat", "beat", "--interval", "1")

    def web_up() -> bool:
        service.alive()
        try:
            return httpx.get(f"{base}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(web_up, timeout=90, what="the installed web server")
    # The image's HEALTHCHECK command passes against it (the image runs this same install).
    service.run(*[arg.replace(":8000/", f":{service.port}/") for arg in dockerfile_healthcheck()])
    wait_until(lambda: service.alive() or "ready." in service.log("worker"), timeout=90,
               what="the installed worker")

    api = httpx.Client(base_url=f"{base}/api/v1", timeout=30,
                       headers={"Authorization": f"Bearer {token}"})
    r = api.post("/newsletters", json={
        "slug": "alliance-digest", "name": "Alliance Digest", "from_name": "Alliance Digest",
        "from_email": "digest@news.example.org"})
    assert r.status_code == 201, r.text
    readers = ["ada@example.org", "grace@example.org"]
    for email in readers:
        r = api.post("/subscribers", json={
            "email": email, "subscriptions": [{"newsletter": "alliance-digest",
                                               "status": "active"}]})
        assert r.status_code == 201, r.text
    r = api.post("/issues", content=(ROOT / "samples" / "alliance-digest-2.22.yaml").read_bytes(),
                 headers={"Content-Type": "application/yaml"})
    assert r.status_code == 201, r.text
    issue_id = r.json()["id"]
    # A moment ahead, so it is the installed beat that starts it.
    at = (datetime.now(UTC) + timedelta(seconds=3)).isoformat()
    r = api.post(f"/issues/{issue_id}/send", json={"at": at})
    assert r.status_code == 202, r.text
    send_id = r.json()["id"]

    def finished() -> bool:
        service.alive()
        return bool(api.get(f"/sends/{send_id}").json()["status"] == "done")

    wait_until(finished, timeout=90, what="the send to finish")
    report = api.get(f"/sends/{send_id}").json()
    assert (report["sent"], report["failed"], report["unknown"]) == (2, 0, 0)
    copies = inbox.wait_for(2, timeout=30)
    assert sorted(str(m["To"]) for m in copies) == readers
    assert all("Alliance Digest" in str(m["Subject"]) for m in copies)
    assert "started scheduled sends" in service.log("beat")

    # The copy's hero image is served from the installed package's static files.
    body = copies[0].get_body(("html",))
    assert body is not None
    hero = re.search(r'src="([^"]*alliance-digest-2\.22-hero\.png)"', body.get_content())
    assert hero is not None and hero.group(1) == f"{base}/{HERO}"
    image = httpx.get(hero.group(1), timeout=10)
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert image.content == (ROOT / HERO).read_bytes()
    # And the public pages render from the installed templates.
    page = httpx.get(f"{base}/subscribe/alliance-digest", timeout=10)
    assert page.status_code == 200 and 'name="email"' in page.text
