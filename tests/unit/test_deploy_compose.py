"""docker-compose.yml and the Dockerfile agree with the code: commands exist, every environment
variable is one the CLI reads, ports and probe paths are the ones the worker serves, mounted
files exist. No Docker engine is needed: the files are parsed and compared with the code."""

from __future__ import annotations

import base64
import importlib
import re
import shlex
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from prometheus_client import CollectorRegistry

from streamjobs._avro.codec import Codec
from streamjobs._config import ENV
from streamjobs._dev.jars import KAFKA_VERSION
from streamjobs._schemas.catalogue import Catalogue
from streamjobs._worker import App
from streamjobs.cli import main
from streamjobs.listeners._health import HealthListener, HealthServer

ROOT = Path(__file__).resolve().parents[2]
# Variables the example app itself reads (examples/demo_app.py), not the CLI.
APP_ENV = {"DEMO_STATE_DIR"}
# `streamjobs web`, as agreed between the branches (option -> variable). The token is read
# from the environment only (never an option: it would show in a process list).
WEB_TOKEN = "STREAMJOBS_WEB_TOKEN"
WEB_CONTRACT = {"--host": "STREAMJOBS_WEB_HOST", "--port": "STREAMJOBS_WEB_PORT",
                "--read-only": "STREAMJOBS_WEB_READ_ONLY",
                "--root-path": "STREAMJOBS_WEB_ROOT_PATH", "--schemas": "STREAMJOBS_SCHEMAS",
                "--topic-prefix": "STREAMJOBS_TOPIC_PREFIX"}


# -- the code's side ----------------------------------------------------------------------------

def cli_command(*path: str) -> click.Command:
    """The click command ``streamjobs PATH...``; fails the test if there is none."""
    ctx = click.Context(main)
    cmd: click.Command | None = main
    for name in path:
        assert isinstance(cmd, click.Group), f"`streamjobs {' '.join(path)}`: not a group"
        cmd = cmd.get_command(ctx, name)
        assert cmd is not None, f"`streamjobs {' '.join(path)}` is not a command"
    assert cmd is not None
    return cmd


def _walk(cmd: click.Command) -> Iterator[click.Command]:
    if isinstance(cmd, click.Group):
        ctx = click.Context(cmd)
        for name in cmd.list_commands(ctx):
            sub = cmd.get_command(ctx, name)
            if sub is not None:
                yield from _walk(sub)
    else:
        yield cmd


def envvars(*path: str) -> set[str]:
    """Environment variables read by ``streamjobs PATH...`` (every subcommand of a group)."""
    names: set[str] = set()
    for cmd in _walk(cli_command(*path)):
        for param in cmd.params:
            var = param.envvar
            if isinstance(var, str):
                names.add(var)
            elif var:
                names.update(var)
    return names


def option_default(path: tuple[str, ...], option: str) -> Any:
    for param in cli_command(*path).params:
        if isinstance(param, click.Option) and option in param.opts:
            return param.default
    raise AssertionError(f"`streamjobs {' '.join(path)}` has no {option}")


def web_option(option: str) -> None:
    """``option`` is an option of `streamjobs web`, read from its agreed variable."""
    assert option in WEB_CONTRACT, f"`streamjobs web` has no {option} in the contract"
    [param] = [p for p in cli_command("web").params if option in getattr(p, "opts", ())]
    assert param.envvar == WEB_CONTRACT[option], option


def web_reads() -> set[str]:
    """Every variable the dashboard reads: its options' and the token."""
    return envvars("web") | {WEB_TOKEN}


def load_app(target: str) -> App:
    module, _, attr = target.partition(":")
    app = getattr(importlib.import_module(module), attr or "app")
    assert isinstance(app, App), f"{target} is not a streamjobs App"
    return app


def served_status(path: str) -> int:
    """The status the worker's health server answers for ``path`` (a live, idle worker)."""
    server = HealthServer(0, HealthListener(), CollectorRegistry(), host="127.0.0.1")
    try:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{server.port}{path}", timeout=5) as r:
                return int(r.status)
        except urllib.error.HTTPError as exc:
            return exc.code
    finally:
        server.close()


