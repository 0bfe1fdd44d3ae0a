"""ops/docker: the compose file and the Dockerfile checked statically (no Docker engine runs here or in CI): the
files they name exist, every variable they set is one backfill reads, the runner stops within its grace, the image
runs `backfill run` as non-root with its health check; and the health check script itself."""

from __future__ import annotations

import ast
import fnmatch
import json
import os
import shlex
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from tests.support.markdown import markdown_section
from tests.support.ops import (
    ALERTS,
    BACKFILL_VARIABLES,
    COMPOSE,
    DASHBOARD,
    DEPLOYMENT_DOC,
    DOCKER,
    DOCKERFILE,
    PROMETHEUS_CONFIG,
    REPO_ROOT,
    load_yaml_file,
)


def test_the_deployment_doc_has_the_containersmarkdown_section() -> None:
    section = markdown_section(DEPLOYMENT_DOC, "## Containers: the Dockerfile and compose file in ops/docker")
    for target in ("../../ops/docker/Dockerfile", "../../ops/docker/compose.yaml"):
        assert f"]({target})" in section


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = load_yaml_file(COMPOSE)
    return loaded


def backfill_services(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services that run the image built from the Dockerfile."""
    images = {service["image"] for service in document["services"].values() if "build" in service}
    assert len(images) == 1, f"one image is built, under one name: {images}"
    return {name: service for name, service in document["services"].items() if service.get("image") in images}


def test_compose_builds_the_dockerfile_and_runs_postgres_16_web_runners_and_prometheus() -> None:
    document = compose()
    services = document["services"]
    assert services["postgres"]["image"].startswith("postgres:16")
    for name, service in services.items():
        if "build" in service:
            context = (COMPOSE.parent / service["build"]["context"]).resolve()
            assert (context / service["build"]["dockerfile"]).resolve() == DOCKERFILE.resolve(), name
    ours = backfill_services(document)
    assert {"migrate", "runner", "web"} <= set(ours)
    assert ours["runner"]["command"] == ["backfill", "run"]
    assert int(ours["runner"]["deploy"]["replicas"]) >= 2
    assert ours["web"]["command"][0] == "uvicorn"
    assert services["prometheus"]["image"].startswith("prom/prometheus:")
    assert services["grafana"]["profiles"] == ["grafana"]  # optional


def test_compose_mounts_files_that_exist_where_prometheus_and_grafana_read_them() -> None:
    services = compose()["services"]
    mounts: dict[str, dict[str, Path]] = {}  # service -> target -> source
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source, target, *_ = volume.split(":")
            if source.startswith((".", "/")):
                path = (COMPOSE.parent / source).resolve()
                assert path.exists(), f"{name}: {source} does not exist"
                mounts.setdefault(name, {})[target] = path
    prometheus = mounts["prometheus"]
    assert prometheus["/etc/prometheus/prometheus.yml"] == PROMETHEUS_CONFIG.resolve()
    rule_globs = load_yaml_file(PROMETHEUS_CONFIG)["rule_files"]
    rules = [target for target, source in prometheus.items() if source == ALERTS.resolve()]
    assert rules and all(any(fnmatch.fnmatch(rule, glob) for glob in rule_globs) for rule in rules)
    grafana = mounts["grafana"]
    dashboards = [target for target, source in grafana.items() if source == DASHBOARD.resolve()]
    providers = [source for target, source in grafana.items() if "/provisioning/dashboards/" in target]
    assert dashboards and providers
    folders = [provider["options"]["path"] for provider in load_yaml_file(providers[0])["providers"]]
    assert all(PurePosixPath(target).parent == PurePosixPath(folders[0]) for target in dashboards)
    sources = [source for target, source in grafana.items() if "/provisioning/datasources/" in target]
    (datasource,) = load_yaml_file(sources[0])["datasources"]
    assert datasource["type"] == "prometheus" and datasource["isDefault"] is True
    assert datasource["url"] == "http://prometheus:9090" and "prometheus" in services


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    assert isinstance(env, dict), "environment as a mapping"
    return env


def test_compose_sets_only_variables_backfill_reads() -> None:
    document = compose()
    for name, service in document["services"].items():
        for variable in environment(service):
            if variable.startswith("BACKFILL_"):
                assert variable in BACKFILL_VARIABLES, f"{name}: {variable} is not a backfill setting"
    for name, service in backfill_services(document).items():
        for variable in environment(service):
            assert variable in BACKFILL_VARIABLES or variable.startswith("DEMO_"), f"{name}: {variable}"
        assert "DATABASE_URL" in environment(service), name


def test_compose_runner_gets_longer_to_stop_than_its_shutdown_grace() -> None:
    runner = compose()["services"]["runner"]
    grace = float(environment(runner).get("BACKFILL_SHUTDOWN_GRACE_SECONDS", "30"))
    stop = runner["stop_grace_period"]
    assert stop.endswith("s") and float(stop[:-1]) > grace


def test_prometheus_scrapes_the_ports_the_runners_and_the_web_app_serve() -> None:
    services = compose()["services"]
    jobs = {job["job_name"]: job for job in load_yaml_file(PROMETHEUS_CONFIG)["scrape_configs"]}
    (runners,) = jobs["backfill-runner"]["dns_sd_configs"]
    assert runners["names"] == ["runner"]
    metrics_port = (
        environment(services["runner"]).get("BACKFILL_METRICS_PORT") or dockerfile_env()["BACKFILL_METRICS_PORT"]
    )
    assert str(runners["port"]) == metrics_port
    (web,) = jobs["backfill-web"]["static_configs"]
    command = services["web"]["command"]
    assert web["targets"] == [f"web:{command[command.index('--port') + 1]}"]


def test_the_modules_compose_runs_exist_in_the_demo_app() -> None:
    services = compose()["services"]
    app = DOCKER / "app"
    modules = environment(services["runner"]).get("BACKFILL_TASK_MODULES") or dockerfile_env()["BACKFILL_TASK_MODULES"]
    for module in modules.split(","):
        assert (app / Path(*module.strip().split("."))).with_suffix(".py").is_file(), module
    module, _, attribute = services["web"]["command"][1].partition(":")
    tree = ast.parse((app / Path(*module.split("."))).with_suffix(".py").read_text(encoding="utf-8"))
    assigned = {target.id for node in tree.body if isinstance(node, ast.Assign) for target in node.targets
                if isinstance(target, ast.Name)}  # fmt: skip
    assert attribute in assigned


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        keyword, _, arguments = pending.strip().partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        pending = ""
    return instructions


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile_instructions()
    start = max(index for index, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[start:]


def dockerfile_env() -> dict[str, str]:
    variables: dict[str, str] = {}
    for keyword, arguments in final_stage():
        if keyword == "ENV":
            for pair in shlex.split(arguments):
                name, _, value = pair.partition("=")
                variables[name] = value
    return variables


def test_dockerfile_runs_backfill_run_as_a_non_root_user_with_a_health_check() -> None:
    stage = final_stage()
    arguments = dict(stage)  # the last of each
    assert arguments["FROM"] == "python:3.12-slim"
    assert json.loads(arguments["CMD"]) == ["backfill", "run"]  # exec form: the runner receives the signals
    assert arguments["STOPSIGNAL"] == "SIGTERM"
    user = arguments["USER"].split(":")[0]
    assert user not in ("root", "0")
    health = arguments["HEALTHCHECK"]
    command = json.loads(health[health.index("CMD") + len("CMD") :].strip())
    installed = [value.split()[-1] for keyword, value in stage if keyword == "COPY"]
    assert f"/usr/local/bin/{command[0]}" in installed
    assert arguments["EXPOSE"] == dockerfile_env()["BACKFILL_METRICS_PORT"]
    installs = " ".join(value for keyword, value in dockerfile_instructions() if keyword == "RUN" and "pip " in value)
    assert "backfill[admin]" in installs


def test_dockerfile_sets_only_variables_backfill_reads() -> None:
    variables = [name for name in dockerfile_env() if not name.startswith(("PYTHON", "PIP_"))]
    assert variables and all(name in BACKFILL_VARIABLES for name in variables), variables


def test_dockerfile_copies_files_that_exist_and_that_its_ignore_file_lets_in() -> None:
    allowed = [
        line[1:].rstrip("/")
        for line in (DOCKER / "Dockerfile.dockerignore").read_text(encoding="utf-8").splitlines()
        if line.startswith("!")
    ]
    for keyword, arguments in dockerfile_instructions():
        if keyword != "COPY" or "--from" in arguments:
            continue
        *sources, _ = [part for part in arguments.split() if not part.startswith("--")]
        for source in sources:
            assert (REPO_ROOT / source).exists(), source
            assert any(source == path or source.startswith(f"{path}/") for path in allowed), f"{source} is ignored"


class _Healthz(BaseHTTPRequestHandler):
    status = 200
    body = b"ok"

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def healthz() -> Iterator[tuple[type[_Healthz], int]]:
    handler = type("Healthz", (_Healthz,), {})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield handler, server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def run_healthcheck(**variables: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("BACKFILL_")} | variables
    script = DOCKER / "healthcheck.py"
    return subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=30, check=False
    )


def test_healthcheck_passes_on_200_and_fails_on_503_or_no_answer(healthz: tuple[type[_Healthz], int]) -> None:
    handler, port = healthz
    assert run_healthcheck(BACKFILL_METRICS_PORT=str(port)).returncode == 0
    handler.status, handler.body = 503, b"event loop did not answer within 0.5s (blocked or stopped)"
    failed = run_healthcheck(BACKFILL_METRICS_PORT=str(port), BACKFILL_METRICS_HOST="127.0.0.1")
    assert failed.returncode == 1
    assert "503 event loop did not answer" in failed.stdout
    handler.status = 200
    refused = run_healthcheck(BACKFILL_METRICS_PORT=str(port), BACKFILL_METRICS_HOST="127.0.0.2")
    assert refused.returncode == 1 and "no answer" in refused.stdout


def test_healthcheck_passes_without_a_metrics_port() -> None:
    done = run_healthcheck()
    assert done.returncode == 0 and "not set" in done.stdout
