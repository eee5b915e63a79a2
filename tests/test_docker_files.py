"""The Docker files, checked by reading them (the test machine has no Docker engine)."""

from __future__ import annotations

import json
import re

import yaml

from tests.conftest import ROOT


def dockerfile_healthcheck() -> list[str]:
    """The exec form of the image's HEALTHCHECK command."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    match = re.search(r"^HEALTHCHECK .*? CMD (\[.*\])$", text, re.MULTILINE)
    assert match, "the Dockerfile has no exec-form HEALTHCHECK"
    return list(json.loads(match.group(1)))


def test_image_installs_the_wheel_and_runs_as_a_user():
    lines = [ln.strip() for ln in (ROOT / "Dockerfile").read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]
    runs = " ".join(ln for ln in lines if ln.startswith("RUN"))
    assert "pip wheel" in runs and "--no-deps" in runs
    assert re.search(r"pip install [^&]*missive-\*\.whl", runs)
    assert "-e " not in runs and "[dev]" not in runs
    users = [ln.split()[1] for ln in lines if ln.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    # The last stage starts from a clean base and takes only the wheel from the build stage.
    last = max(i for i, ln in enumerate(lines) if ln.startswith("FROM "))
    copies = [ln for ln in lines[last:] if ln.startswith("COPY")]
    assert copies and all("--from=build" in ln for ln in copies)
    assert dockerfile_healthcheck()[0] == "python"


def test_build_context_leaves_out_local_state_and_secrets():
    ignored = {ln.strip().rstrip("/") for ln in (ROOT / ".dockerignore").read_text().splitlines()
               if ln.strip() and not ln.startswith("#")}
    assert {".git", ".venv", "var", ".env", "**/secret_key"} <= ignored


def test_compose_waits_for_healthy_servers_and_the_migration():
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    for name in ("postgres", "redis", "worker"):
        assert services[name]["healthcheck"]["test"], name
    assert services["migrate"]["command"] == ["missive", "db", "upgrade"]
    assert services["migrate"]["depends_on"]["postgres"] == {"condition": "service_healthy"}
    for name in ("web", "worker", "beat"):
        after = services[name]["depends_on"]
        assert after["migrate"] == {"condition": "service_completed_successfully"}, name
        assert after["postgres"] == after["redis"] == {"condition": "service_healthy"}, name
        assert services[name]["command"][0] == "missive"
        assert services[name]["environment"]["MISSIVE_SECRET_KEY"].startswith("${")
    # Web keeps the image's HTTP check; the processes without a port do not inherit it.
    assert "healthcheck" not in services["web"]
    assert services["beat"]["healthcheck"] == services["migrate"]["healthcheck"] == {
        "disable": True}
