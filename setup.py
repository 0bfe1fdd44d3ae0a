"""Only a guard: the project is described in pyproject.toml.

The pip a Python 3.10 venv ships (23.0) does not refuse a project whose requires-python excludes
the running Python: it treats it as one more constraint and backtracks through every version of every dependency
for many minutes before giving up. This check runs while pip prepares the metadata, so it fails at once, saying why.
"""

import sys

from setuptools import setup

# ruff (UP036) assumes requires-python already holds, which is exactly what this guards.
if sys.version_info < (3, 11):  # noqa: UP036 - keep in step with requires-python in pyproject.toml
    sys.exit(
        f"backfill needs Python 3.11 or newer; this is Python {sys.version.split()[0]} ({sys.executable}). "
        "Create the virtualenv with a newer Python, e.g. python3.12 -m venv .venv"
    )

setup()
