"""Dependencies between the reader-facing packages point one way (issue 12).

    signup ─┐
    sending ─┼─> subscribers   (unsubscribe tokens and links, the unsubscribe, the one
    bounces ─┘                  suppression rule)
    sending ───> bounces       (the engine hands SMTP refusals to the bounce policy; the
                                send report reads its counts)
    bounces ───> sending.models only (pausing a send is `Send.pause`)

Imports are read with `ast`, so an import hidden inside a function counts too: a cycle put
off until call time is still a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parent.parent / "app"

# (package, imported module it must not use, the exceptions allowed under it)
RULES: list[tuple[str, str, tuple[str, ...]]] = [
    ("bounces", "app.signup", ()),
    ("bounces", "app.sending", ("app.sending.models",)),
    ("sending", "app.signup", ()),
    ("signup", "app.sending", ()),
    ("signup", "app.bounces", ()),
    ("subscribers", "app.signup", ()),
    ("subscribers", "app.sending", ()),
    ("subscribers", "app.bounces", ()),
]


def imports(path: Path) -> list[list[str]]:
    """Each import statement of a file, anywhere in it, as the modules it may load:
    `from a import b` may load `a` or `a.b` (b may be a module)."""
    found: list[list[str]] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.extend([alias.name] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append([node.module, *(f"{node.module}.{a.name}" for a in node.names)])
    return found


def breaches(app_dir: Path, package: str, forbidden: str, allowed: tuple[str, ...]
             ) -> list[str]:
    """`file: module` for each import under app/<package> that the rule forbids."""

    def under(module: str, parent: str) -> bool:
        return module == parent or module.startswith(parent + ".")

    out = []
    for path in sorted((app_dir / package).rglob("*.py")):
        for candidates in imports(path):
            hit = next((m for m in candidates if under(m, forbidden)
                        and not any(under(m, a) for a in allowed)), None)
            if hit is not None:
                out.append(f"{path.relative_to(app_dir.parent)}: {hit}")
    return out


@pytest.mark.parametrize(("package", "forbidden", "allowed"), RULES,
                         ids=[f"{p}-not-{f}" for p, f, _ in RULES])
def test_package_does_not_import(package: str, forbidden: str, allowed: tuple[str, ...]
                                 ) -> None:
    assert breaches(APP, package, forbidden, allowed) == []


def test_the_scanner_sees_imports_inside_functions(tmp_path: Path) -> None:
    # What the bounce policy did before: pause a send through the sending service, imported
    # at call time to dodge the cycle.
    package = tmp_path / "app" / "bounces"
    package.mkdir(parents=True)
    (package / "service.py").write_text(
        "from app.sending.models import Send\n\n"
        "def pause_on_burst():\n    from app.sending.service import pause\n"
        "    from app import signup\n")
    assert breaches(tmp_path / "app", "bounces", "app.sending", ("app.sending.models",)) == [
        "app/bounces/service.py: app.sending.service"]
    assert breaches(tmp_path / "app", "bounces", "app.signup", ()) == [
        "app/bounces/service.py: app.signup"]