def url_port_and_path(text: str) -> tuple[int, str]:
    m = re.search(r"http://127\.0\.0\.1:(?:%s|(\d+))(/[a-z]+)", text)
    assert m, f"no http://127.0.0.1:PORT/PATH in {text!r}"
    port = m.group(1)
    if port is None:  # the port comes from the environment, with a default
        d = re.search(r"STREAMJOBS_METRICS_PORT',\s*'(\d+)'", text)
        assert d, f"no STREAMJOBS_METRICS_PORT default in {text!r}"
        port = d.group(1)
    return int(port), m.group(2)


# -- docker-compose.yml -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


def _svc(compose: dict[str, Any], name: str) -> dict[str, Any]:
    svc = compose["services"].get(name)
    assert isinstance(svc, dict), f"no service {name!r}"
    return svc


def _argv(value: Any) -> list[str]:
    if value is None:
        return []
    return shlex.split(value) if isinstance(value, str) else [str(v) for v in value]


def _env(svc: dict[str, Any]) -> dict[str, str]:
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def test_connection_variables_are_read_by_every_kafka_command() -> None:
    """Rule: each KafkaConfig variable (streamjobs._config.ENV: brokers, client id, SASL, TLS) is
    an option of the worker, `topics apply` and `emit`, so deployments can set all of them."""
    for path in (("worker",), ("topics", "apply"), ("emit",)):
        assert set(ENV.values()) <= envvars(*path), path


def test_kafka_is_apache_kafka_4_in_kraft_mode(compose: dict[str, Any]) -> None:
    """Rule: the broker is the official apache/kafka image at the version of the dev broker
    (4.1.x), configured for KRaft (combined broker+controller, no ZooKeeper), with topic
    auto-creation off like the dev broker."""
    kafka = _svc(compose, "kafka")
    image, _, tag = kafka["image"].partition(":")
    assert image == "apache/kafka"
    assert re.fullmatch(r"4\.1\.\d+", tag) and tag == KAFKA_VERSION
    env = _env(kafka)
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert not [k for k in env if "ZOOKEEPER" in k]
    node = env["KAFKA_NODE_ID"]
    controller = env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    listeners = dict(item.split("://") for item in env["KAFKA_LISTENERS"].split(","))
    voter_id, _, voter = env["KAFKA_CONTROLLER_QUORUM_VOTERS"].partition("@")
    assert voter_id == node
    assert voter.rsplit(":", 1)[1] == listeners[controller].rsplit(":", 1)[1]
    protocols = dict(item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"]
                     .split(","))
    assert set(listeners) <= set(protocols)
    assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] in listeners
    assert len(base64.urlsafe_b64decode(env["CLUSTER_ID"] + "==")) == 16
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"


def test_streamjobs_services_reach_an_advertised_listener(compose: dict[str, Any]) -> None:
    """Rule: STREAMJOBS_BOOTSTRAP_SERVERS of every streamjobs service is an address the broker
    advertises, and every service waits for the broker (directly or through `topics`)."""
    advertised = {item.split("://")[1] for item in
                  _env(_svc(compose, "kafka"))["KAFKA_ADVERTISED_LISTENERS"].split(",")}
    for name in ("topics", "worker", "producer", "web"):
        svc = _svc(compose, name)
        assert _env(svc)["STREAMJOBS_BOOTSTRAP_SERVERS"] in advertised, name
        deps = svc["depends_on"]
        assert deps.get("kafka", {}).get("condition") == "service_healthy" or deps.get(
            "topics", {}).get("condition") == "service_completed_successfully", name


# Service fields of the Compose Specification that this project uses or may use; a misspelt
# field (``healthchek``) is silently ignored by compose, so the test names the allowed ones.
SERVICE_FIELDS = {"image", "build", "command", "entrypoint", "environment", "env_file", "ports",
                  "volumes", "depends_on", "healthcheck", "restart", "user", "working_dir",
                  "profiles", "deploy", "stop_grace_period", "stop_signal", "init", "expose",
                  "hostname", "container_name", "networks", "labels"}


