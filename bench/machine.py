"""Facts about the machine and the software measured, printed above the table."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from importlib import metadata

from tests.support.node import find_node_toolchain


def cpu_model() -> str:
    """The CPU's model name, from /proc/cpuinfo where there is one."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _node_versions() -> tuple[str, str]:
    toolchain = find_node_toolchain(install_missing=False)
    if toolchain is None:
        return "not installed", "not installed"
    try:
        node = subprocess.run(
            [str(toolchain.node), "--version"], capture_output=True, text=True, check=True, timeout=30
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        node = "unknown"
    package = toolchain.node_modules / "graphile-worker" / "package.json"
    worker = str(json.loads(package.read_text(encoding="utf-8")).get("version", "unknown"))
    return node, worker


def machine_facts(postgres_version: str) -> dict[str, str]:
    node, graphile_worker = _node_versions()
    return {
        "cpus": f"{os.cpu_count()} x {cpu_model()}",
        "os": f"{platform.system()} {platform.release()}",
        "postgresql": postgres_version,
        "python": platform.python_version(),
        "node": node,
        "backfill": _package_version("backfill"),
        "graphile-worker": graphile_worker,
        "procrastinate": _package_version("procrastinate"),
        "pgqueuer": _package_version("pgqueuer"),
        "asyncpg": _package_version("asyncpg"),
    }
