"""The deployment files (deploy/) agree with the code: ports, probe paths, data volume, non-root user, the
settings names, and the PostgreSQL variants (compose profile, several Kubernetes replicas).

Docker cannot build or run here, so the Dockerfile is checked as text and with hadolint, the compose file
as YAML, and the Kubernetes manifests offline with kubernetes-validate (hadolint and kubernetes-validate
also run in `make lint`).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from bot.config import Settings
from bot.http import HttpServer
from core.storage import is_postgres_url, sqlite_path_from_url
from tests.ports import free_port

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
K8S_POSTGRES = K8S / "postgres"
# Two variants of one Deployment: one replica on the SQLite PVC, several on a shared PostgreSQL.
DEPLOYMENTS = {"sqlite": K8S / "deployment.yaml", "postgres": K8S_POSTGRES / "deployment.yaml"}
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


def k8s_documents(folder: Path = K8S) -> dict[str, dict[str, Any]]:
    """The resources of one manifest folder (not its subfolders), by kind."""
    docs: dict[str, dict[str, Any]] = {}
    for path in sorted(folder.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                assert doc["kind"] not in docs, f"two {doc['kind']} resources in {folder}"
                docs[doc["kind"]] = doc
    return docs


def deployment(variant: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(DEPLOYMENTS[variant].read_text())
    return doc


def bot_container(variant: str = "sqlite") -> dict[str, Any]:
    containers = deployment(variant)["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    container: dict[str, Any] = containers[0]
    return container


def container_port(container: dict[str, Any], port: int | str) -> int:
    """A probe or Service port (a number or a named container port) as a number."""
    if isinstance(port, int):
        return port
    named = {p["name"]: p["containerPort"] for p in container["ports"] if "name" in p}
    return int(named[port])


def container_env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in container.get("env", [])}


# Dockerfile


def test_dockerfile_uses_slim_python_311() -> None:
    assert instruction_args("FROM") == ["python:3.11-slim"]


def test_dockerfile_runs_as_a_non_root_user_with_the_k8s_uid() -> None:
    users = instruction_args("USER")
    assert users, "no USER instruction: the container would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    for variant in DEPLOYMENTS:
        pod = deployment(variant)["spec"]["template"]["spec"]["securityContext"]
        assert pod["runAsNonRoot"] is True
        assert str(pod["runAsUser"]) == user


def test_dockerfile_installs_the_locked_dependencies_in_a_layer_before_the_source() -> None:
    steps = dockerfile_instructions()
    copies = [i for i, (name, _) in enumerate(steps) if name == "COPY"]
    # The lock alone: the dependency layer is rebuilt only when the pins change.
    assert steps[copies[0]][1] == "requirements.lock ./"
    source_copy = next(i for i in copies if steps[i][1].split()[0] in ("bot", "core", "adapters", "."))
    dependency_install = next(i for i, (n, a) in enumerate(steps) if n == "RUN" and "pip install" in a)
    assert copies[0] < dependency_install < source_copy
    locked = shlex.split(steps[dependency_install][1])
    assert {"--require-hashes", "--no-deps"} <= set(locked)
    assert locked[locked.index("-r") + 1] == "requirements.lock"
    package_install = [a for n, a in steps[source_copy:] if n == "RUN" and "pip install" in a]
    assert package_install and "--no-deps" in package_install[0]
    assert "pip check" in package_install[0]  # a lock that no longer satisfies pyproject.toml fails the build


def test_dockerfile_copies_only_what_the_build_context_keeps() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    sources = [word for args in instruction_args("COPY") for word in shlex.split(args)[:-1]]
    assert {"requirements.lock", "pyproject.toml", "README.md", "LICENSE"} <= set(sources)
    for source in sources:
        assert (ROOT / source).exists(), source
        assert source not in ignored and f"{source}/" not in ignored


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

COMPOSE_FILE = DEPLOY / "docker-compose.yml"
POSTGRES_PORT = 5432
_DEFAULTED = re.compile(r"\$\{(\w+):-([^}]*)\}")


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return data


def compose_header() -> str:
    lines = COMPOSE_FILE.read_text().splitlines()
    header = [
        line.removeprefix("#").strip()
        for line in lines[: next(i for i, x in enumerate(lines) if x[:1] != "#")]
    ]
    return "\n".join(header)


def with_defaults(value: str) -> str:
    """A Compose value as it is when none of its `${VAR:-default}` variables is set."""
    return _DEFAULTED.sub(lambda match: match.group(2), value)


def test_compose_runs_only_the_bot_on_sqlite_by_default() -> None:
    services = compose()["services"]
    assert {name for name, service in services.items() if "profiles" not in service} == {"bot"}
    bot = services["bot"]
    assert bot["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
    assert bot["env_file"] == "../.env"
    assert "DATABASE_URL" not in bot.get("environment", {})  # .env decides, as for a local `bot run`
    assert "not implemented" not in COMPOSE_FILE.read_text()


def test_compose_mounts_a_named_volume_on_the_data_dir() -> None:
    data = compose()
    mounts = [volume.split(":") for volume in data["services"]["bot"]["volumes"]]
    named = [source for source, target, *_ in mounts if target == DATA_DIR]
    assert named and named[0] in data["volumes"]


def test_compose_publishes_the_http_port_and_checks_health() -> None:
    bot = compose()["services"]["bot"]
    assert any(with_defaults(str(port)).endswith(f":{DEFAULT_PORT}") for port in bot["ports"])
    command = bot["healthcheck"]["test"]
    assert command[0] == "CMD" and command[1] == "python"
    test = " ".join(command)
    assert "127.0.0.1:" in test and "/healthz" in test
    assert f"'HTTP_PORT', '{DEFAULT_PORT}'" in test  # the image's default when .env does not set it


def healthchecks() -> dict[str, list[str]]:
    """The Dockerfile's and the compose file's health check commands, as argv lists."""
    (docker,) = instruction_args("HEALTHCHECK")
    compose_test = compose()["services"]["bot"]["healthcheck"]["test"]
    return {"dockerfile": json.loads(docker.split(" CMD ", 1)[1]), "compose": compose_test[1:]}


async def exit_code(argv: list[str], http_port: int) -> int:
    python = [sys.executable if argv[0] == "python" else argv[0], *argv[1:]]
    process = await asyncio.create_subprocess_exec(
        *python,
        env={**os.environ, "HTTP_PORT": str(http_port)},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    return await process.wait()


@pytest.mark.parametrize("where", ["dockerfile", "compose"])
async def test_healthcheck_follows_http_port(where: str) -> None:
    # The command really runs, against the bot's HTTP server on a port other than the default.
    argv = healthchecks()[where]
    server = HttpServer("127.0.0.1", 0)
    await server.start()
    try:
        assert server.port != DEFAULT_PORT
        assert await exit_code(argv, server.port) == 0
    finally:
        await server.stop()
    assert await exit_code(argv, free_port()) != 0  # nothing listens there: unhealthy


def test_compose_bot_can_be_scaled_without_a_fixed_host_port() -> None:
    (port,) = compose()["services"]["bot"]["ports"]
    variable = _DEFAULTED.fullmatch(port)
    assert variable, "the published port must be overridable for --scale"
    assert f"{variable.group(1)}={DEFAULT_PORT} " in compose_header()  # documented: a random host port
    assert "--scale bot=" in compose_header()


def test_compose_postgres_profile_runs_a_checked_postgres_17() -> None:
    data = compose()
    postgres = data["services"]["postgres"]
    assert postgres["profiles"] == ["postgres"]
    assert postgres["image"] == "postgres:17-alpine"
    mounts = [volume.split(":") for volume in postgres["volumes"]]
    named = [source for source, target, *_ in mounts if target == "/var/lib/postgresql/data"]
    assert named and named[0] in data["volumes"]
    check = postgres["healthcheck"]["test"]
    assert check[0] in ("CMD", "CMD-SHELL") and "pg_isready" in " ".join(check)
    assert "ports" not in postgres  # reachable on the Compose network only
    assert postgres["restart"] == "unless-stopped"


def test_compose_postgres_password_comes_from_env_with_a_trial_default() -> None:
    env = compose()["services"]["postgres"]["environment"]
    match = _DEFAULTED.fullmatch(env["POSTGRES_PASSWORD"])
    assert match and match.group(1) == "POSTGRES_PASSWORD" and match.group(2)
    assert "POSTGRES_PASSWORD=" in compose_header()
    assert match.group(2) in compose_header()  # the default is named as a local-trial value


def test_compose_bot_waits_for_a_healthy_postgres_only_with_the_profile() -> None:
    depends = compose()["services"]["bot"]["depends_on"]
    assert depends == {"postgres": {"condition": "service_healthy", "required": False}}


def test_compose_header_database_urls_reach_the_postgres_service() -> None:
    env = compose()["services"]["postgres"]["environment"]
    password = _DEFAULTED.fullmatch(env["POSTGRES_PASSWORD"])
    assert password
    trial_password = password.group(2)
    header = re.sub(r"<[^>]*>", "placeholder", compose_header())  # <the same password>
    urls = re.findall(r"DATABASE_URL=(\S+)", header)
    postgres_urls = [urlsplit(url.rstrip(").;,")) for url in urls if is_postgres_url(url)]
    assert postgres_urls, "the header shows the DATABASE_URL that uses the postgres service"
    for url in postgres_urls:
        assert url.hostname == "postgres" and url.port == POSTGRES_PORT
        assert url.username == env["POSTGRES_USER"]
        assert url.path == "/" + env["POSTGRES_DB"]
    assert trial_password in {url.password for url in postgres_urls}


def test_compose_header_starts_the_profile_with_the_env_file() -> None:
    # POSTGRES_PASSWORD is interpolated by Compose, which reads ../.env only when told to.
    commands = [line for line in compose_header().splitlines() if "--profile postgres" in line]
    assert commands and all("--env-file .env" in line for line in commands)


# Kubernetes


def test_k8s_has_every_manifest() -> None:
    assert set(k8s_documents()) == {
        "ConfigMap",
        "Deployment",
        "PersistentVolumeClaim",
        "Secret",
        "Service",
    }
    # The PostgreSQL variant adds its own Deployment and a disruption budget; the rest is shared.
    assert set(k8s_documents(K8S_POSTGRES)) == {"Deployment", "PodDisruptionBudget"}


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


def test_k8s_postgres_runs_several_replicas_rolled_without_losing_one() -> None:
    spec = deployment("postgres")["spec"]
    assert spec["replicas"] > 1
    assert spec["strategy"]["type"] == "RollingUpdate"
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert spec["strategy"]["rollingUpdate"]["maxSurge"] >= 1


def test_k8s_postgres_has_no_sqlite_volume() -> None:
    pod = deployment("postgres")["spec"]["template"]["spec"]
    assert not any("persistentVolumeClaim" in volume for volume in pod.get("volumes", []))
    assert DATA_DIR not in {mount["mountPath"] for mount in bot_container("postgres")["volumeMounts"]}


def test_k8s_postgres_takes_database_url_from_the_secret() -> None:
    secret = k8s_documents()["Secret"]
    env = container_env(bot_container("postgres"))
    ref = env["DATABASE_URL"]["valueFrom"]["secretKeyRef"]
    assert ref["name"] == secret["metadata"]["name"]
    assert ref.get("optional") is not True  # without the key the pod must not start (on SQLite)
    assert is_postgres_url(secret["stringData"][ref["key"]].strip("<>"))


@pytest.mark.parametrize("variant", DEPLOYMENTS)
def test_k8s_settings_names_are_real_settings(variant: str) -> None:
    # A misspelt variable would be ignored silently (extra="ignore"): every name must be a Settings field.
    names = set(k8s_documents()["ConfigMap"]["data"]) | set(container_env(bot_container(variant)))
    assert names and {name.lower() for name in names} <= set(Settings.model_fields)


def test_k8s_postgres_connections_fit_the_server_and_socket_mode() -> None:
    spec = deployment("postgres")["spec"]
    pods = spec["replicas"] + spec["strategy"]["rollingUpdate"]["maxSurge"]  # during a rollout
    pool = int(container_env(bot_container("postgres"))["DATABASE_POOL_SIZE"]["value"])
    assert pods * (pool + 1) <= 100 - 3  # PostgreSQL's default max_connections minus superuser slots
    assert pods <= 10  # Slack: at most 10 Socket Mode connections per app


def test_k8s_postgres_disruption_budget_keeps_a_replica() -> None:
    budget = k8s_documents(K8S_POSTGRES)["PodDisruptionBudget"]["spec"]
    spec = deployment("postgres")["spec"]
    assert budget["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    assert budget.get("maxUnavailable", 0) < spec["replicas"] or budget.get("minAvailable", 0) >= 1


@pytest.mark.parametrize("variant", DEPLOYMENTS)
def test_k8s_variants_replace_each_other(variant: str) -> None:
    # One name and one selector: applying a variant replaces the other, so both never run on one token.
    sqlite, other = deployment("sqlite"), deployment(variant)
    assert other["metadata"]["name"] == sqlite["metadata"]["name"]
    assert other["spec"]["selector"] == sqlite["spec"]["selector"]
    assert bot_container(variant)["image"] == bot_container("sqlite")["image"]
    assert bot_container(variant)["args"] == ["bot", "run"]


@pytest.mark.parametrize("variant", DEPLOYMENTS)
def test_k8s_probes_match_the_http_server_routes_and_port(variant: str) -> None:
    container = bot_container(variant)
    known = routes()
    liveness = container["livenessProbe"]["httpGet"]
    readiness = container["readinessProbe"]["httpGet"]
    assert liveness["path"] == "/healthz"
    assert readiness["path"] == "/readyz"
    assert {liveness["path"], readiness["path"]} <= known
    assert container_port(container, liveness["port"]) == DEFAULT_PORT
    assert container_port(container, readiness["port"]) == DEFAULT_PORT
    if "startupProbe" in container:
        startup = container["startupProbe"]["httpGet"]
        assert startup["path"] == "/healthz"
        assert container_port(container, startup["port"]) == DEFAULT_PORT
    assert k8s_documents()["ConfigMap"]["data"]["HTTP_PORT"] == str(DEFAULT_PORT)


@pytest.mark.parametrize("variant", DEPLOYMENTS)
def test_k8s_service_reaches_the_pod(variant: str) -> None:
    service = k8s_documents()["Service"]["spec"]
    labels = deployment(variant)["spec"]["template"]["metadata"]["labels"]
    assert service["selector"].items() <= labels.items()
    (port,) = service["ports"]
    assert container_port(bot_container(variant), port["targetPort"]) == DEFAULT_PORT


@pytest.mark.parametrize("variant", DEPLOYMENTS)
def test_k8s_container_reads_the_configmap_and_secret(variant: str) -> None:
    docs = k8s_documents()
    sources = bot_container(variant)["envFrom"]
    assert {"configMapRef": {"name": docs["ConfigMap"]["metadata"]["name"]}} in sources
    assert {"secretRef": {"name": docs["Secret"]["metadata"]["name"]}} in sources


@pytest.mark.parametrize("variant", DEPLOYMENTS)
def test_k8s_container_is_locked_down_with_a_writable_tmp(variant: str) -> None:
    container = bot_container(variant)
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    mounts = {mount["mountPath"] for mount in container["volumeMounts"]}
    env = " ".join(instruction_args("ENV"))
    mpl = next(word.split("=", 1)[1] for word in shlex.split(env) if word.startswith("MPLCONFIGDIR="))
    assert any(mpl.startswith(mount + "/") for mount in mounts)  # matplotlib writes its cache there
    assert container["resources"] == bot_container("sqlite")["resources"]


@pytest.mark.parametrize("variant", DEPLOYMENTS)
def test_k8s_grace_period_covers_the_shutdown_drain(variant: str) -> None:
    pod = deployment(variant)["spec"]["template"]["spec"]
    pre_stop = bot_container(variant).get("lifecycle", {}).get("preStop", {})
    command = pre_stop.get("exec", {}).get("command", [])
    wait = (
        float(command[1]) if command[:1] == ["sleep"] else float(pre_stop.get("sleep", {}).get("seconds", 0))
    )
    grace = Settings.model_fields["bot_shutdown_grace"].default
    assert pod["terminationGracePeriodSeconds"] > wait + grace


def test_k8s_secret_example_holds_placeholders_only() -> None:
    secret = k8s_documents()["Secret"]
    assert "data" not in secret
    values = secret["stringData"].values()
    assert values and all(value.startswith("<") and value.endswith(">") for value in values)


K8S_FILES = sorted(K8S.rglob("*.yaml"))


def test_make_lint_validates_every_k8s_manifest() -> None:
    (line,) = [x for x in (ROOT / "Makefile").read_text().splitlines() if "kubernetes-validate" in x]
    globs = [word for word in line.split() if word.startswith("deploy/")]
    linted = {path for pattern in globs for path in ROOT.glob(pattern)}
    assert linted == set(K8S_FILES)


def test_kubernetes_validate_strict_passes() -> None:
    # One run over every manifest (each start costs ~1 s); its output names the file that fails.
    result = subprocess.run(
        [str(BIN / "kubernetes-validate"), "--strict", "--quiet", *map(str, K8S_FILES)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