def test_compose_services_use_only_known_fields(compose: dict[str, Any]) -> None:
    """Rule: every service field is one the Compose Specification defines (a misspelt field
    would be ignored without a word), healthchecks are lists, ports are strings."""
    for name, svc in compose["services"].items():
        assert set(svc) <= SERVICE_FIELDS, (name, sorted(set(svc) - SERVICE_FIELDS))
        if "healthcheck" in svc:
            assert isinstance(svc["healthcheck"]["test"], list), name
        assert all(isinstance(p, str) for p in svc.get("ports", [])), name


def test_web_service_runs_the_dashboard(compose: dict[str, Any]) -> None:
    """Rule: the web service runs `streamjobs web --host 0.0.0.0 --port P` from our image
    with the token taken from the environment and required (compose refuses to start without
    it, as the dashboard refuses a non-loopback address without one); P is published and
    probed at /healthz; it sets only variables the dashboard reads; it starts after `topics`
    (which creates the status and worker reports topics it reads)."""
    svc = _svc(compose, "web")
    assert svc["build"] == "."
    argv = _argv(svc.get("entrypoint")) + _argv(svc.get("command"))
    assert argv[:2] == ["streamjobs", "web"]
    args = dict(zip(argv[2::2], argv[3::2], strict=True))
    assert args["--host"] == "0.0.0.0"
    port = int(args["--port"])
    for option in args:
        web_option(option)
    env = _env(svc)
    assert re.fullmatch(r"\$\{STREAMJOBS_WEB_TOKEN:\?[^}]+\}", env[WEB_TOKEN]), env[WEB_TOKEN]
    assert set(env) <= web_reads(), sorted(set(env) - web_reads())
    assert f"{port}:{port}" in svc["ports"]
    hc_port, hc_path = url_port_and_path(" ".join(svc["healthcheck"]["test"]))
    assert (hc_port, hc_path) == (port, "/healthz")
    assert svc["depends_on"]["topics"]["condition"] == "service_completed_successfully"
    prom = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in prom["scrape_configs"]}
    [sd] = jobs["streamjobs-web"]["dns_sd_configs"]
    assert sd["names"] == ["web"] and sd["port"] == port
    assert jobs["streamjobs-web"].get("metrics_path", "/metrics") == "/metrics"
    assert "web" in _svc(compose, "prometheus")["depends_on"]


def test_dockerfile_installs_the_dashboard_extra(dockerfile: list[tuple[str, str]]) -> None:
    """Rule: the image is built with the web extra, so the same image runs `streamjobs web`
    (compose's web service and k8s/base/web.yaml use it)."""
    wheel = [run for run in _instr(dockerfile, "RUN") if "pip wheel" in run]
    assert wheel and re.search(r"""["']?\.\[web\]["']?\s*$""", wheel[0]), wheel


def test_topics_service_runs_topics_apply(compose: dict[str, Any]) -> None:
    """Rule: the one-shot topics service runs the real `streamjobs topics apply` with variables
    that command reads, and the worker and producer start only after it succeeded."""
    svc = _svc(compose, "topics")
    argv = _argv(svc.get("entrypoint")) + _argv(svc.get("command"))
    assert argv[:3] == ["streamjobs", "topics", "apply"]
    cli_command("topics", "apply")
    assert set(_env(svc)) <= envvars("topics", "apply")
    assert svc.get("restart") == "no"
    for name in ("worker", "producer"):
        cond = _svc(compose, name)["depends_on"]["topics"]["condition"]
        assert cond == "service_completed_successfully"


def test_worker_service_matches_the_worker_command(compose: dict[str, Any]) -> None:
    """Rule: the worker service is built from our Dockerfile, runs an importable App, sets only
    variables `streamjobs worker` reads, and stops with more time than its grace period."""
    svc = _svc(compose, "worker")
    assert svc["build"] == "." and (ROOT / "Dockerfile").is_file()
    load_app(_argv(svc["command"])[0])
    env = _env(svc)
    unknown = set(env) - envvars("worker") - APP_ENV
    assert not unknown, f"variables no command reads: {sorted(unknown)}"
    grace = float(env.get("STREAMJOBS_GRACE_PERIOD", option_default(("worker",),
                                                                    "--grace-period")))
    stop = re.fullmatch(r"(\d+)s", svc["stop_grace_period"])
    assert stop and int(stop.group(1)) > grace


