"""The docker compose deployment, checked without a Docker engine.

``docker-compose.yml`` is parsed as YAML and held to the rules the cluster guide promises:
the five services, health checks, a GPU reservation on the workers, secrets only from
``.env``, ports on 127.0.0.1 only, Ray token authentication on every node and driver, the
environment variable names the code reads, and commands that the real ``cellsearch``,
``ray`` and ``mlflow`` command lines accept. The ``Dockerfile`` and the image's entry point
are checked too; ``tests/test_cluster.py`` runs the entry point against a real cluster.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from _commands import REPO, check_command, interpolate, shell_commands, variables
from packaging.requirements import Requirement
from sqlalchemy.engine import make_url

from search._settings import ENV_DATA_DIR, ENV_DB_URL, ENV_MLFLOW_URI, ENV_RAY_ADDRESS, ENV_VARIABLES

COMPOSE_FILE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / ".env.example"
DOCKERFILE = REPO / "Dockerfile"
ENTRYPOINT = REPO / "docker" / "entrypoint.sh"
CLUSTER_GUIDE = REPO / "docs" / "cluster.md"

SERVICES = {"postgres", "mlflow", "ray-head", "ray-worker", "search"}
RAY_NODES = {"ray-head", "ray-worker", "search"}  # the search container joins as a driver node
SECRET_KEY = re.compile(r"PASSWORD|SECRET|TOKEN|(^|_)KEY$", re.I)
URL_PASSWORD = re.compile(r"://[^/\s:@]+:(?P<password>[^@\s]+)@")
# A secret is a reference with no default: ${VAR}, or ${VAR:?message} to require it.
SECRET_REFERENCE = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*(:?\?[^}]*)?\}")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):  # the KEY=VALUE list form
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def _command(service: dict[str, Any]) -> list[str]:
    command = service["command"]
    return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]


def _strings(node: Any, path: str = "") -> list[tuple[str, str]]:
    """Every string in a YAML document (keys included), with its path."""
    if isinstance(node, dict):
        found = []
        for key, value in node.items():
            found += [(f"{path}.{key}", str(key)), *_strings(value, f"{path}.{key}")]
        return found
    if isinstance(node, list):
        return [item for i, value in enumerate(node) for item in _strings(value, f"{path}[{i}]")]
    return [(path, str(node))] if node is not None else []


def _stand_ins(text: str) -> tuple[str, list[str]]:
    """``text`` with each ``${...}`` replaced by ``__refN__`` (their defaults and messages may
    hold ':' or '@', which would confuse the URL pattern), and the references in order."""
    references = re.findall(r"\$\{[^}]*\}", text)
    parts = re.split(r"\$\{[^}]*\}", text)
    flattened = parts[0] + "".join(f"__ref{i}__{part}" for i, part in enumerate(parts[1:]))
    return flattened, references


def literal_secrets(document: Any) -> list[str]:
    """Places where a secret is written out instead of read from a ``${VAR}`` without default.

    Example:
        >>> literal_secrets({"environment": {"DB_PASSWORD": "hunter2", "RAY_AUTH_TOKEN": "${T:?}"}})
        ['.environment.DB_PASSWORD = hunter2']
        >>> literal_secrets({"command": "psql postgresql://me:hunter2@db/x"})
        ['.command: psql postgresql://me:hunter2@...']
    """
    problems = []
    for path, text in _strings(document):
        key, value = path.rsplit(".", 1)[-1], text
        if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", text):  # the KEY=VALUE list form
            key, value = text.split("=", 1)
        if SECRET_KEY.search(key) and value != key and not SECRET_REFERENCE.fullmatch(value):
            problems.append(f"{path} = {text}")
        flattened, references = _stand_ins(text)
        for match in URL_PASSWORD.finditer(flattened):
            ref = re.fullmatch(r"__ref(\d+)__", match["password"])
            if not (ref and SECRET_REFERENCE.fullmatch(references[int(ref[1])])):
                problems.append(f"{path}: {flattened[: match.end('password') + 1]}...")
    return problems


def published_host_ips(service: dict[str, Any]) -> list[str]:
    """The host address of each published port, defaults filled in (``""`` means every address).

    Example:
        >>> published_host_ips({"ports": ["${BIND:-127.0.0.1}:${P:-80}:80", "8080:80", "9000"]})
        ['127.0.0.1', '', '']
    """
    ips = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            ips.append(str(port.get("host_ip", "")))
            continue
        parts = interpolate(str(port)).split(":")
        ips.append(":".join(parts[:-2]) if len(parts) >= 3 else "")
    return ips


def test_the_five_services(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) == SERVICES


def test_postgres_mlflow_and_ray_head_have_health_checks_others_wait_for(
    services: dict[str, dict[str, Any]],
) -> None:
    for name in ("postgres", "mlflow", "ray-head"):
        test = services[name]["healthcheck"]["test"]
        assert test[0] in ("CMD", "CMD-SHELL") and len(test) > 1, name
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert check_command(services["ray-head"]["healthcheck"]["test"][1:]) == "ray health-check"
    for name, service in services.items():
        for dependency, rule in service.get("depends_on", {}).items():
            assert dependency in services, f"{name} depends on an unknown service {dependency}"
            if rule.get("condition") == "service_healthy":
                assert "healthcheck" in services[dependency], f"{name} waits for {dependency}'s health check"


def test_workers_reserve_nvidia_gpus_and_can_be_scaled(services: dict[str, dict[str, Any]]) -> None:
    worker = services["ray-worker"]
    (device,) = worker["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia"
    assert "gpu" in device["capabilities"]
    count = interpolate(str(device["count"]))
    assert count == "all" or int(count) >= 1
    assert variables(str(device["count"])) == ["GPUS_PER_WORKER"]
    # `docker compose up --scale ray-worker=N` needs replicas without fixed names or host ports.
    assert "container_name" not in worker
    assert "ports" not in worker
    # Ray detects the GPUs itself: no --num-gpus pinned on the worker's command line.
    assert not any(arg.startswith("--num-gpus") for arg in _command(worker))


def test_no_literal_secrets_in_the_compose_file(compose: dict[str, Any]) -> None:
    assert literal_secrets(compose) == []
    # The two secrets are required: compose refuses to start without them.
    text = COMPOSE_FILE.read_text()
    for secret in ("POSTGRES_PASSWORD", "RAY_AUTH_TOKEN"):
        assert re.search(r"\$\{" + secret + r":\?[^}]+\}", text), secret
        assert not re.search(r"\$\{" + secret + r"(:?-)", text), f"{secret} must have no default"


def test_the_secret_checker_catches_literal_secrets() -> None:
    assert literal_secrets({"db": {"environment": ["POSTGRES_PASSWORD=x", "USER=me"]}}) == [
        ".db.environment[0] = POSTGRES_PASSWORD=x"
    ]
    assert literal_secrets({"db": {"environment": {"API_KEY": "x", "MONKEY": "y"}}}) == [
        ".db.environment.API_KEY = x"
    ]
    assert literal_secrets({"command": "mlflow server --backend-store-uri postgresql://u:${P}@db/m"}) == []
    assert literal_secrets({"url": "postgresql://${U:-me}:${P:?set P in .env}@db/x"}) == []
    assert literal_secrets({"url": "postgresql://${U:-me}:pw@db/x"}) == [".url: postgresql://__ref0__:pw@..."]
    assert literal_secrets({"url": "postgresql://me:${P:-pw}@db/x"}) == [".url: postgresql://me:__ref0__@..."]
    # A default would be a literal secret in disguise.
    assert literal_secrets({"environment": {"RAY_AUTH_TOKEN": "${RAY_AUTH_TOKEN:-changeme}"}}) != []


def test_every_published_port_is_bound_to_localhost(services: dict[str, dict[str, Any]]) -> None:
    published = {
        name: published_host_ips(service) for name, service in services.items() if "ports" in service
    }
    assert set(published) == {"postgres", "mlflow", "ray-head"}
    for name, ips in published.items():
        assert ips and all(ip == "127.0.0.1" for ip in ips), f"{name} publishes on {ips}"
    for name, service in services.items():
        assert service.get("network_mode") != "host", name


def test_ray_token_authentication_on_every_node_and_driver(services: dict[str, dict[str, Any]]) -> None:
    for name in RAY_NODES:
        env = _environment(services[name])
        assert env.get("RAY_AUTH_MODE") == "token", name
        assert variables(env["RAY_AUTH_TOKEN"]) == ["RAY_AUTH_TOKEN"], name
    assert "RAY_AUTH_TOKEN" not in _environment(services["postgres"])


def test_the_search_service_sets_every_variable_the_settings_read(
    services: dict[str, dict[str, Any]],
) -> None:
    env = _environment(services["search"])
    assert set(ENV_VARIABLES) <= set(env)
    assert interpolate(env[ENV_MLFLOW_URI]) == "http://mlflow:5000"
    assert interpolate(env[ENV_RAY_ADDRESS]) == "ray-head:6379"
    db = make_url(interpolate(env[ENV_DB_URL], {"POSTGRES_PASSWORD": "pw"}))
    assert (db.drivername, db.host, db.port, db.password) == ("postgresql+psycopg", "postgres", 5432, "pw")
    assert db.database == interpolate(_environment(services["postgres"])["POSTGRES_DB"])
    assert db.username == interpolate(_environment(services["postgres"])["POSTGRES_USER"])
    # Those addresses are where the services listen.
    assert "--port=6379" in _command(services["ray-head"])
    mlflow_command = _command(services["mlflow"])
    assert mlflow_command[mlflow_command.index("--port") + 1] == "5000"
    assert "mlflow:5000" in mlflow_command[mlflow_command.index("--allowed-hosts") + 1].split(",")
    # Jobs go to the cluster: the container joins Ray as a driver node (docker/entrypoint.sh).
    assert env["CELLSEARCH_JOIN_RAY"] == "1"
    assert "tools" in services["search"]["profiles"]  # `docker compose up` does not start it


def test_workers_read_data_but_get_no_database_credentials(services: dict[str, dict[str, Any]]) -> None:
    env = _environment(services["ray-worker"])
    assert env[ENV_DATA_DIR] == _environment(services["search"])[ENV_DATA_DIR]
    data_volume = next(v for v in services["search"]["volumes"] if v.endswith(":" + env[ENV_DATA_DIR]))
    assert data_volume in services["ray-worker"]["volumes"]
    assert ENV_DB_URL not in env
    assert not any("POSTGRES" in variable for value in env.values() for variable in variables(value))


def test_mlflow_keeps_runs_in_postgres_and_serves_artifacts(services: dict[str, dict[str, Any]]) -> None:
    mlflow = services["mlflow"]
    backend = make_url(interpolate(_environment(mlflow)["MLFLOW_BACKEND_STORE_URI"]))
    assert (backend.drivername, backend.host, backend.database) == (
        "postgresql+psycopg",
        "postgres",
        "mlflow",
    )
    # MLflow has its own database (both it and cellsearch keep an alembic_version table).
    init_sql = (REPO / "docker" / "postgres-init").glob("*.sql")
    assert any("CREATE DATABASE mlflow" in path.read_text() for path in init_sql)
    command = _command(mlflow)
    assert "--serve-artifacts" in command
    destination = command[command.index("--artifacts-destination") + 1]
    assert any(volume.endswith(":" + destination) for volume in mlflow["volumes"])


def test_every_compose_variable_is_documented_in_env_example() -> None:
    used = set(variables(COMPOSE_FILE.read_text()))
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), re.M))
    assert used - documented == set(), "used in docker-compose.yml but not in .env.example"
    assert documented - used == set(), "documented in .env.example but unused"
    # The example carries no secret values: they are generated per deployment.
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.startswith(("POSTGRES_PASSWORD=", "RAY_AUTH_TOKEN=")):
            assert line.endswith("="), line


def test_service_commands_are_accepted_by_the_real_programs(services: dict[str, dict[str, Any]]) -> None:
    checked = {}
    for name, service in services.items():
        if "command" in service:
            checked[name] = check_command(_command(service))
    assert checked == {"mlflow": "mlflow server", "ray-head": "ray start", "ray-worker": "ray start"}
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["cellsearch"] == "cellsearch._cli:main"


def test_commands_in_the_cluster_guide_name_real_services_and_subcommands(
    services: dict[str, dict[str, Any]],
) -> None:
    commands = [c for c in shell_commands(CLUSTER_GUIDE.read_text()) if c.startswith("docker compose")]
    assert len(commands) >= 8
    launched = []
    for line in commands:
        argv = shlex.split(line.split("|")[0].split(">")[0].split("<")[0])[2:]
        action = argv.pop(0)
        if action in ("run", "exec"):
            while argv[0].startswith("-"):
                option = argv.pop(0)
                if option in ("-e", "--env", "-u", "--user", "-w", "--workdir", "--name"):
                    argv.pop(0)
            service, program = argv[0], argv[1:]
            assert service in services, line
            if program and program[0] in ("cellsearch", "ray", "mlflow"):
                check_command(program)
                if program[:2] == ["cellsearch", "launch"]:
                    launched.append(program[2])
        else:
            named = [arg for arg in argv if not arg.startswith("-") and "=" not in arg and not arg.isdigit()]
            assert set(named) <= set(services), line
    assert "examples/jozefowicz.yaml" in launched
    for job in launched:
        assert (REPO / job).is_file(), job


def test_dockerfile_builds_on_cuda_pytorch_and_keeps_its_torch() -> None:
    text = DOCKERFILE.read_text()
    base = re.search(r"^ARG BASE_IMAGE=(\S+)", text, re.M)
    assert base and re.search(r"^FROM \$\{BASE_IMAGE\}", text, re.M)
    match = re.fullmatch(r"pytorch/pytorch:(\d+\.\d+\.\d+)-cuda[\d.]+-cudnn\d+-(runtime|devel)", base[1])
    assert match, base[1]
    # The base image's torch satisfies the project, so pip has no reason to replace it...
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    torch = next(Requirement(r) for r in project["dependencies"] if Requirement(r).name == "torch")
    assert torch.specifier.contains(match[1]), f"{base[1]} does not satisfy {torch}"
    # ...and a constraint pins it to the installed build in case it would.
    install = re.search(r"pip install .*--constraint (\S+) \"\.\[(\w+)\]\"", text)
    assert install, "the project is installed with a constraint file"
    assert re.search(r"print\(f'torch==\{torch.__version__\}'\)\" > " + re.escape(install[1]), text)
    cluster_extra = [Requirement(r) for r in project["optional-dependencies"][install[2]]]
    assert any(r.name == "cellsearch" and "postgres" in r.extras for r in cluster_extra)
    assert any(r.name == "ray" and "default" in r.extras for r in cluster_extra)
    # One default for the base image everywhere it is named.
    compose_default = re.search(r"\$\{BASE_IMAGE:-([^}]+)\}", COMPOSE_FILE.read_text())
    assert compose_default and compose_default[1] == base[1]
    assert f"BASE_IMAGE={base[1]}" in ENV_EXAMPLE.read_text()
    assert '"/app/docker/entrypoint.sh"' in text and os.access(ENTRYPOINT, os.X_OK)


def test_secrets_and_local_results_stay_out_of_the_image() -> None:
    ignored = {line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()}
    assert {".env", ".git", "*.db", "mlruns"} <= ignored


def test_the_env_file_with_the_secrets_is_never_committed() -> None:
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    result = subprocess.run(["git", "check-ignore", "--quiet", ".env"], cwd=REPO, timeout=30)
    assert result.returncode == 0, ".env is not ignored by git"
    assert (
        subprocess.run(["git", "check-ignore", "--quiet", ".env.example"], cwd=REPO, timeout=30).returncode
        == 1
    )


def test_the_entrypoint_runs_the_command_and_refuses_to_join_without_an_address() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "CELLSEARCH_JOIN_RAY")}
    ran = subprocess.run(
        [str(ENTRYPOINT), "echo", "ran"], env=env, capture_output=True, text=True, timeout=30
    )
    assert (ran.returncode, ran.stdout) == (0, "ran\n")
    join = subprocess.run(
        [str(ENTRYPOINT), "echo", "ran"],
        env={**env, "CELLSEARCH_JOIN_RAY": "1"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert join.returncode != 0 and join.stdout == ""
    assert "RAY_ADDRESS" in join.stderr


def test_docker_compose_itself_accepts_the_file(tmp_path: Path) -> None:
    """Runs only where a compose implementation is installed; it needs no Docker engine."""
    if (
        shutil.which("docker")
        and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0
    ):
        compose_command = ["docker", "compose"]
    elif shutil.which("docker-compose"):
        compose_command = ["docker-compose"]
    else:
        pytest.skip("no docker compose installed")
    env_file = tmp_path / ".env"
    env_file.write_text(
        ENV_EXAMPLE.read_text()
        .replace("POSTGRES_PASSWORD=\n", "POSTGRES_PASSWORD=0123abcd\n")
        .replace("RAY_AUTH_TOKEN=\n", "RAY_AUTH_TOKEN=4567ef89\n")
    )
    result = subprocess.run(
        [
            *compose_command,
            "-f",
            str(COMPOSE_FILE),
            "--env-file",
            str(env_file),
            "--profile",
            "tools",
            "config",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    rendered = yaml.safe_load(result.stdout)
    assert set(rendered["services"]) == SERVICES
    assert _environment(rendered["services"]["search"])["RAY_AUTH_TOKEN"] == "4567ef89"
    # Without the secrets compose refuses, naming the variable.
    env_file.write_text(ENV_EXAMPLE.read_text())
    refused = subprocess.run(
        [*compose_command, "-f", str(COMPOSE_FILE), "--env-file", str(env_file), "config"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode != 0
    assert "POSTGRES_PASSWORD" in refused.stderr or "RAY_AUTH_TOKEN" in refused.stderr


# -- the GPU check script (runs for real only on a CUDA machine) ---------------------------------

GPU_CHECK = REPO / "scripts" / "gpu_check.sh"


def test_the_gpu_smoke_job_trains_on_cuda_with_shared_gpus() -> None:
    from search import load_job

    spec = load_job(REPO / "examples" / "gpu_smoke.yaml")
    assert spec.device == "cuda"
    assert 0 < spec.resources.gpus < 1  # fractional: several trials share one GPU
    assert "cellsearch launch examples/gpu_smoke.yaml" in " ".join(GPU_CHECK.read_text().split())


def test_the_gpu_check_stops_with_code_2_where_there_is_no_cuda() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: run scripts/gpu_check.sh itself")
    result = subprocess.run(["bash", str(GPU_CHECK)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "no usable CUDA device" in result.stderr
    assert "GPU tests" not in result.stdout  # nothing else ran
