"""Packaging that pyproject.toml cannot say: the top-level data folders ship inside `app`.

The repository keeps `templates/`, `migrations/`, `static/` and `samples/` at its root; a wheel
carries them as `app/_bundle/<folder>/` so a plain `pip install .` runs on its own.
`app/resources.py` finds them in either place. Everything else is in pyproject.toml.
"""

import warnings

from setuptools import find_packages, setup

BUNDLED = ("templates", "migrations", "static", "samples")

# Subfolders (templates/email, …) travel as data of their top folder, which is what we mean;
# setuptools would otherwise warn once per subfolder that it is not a package of its own.
warnings.filterwarnings("ignore", message=r"Package 'app\._bundle\..*' is absent")

setup(
    packages=[
        *find_packages(include=["app", "app.*", "worker", "worker.*"]),
        *(f"app._bundle.{folder}" for folder in BUNDLED),
    ],
    package_dir={f"app._bundle.{folder}": folder for folder in BUNDLED},
    # Every file below each folder, at any depth, so new templates or assets need no edit here.
    package_data={f"app._bundle.{folder}": ["**/*"] for folder in BUNDLED},
    exclude_package_data={"": ["__pycache__/*", "**/__pycache__/*", "*.pyc"]},
)
