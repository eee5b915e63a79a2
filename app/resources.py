"""Where the files Missive reads at run time live: templates, migrations, static files, samples.

The repository keeps them as top-level folders beside `app/`; a built wheel carries the same
folders inside the package as `app/_bundle/<folder>/` (mapped by setup.py). A checkout and an
editable install use the former, an installed wheel the latter. Every module asks here, so no
other code assumes either layout.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def _root() -> Path:
    # The bundle first: an installed package's parent is site-packages, where a stray top-level
    # `templates/` from some other distribution must never be taken for ours.
    bundle = _PACKAGE / "_bundle"
    return bundle if bundle.is_dir() else _PACKAGE.parent


ROOT = _root()
TEMPLATES = ROOT / "templates"
MIGRATIONS = ROOT / "migrations"
STATIC = ROOT / "static"
SAMPLES = ROOT / "samples"