def test_worker_port_is_scraped_and_probed(compose: dict[str, Any]) -> None:
    """Rule: one port for everything: the worker's metrics port (its variable or the CLI
    default) is the port Prometheus scrapes and the healthcheck probes, and the healthcheck
    path is one the worker's health server answers 200 for."""
    svc = _svc(compose, "worker")
    port = int(_env(svc).get("STREAMJOBS_METRICS_PORT",
                             option_default(("worker",), "--metrics-port")))
    hc_port, hc_path = url_port_and_path(" ".join(svc["healthcheck"]["test"]))
    assert hc_port == port
    assert served_status(hc_path) == 200
    prom = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in prom["scrape_configs"]}
    job = jobs["streamjobs-worker"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    assert served_status("/metrics") == 200
    [sd] = job["dns_sd_configs"]
    assert sd["names"] == ["worker"] and sd["port"] == port
    assert str(port) in [str(p) for p in svc.get("expose", [])]


def test_producer_emits_a_valid_jobs_file(compose: dict[str, Any]) -> None:
    """Rule: the example producer runs `streamjobs emit --file F` where F is a mounted file of
    the repo whose every line is a job of the catalogue with a payload its schema accepts."""
    svc = _svc(compose, "producer")
    script = " ".join(_argv(svc.get("command")))
    m = re.search(r"streamjobs emit --file (\S+)", script)
    assert m, script
    cli_command("emit")
    assert set(_env(svc)) <= envvars("emit")
    mounts = {target: source for source, target, *_ in
              (v.split(":") for v in svc["volumes"])}
    host = ROOT / mounts[m.group(1)]
    codec = Codec(Catalogue.load(ROOT / "schemas"))
    lines = [yaml.safe_load(line) for line in host.read_text().splitlines() if line.strip()]
    assert {line["type"] for line in lines} == {"send_welcome_email", "make_thumbnail"}
    for line in lines:
        codec.encode(line["type"], line["payload"])


def test_mounted_paths_exist_and_grafana_is_provisioned(compose: dict[str, Any]) -> None:
    """Rule: every bind mount's source exists in the repository; Grafana's dashboard provider
    reads the directory our dashboard is mounted at, and its data source is the compose
    Prometheus; Prometheus loads the mounted alert rules."""
    for name, svc in compose["services"].items():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name}: {source} does not exist"
    grafana = _svc(compose, "grafana")
    mounts = {target: source for source, target, *_ in
              (v.split(":") for v in grafana["volumes"])}
    prov = ROOT / mounts["/etc/grafana/provisioning"]
    [provider] = yaml.safe_load((prov / "dashboards" / "streamjobs.yml").read_text())[
        "providers"]
    dash_dir = ROOT / mounts[provider["options"]["path"]]
    assert (dash_dir / "streamjobs.json").is_file()
    [ds] = yaml.safe_load((prov / "datasources" / "prometheus.yml").read_text())["datasources"]
    prom_svc = _svc(compose, "prometheus")
    assert ds["type"] == "prometheus" and ds["url"] == "http://prometheus:9090"
    assert "9090:9090" in prom_svc["ports"]
    prom = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    prom_mounts = {target: source for source, target, *_ in
                   (v.split(":") for v in prom_svc["volumes"])}
    for rule_file in prom["rule_files"]:
        assert (ROOT / prom_mounts[rule_file]).is_file()


# -- Dockerfile ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = (ROOT / "Dockerfile").read_text()
    text = re.sub(r"\\\n", " ", text)
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instr, _, args = line.partition(" ")
            out.append((instr.upper(), args.strip()))
    return out


def _instr(dockerfile: list[tuple[str, str]], name: str) -> list[str]:
    return [args for instr, args in dockerfile if instr == name]


