"""The deployment files (deploy/) agree with the code: ports, probe paths, data volume, non-root user.

Docker cannot build here, so the Dockerfile is checked as text and with hadolint; the Kubernetes manifests
are validated offline with kubernetes-validate (both also run in `make lint`).
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.config import Settings
from bot.http import HttpServer
from core.storage import sqlite_path_from_url

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
BIN = Path(sys.executable).parent
DATA_DIR = "/app/data"
DEFAULT_PORT = Settings.model_fields["http_port"].default


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    joined: list[str] = []
    pending = ""
    for raw in (DEPLOY / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        joined.append(pending + line)
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in joined]


def instruction_args(name: str) -> list[str]:
    return [args for instruction, args in dockerfile_instructions() if instruction == name]


def routes() -> set[str]:
    server = HttpServer("127.0.0.1", 0)
    return {resource.canonical for resource in server.app.router.resources()}


def k8s_documents() -> dict[str, dict[str, Any]]:
    docs: dict[str, dict[str, Any]] = {}
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs[doc["kind"]] = doc
    return docs


def bot_container() -> dict[str, Any]:
    deployment = k8s_documents()["Deployment"]
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    container: dict[str, Any] = containers[0]
    return container


def container_port(container: dict[str, Any], port: int | str) -> int:
    """A probe or Service port (a number or a named container port) as a number."""
    if isinstance(port, int):
        return port
    named = {p["name"]: p["containerPort"] for p in container["ports"] if "name" in p}
    return int(named[port])


# Dockerfile


def test_dockerfile_uses_slim_python_311() -> None:
    assert instruction_args("FROM") == ["python:3.11-slim"]


def test_dockerfile_runs_as_a_non_root_user_with_the_k8s_uid() -> None:
    users = instruction_args("USER")
    assert users, "no USER instruction: the container would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    pod = k8s_documents()["Deployment"]["spec"]["template"]["spec"]["securityContext"]
    assert pod["runAsNonRoot"] is True
    assert str(pod["runAsUser"]) == user


def test_dockerfile_installs_dependencies_in_a_layer_before_the_source() -> None:
    steps = dockerfile_instructions()
    copies = [i for i, (name, _) in enumerate(steps) if name == "COPY"]
    first_copy = steps[copies[0]][1]
    assert first_copy.split()[0] == "pyproject.toml"
    source_copy = next(i for i in copies if steps[i][1].split()[0] in ("bot", "core", "adapters", "."))
    dependency_install = next(i for i, (n, a) in enumerate(steps) if n == "RUN" and "pip install" in a)
    assert copies[0] < dependency_install < source_copy
    package_install = [a for n, a in steps[source_copy:] if n == "RUN" and "pip install" in a]
    assert package_install and "--no-deps" in package_install[0]


def test_dockerfile_healthcheck_hits_healthz_on_the_default_port() -> None:
    (check,) = instruction_args("HEALTHCHECK")
    assert "/healthz" in routes()
    assert "/healthz" in check
    assert "127.0.0.1" in check
    assert f"'HTTP_PORT', '{DEFAULT_PORT}'" in check or f":{DEFAULT_PORT}/" in check
    assert "curl" not in check  # python:3.11-slim has none


def test_dockerfile_keeps_sqlite_in_the_data_volume_and_runs_the_bot() -> None:
    env = " ".join(instruction_args("ENV"))
    url = next(word.split("=", 1)[1] for word in shlex.split(env) if word.startswith("DATABASE_URL="))
    assert sqlite_path_from_url(url).startswith(DATA_DIR + "/")
    assert f"HTTP_PORT={DEFAULT_PORT}" in env
    assert json.loads(instruction_args("VOLUME")[0]) == [DATA_DIR]
    assert instruction_args("EXPOSE") == [str(DEFAULT_PORT)]
    assert json.loads(instruction_args("CMD")[0]) == ["bot", "run"]


def test_dockerignore_keeps_secrets_and_local_state_out_of_the_image() -> None:
    entries = set((ROOT / ".dockerignore").read_text().split())
    assert {".venv", "data", ".git", ".env", ".mypy_cache", ".pytest_cache", ".ruff_cache"} <= entries


def test_hadolint_passes() -> None:
    result = subprocess.run(
        [str(BIN / "hadolint"), str(DEPLOY / "Dockerfile")], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


# docker-compose.yml


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    return data


def test_compose_runs_only_the_bot_on_sqlite_until_postgres_exists() -> None:
    services = compose()["services"]
    assert set(services) == {"bot"}  # no PostgreSQL profile before the PostgreSQL backend
    assert not any("profiles" in service for service in services.values())
    assert "postgres" in (DEPLOY / "docker-compose.yml").read_text()  # the note on the future profile
    bot = services["bot"]
    assert bot["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
    assert bot["env_file"] == "../.env"
    assert "DATABASE_URL" not in bot.get("environment", {})


def test_compose_mounts_a_named_volume_on_the_data_dir() -> None:
    data = compose()
    mounts = [volume.split(":") for volume in data["services"]["bot"]["volumes"]]
    named = [source for source, target, *_ in mounts if target == DATA_DIR]
    assert named and named[0] in data["volumes"]


def test_compose_publishes_the_http_port_and_checks_health() -> None:
    bot = compose()["services"]["bot"]
    assert any(str(port).endswith(f":{DEFAULT_PORT}") for port in bot["ports"])
    test = " ".join(bot["healthcheck"]["test"])
    assert f"127.0.0.1:{DEFAULT_PORT}/healthz" in test


# Kubernetes


def test_k8s_has_every_manifest() -> None:
    assert set(k8s_documents()) == {
        "ConfigMap",
        "Deployment",
        "PersistentVolumeClaim",
        "Secret",
        "Service",
    }


def test_k8s_runs_one_replica_recreated_on_the_sqlite_pvc() -> None:
    docs = k8s_documents()
    spec = docs["Deployment"]["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"]["type"] == "Recreate"
    volumes = {v["name"]: v for v in spec["template"]["spec"]["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in bot_container()["volumeMounts"]}
    claim = volumes[mounts[DATA_DIR]]["persistentVolumeClaim"]["claimName"]
    assert claim == docs["PersistentVolumeClaim"]["metadata"]["name"]
    url = docs["ConfigMap"]["data"]["DATABASE_URL"]
    assert sqlite_path_from_url(url).startswith(DATA_DIR + "/")


def test_k8s_probes_match_the_http_server_routes_and_port() -> None:
    container = bot_container()
    known = routes()
    liveness = container["livenessProbe"]["httpGet"]
    readiness = container["readinessProbe"]["httpGet"]
    assert liveness["path"] == "/healthz"
    assert readiness["path"] == "/readyz"
    assert {liveness["path"], readiness["path"]} <= known
    assert container_port(container, liveness["port"]) == DEFAULT_PORT
    assert container_port(container, readiness["port"]) == DEFAULT_PORT
    assert k8s_documents()["ConfigMap"]["data"]["HTTP_PORT"] == str(DEFAULT_PORT)


def test_k8s_service_reaches_the_pod() -> None:
    docs = k8s_documents()
    service = docs["Service"]["spec"]
    labels = docs["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert service["selector"].items() <= labels.items()
    (port,) = service["ports"]
    assert container_port(bot_container(), port["targetPort"]) == DEFAULT_PORT


def test_k8s_container_reads_the_configmap_and_secret() -> None:
    docs = k8s_documents()
    sources = bot_container()["envFrom"]
    assert {"configMapRef": {"name": docs["ConfigMap"]["metadata"]["name"]}} in sources
    assert {"secretRef": {"name": docs["Secret"]["metadata"]["name"]}} in sources


def test_k8s_secret_example_holds_placeholders_only() -> None:
    secret = k8s_documents()["Secret"]
    assert "data" not in secret
    values = secret["stringData"].values()
    assert values and all(value.startswith("<") and value.endswith(">") for value in values)


@pytest.mark.parametrize("path", sorted(K8S.glob("*.yaml")), ids=lambda p: p.name)
def test_kubernetes_validate_strict_passes(path: Path) -> None:
    result = subprocess.run(
        [str(BIN / "kubernetes-validate"), "--strict", "--quiet", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