def test_dockerfile_is_a_small_multi_stage_non_root_image(
        dockerfile: list[tuple[str, str]]) -> None:
    """Rule: wheels are built in a python:3.11-slim stage and installed into a fresh
    python:3.11-slim stage that runs as a non-root user."""
    froms = _instr(dockerfile, "FROM")
    assert len(froms) == 2
    assert froms[0].split()[0] == "python:3.11-slim" and froms[0].lower().endswith(" as build")
    assert froms[1] == "python:3.11-slim"
    assert any("pip wheel" in run for run in _instr(dockerfile, "RUN"))
    assert any(c.startswith("--from=build ") for c in _instr(dockerfile, "COPY"))
    [user] = _instr(dockerfile, "USER")
    name = user.split(":")[0]
    assert name not in ("root", "0")
    created = re.search(r"useradd [^&]*--uid (\d+)", " ".join(_instr(dockerfile, "RUN")))
    assert created and name == created.group(1)


def test_dockerfile_health_port_and_entrypoint_match_the_worker(
        dockerfile: list[tuple[str, str]]) -> None:
    """Rule: EXPOSE, the image's STREAMJOBS_METRICS_PORT and the HEALTHCHECK port are the
    worker's default metrics port; the HEALTHCHECK path answers 200 on a live worker's health
    server (python urllib, no curl); ENTRYPOINT is `streamjobs worker` and CMD an App."""
    default_port = option_default(("worker",), "--metrics-port")
    assert _instr(dockerfile, "EXPOSE") == [str(default_port)]
    env = " ".join(_instr(dockerfile, "ENV"))
    assert f"STREAMJOBS_METRICS_PORT={default_port}" in env
    [health] = _instr(dockerfile, "HEALTHCHECK")
    assert "curl" not in health and "urllib" in health
    port, path = url_port_and_path(health)
    assert port == default_port
    assert served_status(path) == 200
    assert yaml.safe_load(_instr(dockerfile, "ENTRYPOINT")[0]) == ["streamjobs", "worker"]
    cli_command("worker")
    [cmd] = _instr(dockerfile, "CMD")
    load_app(yaml.safe_load(cmd)[0])
    names = set(re.findall(r"\b([A-Z][A-Z0-9_]+)=", env))
    streamjobs_vars = {n for n in names if n.startswith("STREAMJOBS_")}
    assert streamjobs_vars <= envvars(), sorted(streamjobs_vars - envvars())
    assert names - streamjobs_vars <= APP_ENV | {"PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED"}
    for var in APP_ENV:
        assert var in (ROOT / "examples" / "demo_app.py").read_text()


def test_dockerfile_copies_existing_files_not_ignored(dockerfile: list[tuple[str, str]]) -> None:
    """Rule: everything the Dockerfile copies from the context exists in the repository and is
    let through by .dockerignore (which excludes everything else); the package declares the
    `streamjobs` console script the entrypoint runs."""
    allowed = [line[1:].rstrip("/*") for line in (ROOT / ".dockerignore").read_text()
               .splitlines() if line.startswith("!")]
    for args in _instr(dockerfile, "COPY"):
        if args.startswith("--from="):
            continue
        *sources, _dest = args.split()
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
            assert source.rstrip("/") in allowed, f"COPY {source}: excluded by .dockerignore"
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^streamjobs = "streamjobs\.cli:main"$', pyproject, re.M)


def test_registry_service_is_the_dev_registry_and_services_point_at_it(
        compose: dict[str, Any]) -> None:
    """Rule: the registry service runs Apicurio Registry at the version `dev up --registry`
    fetches, published on the host's loopback only, and the streamjobs services' registry URL
    is its Confluent-compatible API; `topics` (which registers schemas) waits for it."""
    from streamjobs._dev.registry import APICURIO_VERSION, CCOMPAT_PATH

    svc = _svc(compose, "registry")
    image, _, tag = svc["image"].partition(":")
    assert (image, tag) == ("apicurio/apicurio-registry", APICURIO_VERSION)
    [port] = svc["ports"]
    host_ip, _host_port, container_port = port.split(":")
    assert host_ip == "127.0.0.1"
    for name in ("topics", "worker", "producer"):
        assert _env(_svc(compose, name))["STREAMJOBS_REGISTRY_URL"] == (
            f"http://registry:{container_port}{CCOMPAT_PATH}"), name
    assert CCOMPAT_PATH in " ".join(svc["healthcheck"]["test"])
    assert _svc(compose, "topics")["depends_on"]["registry"]["condition"] == "service_healthy"
