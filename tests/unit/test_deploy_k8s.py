"""k8s/ (kustomize base + overlays/example) is valid Kubernetes and agrees with the code.

Rendering is done here, in Python (no kubectl/kustomize binary): every file a kustomization
lists is loaded, then the overlay's namespace, images and strategic-merge patches are applied
with the merge rules Kubernetes uses for the lists we patch (containers, volumes and env by
name, volume mounts by mount path; other lists, and every list of a custom resource, are
replaced). Built-in kinds are validated with ``kubernetes-validate`` (bundled OpenAPI schemas,
offline); KEDA and Prometheus Operator objects with the schemas below, written from their
CRD documentation."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from streamjobs._config import ENV, KafkaConfig
from streamjobs._names import default_group_id
from streamjobs._schemas.catalogue import Catalogue
from tests.unit.test_deploy_compose import served_status

from .test_deploy_compose import (
    APP_ENV,
    WEB_TOKEN,
    cli_command,
    envvars,
    load_app,
    option_default,
    web_option,
    web_reads,
)

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
K8S_VERSIONS = ("1.29.0", kubernetes_validate.latest_version())

# -- rendering ----------------------------------------------------------------------------------

_MERGE_KEYS = {"containers": "name", "initContainers": "name", "env": "name",
               "volumes": "name", "volumeMounts": "mountPath"}


def merge(base: Any, patch: Any, *, builtin: bool) -> Any:
    """Strategic merge, as kustomize applies a patch file (no $patch directives)."""
    if isinstance(base, dict) and isinstance(patch, dict):
        assert "$patch" not in patch, "patch directives are not supported here"
        out = dict(base)
        for key, value in patch.items():
            if key in out and builtin and key in _MERGE_KEYS and isinstance(value, list):
                out[key] = _merge_list(out[key], value, _MERGE_KEYS[key])
            elif key in out:
                out[key] = merge(out[key], value, builtin=builtin)
            else:
                out[key] = copy.deepcopy(value)
        return out
    return copy.deepcopy(patch)


def _merge_list(base: list[Any], patch: list[Any], key: str) -> list[Any]:
    out = [copy.deepcopy(item) for item in base]
    for item in patch:
        match = [i for i, old in enumerate(out) if old[key] == item[key]]
        if match:
            out[match[0]] = merge(out[match[0]], item, builtin=True)
        else:
            out.append(copy.deepcopy(item))
    return out


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def _ident(res: dict[str, Any]) -> tuple[str, str]:
    return res["kind"], res["metadata"]["name"]


def render(directory: Path) -> list[dict[str, Any]]:
    """The objects `kubectl kustomize DIRECTORY` would print, for the features we use."""
    kust = yaml.safe_load((directory / "kustomization.yaml").read_text())
    known = {"apiVersion", "kind", "resources", "namespace", "images", "patches"}
    assert set(kust) <= known, f"unsupported kustomization fields: {set(kust) - known}"
    out: list[dict[str, Any]] = []
    for entry in kust.get("resources", []):
        path = (directory / entry).resolve()
        out += render(path) if path.is_dir() else _docs(path)
    for patch_entry in kust.get("patches", []):
        assert set(patch_entry) == {"path"}, "only file patches addressed by kind/name"
        [patch] = _docs(directory / patch_entry["path"])
        targets = [i for i, res in enumerate(out) if _ident(res) == _ident(patch)
                   and res["apiVersion"] == patch["apiVersion"]]
        assert len(targets) == 1, f"patch {patch_entry['path']}: no single target"
        i = targets[0]
        out[i] = merge(out[i], patch, builtin=_builtin(patch))
    for image in kust.get("images", []):
        pods = [pod for pod in map(_pod_spec, out) if pod is not None]
        for pod in pods:
            for container in pod["containers"]:
                name, _, _tag = container["image"].partition(":")
                if name == image["name"]:
                    container["image"] = f"{image.get('newName', name)}:{image['newTag']}"
    if "namespace" in kust:
        for res in out:
            res["metadata"]["namespace"] = kust["namespace"]
    return out


def _builtin(res: dict[str, Any]) -> bool:
    group = res["apiVersion"].rpartition("/")[0]
    return group in ("", "apps", "batch", "policy")


def _pod_spec(res: dict[str, Any]) -> dict[str, Any] | None:
    if res["kind"] in ("Deployment", "Job"):
        spec: dict[str, Any] = res["spec"]["template"]["spec"]
        return spec
    return None


# -- KEDA and Prometheus Operator schemas (from keda.sh/docs reference/scaledobject-spec,
#    scalers/apache-kafka, concepts/authentication and the PodMonitor CRD) ---------------------

_STR_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_KAFKA_METADATA = {
    "type": "object",
    "required": ["bootstrapServers", "consumerGroup"],
    "additionalProperties": False,
    "properties": {
        "bootstrapServers": {"type": "string", "minLength": 1},
        "consumerGroup": {"type": "string", "minLength": 1},
        "topic": {"type": "string", "minLength": 1},
        "lagThreshold": {"type": "string", "pattern": "^[0-9]+$"},
        "activationLagThreshold": {"type": "string", "pattern": "^[0-9]+$"},
        "offsetResetPolicy": {"enum": ["latest", "earliest"]},
        "allowIdleConsumers": {"enum": ["true", "false"]},
        "scaleToZeroOnInvalidOffset": {"enum": ["true", "false"]},
        "excludePersistentLag": {"enum": ["true", "false"]},
        "limitToPartitionsWithLag": {"enum": ["true", "false"]},
        "version": {"type": "string"},
        "partitionLimitation": {"type": "string"},
        "sasl": {"enum": ["plaintext", "scram_sha256", "scram_sha512", "gssapi", "oauthbearer",
                          "none"]},
        "tls": {"enum": ["enable", "disable"]},
        "unsafeSsl": {"enum": ["true", "false"]},
    },
}
SCALED_OBJECT_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "ScaledObject"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object",
            "required": ["scaleTargetRef", "triggers"],
            "additionalProperties": False,
            "properties": {
                "scaleTargetRef": {
                    "type": "object", "required": ["name"], "additionalProperties": False,
                    "properties": {"name": {"type": "string"}, "apiVersion": {"type": "string"},
                                   "kind": {"type": "string"},
                                   "envSourceContainerName": {"type": "string"}}},
                "pollingInterval": {"type": "integer", "minimum": 1},
                "cooldownPeriod": {"type": "integer", "minimum": 0},
                "initialCooldownPeriod": {"type": "integer", "minimum": 0},
                "idleReplicaCount": {"type": "integer", "minimum": 0},
                "minReplicaCount": {"type": "integer", "minimum": 0},
                "maxReplicaCount": {"type": "integer", "minimum": 1},
                "fallback": {"type": "object", "required": ["failureThreshold", "replicas"]},
                "advanced": {"type": "object"},
                "triggers": {
                    "type": "array", "minItems": 1,
                    "items": {
                        "type": "object", "required": ["type", "metadata"],
                        "additionalProperties": False,
                        "properties": {
                            "type": {"type": "string"},
                            "name": {"type": "string"},
                            "metadata": _STR_MAP,
                            "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
                            "useCachedMetrics": {"type": "boolean"},
                            "authenticationRef": {
                                "type": "object", "required": ["name"],
                                "additionalProperties": False,
                                "properties": {"name": {"type": "string"}, "kind": {
                                    "enum": ["TriggerAuthentication",
                                             "ClusterTriggerAuthentication"]}}},
                        },
                        "if": {"properties": {"type": {"const": "kafka"}}},
                        "then": {"properties": {"metadata": _KAFKA_METADATA}},
                    },
                },
            },
        },
    },
}
TRIGGER_AUTH_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "TriggerAuthentication"},
        "spec": {
            "type": "object", "additionalProperties": False,
            "properties": {"secretTargetRef": {"type": "array", "items": {
                "type": "object", "required": ["parameter", "name", "key"],
                "additionalProperties": False,
                "properties": {
                    # The kafka scaler's authentication parameters.
                    "parameter": {"enum": ["sasl", "username", "password", "tls", "ca", "cert",
                                           "key", "keyPassword"]},
                    "name": {"type": "string"}, "key": {"type": "string"}}}}},
        },
    },
}
POD_MONITOR_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "PodMonitor"},
        "spec": {
            "type": "object", "required": ["selector", "podMetricsEndpoints"],
            "properties": {
                "selector": {"type": "object", "properties": {"matchLabels": _STR_MAP}},
                "podMetricsEndpoints": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "required": ["port"],
                    "properties": {"port": {"type": "string"}, "path": {"type": "string"},
                                   "interval": {"type": "string",
                                                "pattern": "^[0-9]+(ms|s|m|h)$"}}}},
            },
        },
    },
}
CUSTOM_SCHEMAS = {("keda.sh/v1alpha1", "ScaledObject"): SCALED_OBJECT_SCHEMA,
                  ("keda.sh/v1alpha1", "TriggerAuthentication"): TRIGGER_AUTH_SCHEMA,
                  ("monitoring.coreos.com/v1", "PodMonitor"): POD_MONITOR_SCHEMA}


# -- fixtures and helpers -----------------------------------------------------------------------

@pytest.fixture(scope="module", params=["base", "overlays/example"])
def rendered(request: pytest.FixtureRequest) -> dict[tuple[str, str], dict[str, Any]]:
    objects = render(K8S / request.param)
    by_id = {_ident(res): res for res in objects}
    assert len(by_id) == len(objects), "duplicate kind/name"
    return by_id


def _one(rendered: dict[tuple[str, str], dict[str, Any]], kind: str) -> dict[str, Any]:
    [res] = [res for (k, _), res in rendered.items() if k == kind]
    return res


WORKER, WEB, KAFKA_SECRET, WEB_SECRET = ("streamjobs-worker", "streamjobs-web",
                                         "streamjobs-kafka-credentials", "streamjobs-web")


def _named(rendered: dict[tuple[str, str], dict[str, Any]], kind: str,
           name: str) -> dict[str, Any]:
    res = rendered.get((kind, name))
    assert res is not None, f"no {kind}/{name}"
    return res


def _pods(rendered: dict[tuple[str, str], dict[str, Any]]) -> dict[tuple[str, str],
                                                                  dict[str, Any]]:
    """The pod spec of every Deployment and Job."""
    return {ident: pod for ident, res in rendered.items()
            if (pod := _pod_spec(res)) is not None}


def _config(rendered: dict[tuple[str, str], dict[str, Any]]) -> dict[str, str]:
    data: dict[str, str] = _one(rendered, "ConfigMap")["data"]
    return data


def _secret(rendered: dict[tuple[str, str], dict[str, Any]]) -> dict[str, str]:
    data: dict[str, str] = _named(rendered, "Secret", KAFKA_SECRET)["stringData"]
    return data



def _image_uid() -> str:
    m = re.search(r"^USER (\d+)", (ROOT / "Dockerfile").read_text(), re.M)
    assert m
    return m.group(1)


# -- tests --------------------------------------------------------------------------------------

def test_every_object_validates_against_its_schema(
        rendered: dict[tuple[str, str], dict[str, Any]]) -> None:
    """Rule: built-in objects validate strictly (unknown fields fail) against the Kubernetes
    OpenAPI schemas of 1.29 and the newest bundled release; KEDA and Prometheus Operator
    objects against their documented CRD fields (a lagThreshold written as a YAML number, or
    a misspelt field, fails)."""
    for (kind, name), res in rendered.items():
        schema = CUSTOM_SCHEMAS.get((res["apiVersion"], kind))
        if schema is not None:
            jsonschema.validate(res, schema)
            continue
        assert _builtin(res), f"{kind}/{name}: no schema for {res['apiVersion']}"
        for version in K8S_VERSIONS:
            kubernetes_validate.validate(res, version, strict=True)


def test_keda_schema_rejects_what_keda_would() -> None:
    """Rule: the KEDA schema above is not vacuous: a numeric lagThreshold, an unknown trigger
    field and a missing scaleTargetRef.name are all rejected."""
    [base] = [d for d in _docs(K8S / "base" / "keda.yaml") if d["kind"] == "ScaledObject"]
    jsonschema.validate(base, SCALED_OBJECT_SCHEMA)
    mutations: list[tuple[tuple[str | int, ...], str, Any]] = [
        (("triggers", 0, "metadata"), "lagThreshold", 100),
        (("triggers", 0, "metadata"), "lagTreshold", "5"),
        (("scaleTargetRef",), "name", None),
        ((), "maxReplicas", 3),
    ]
    for path, key, value in mutations:
        broken = copy.deepcopy(base)
        node = broken["spec"]
        for step in path:
            node = node[step]
        if value is None:
            del node[key]
        else:
            node[key] = value
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, SCALED_OBJECT_SCHEMA)


def test_configuration_is_real_streamjobs_variables(
        rendered: dict[tuple[str, str], dict[str, Any]]) -> None:
    """Rule: ConfigMap and Secret keys are variables the worker or `topics apply` read; secrets
    (SASL password, key password) are only in the Secret; together they make a valid
    KafkaConfig; every container (worker, dashboard, topics Job) takes both through envFrom;
    the dashboard's Secret holds its token and nothing else."""
    config, secret = _config(rendered), _secret(rendered)
    known = envvars("worker") | envvars("topics", "apply") | APP_ENV
    assert set(config) <= known, sorted(set(config) - known)
    secret_vars = {ENV["sasl_username"], ENV["sasl_password"], ENV["ssl_key_password"]}
    assert set(secret) <= secret_vars
    assert not set(config) & {ENV["sasl_password"], ENV["ssl_key_password"]}
    KafkaConfig.from_env({**config, **secret})
    assert set(_named(rendered, "Secret", WEB_SECRET)["stringData"]) == {WEB_TOKEN}
    pods = _pods(rendered)
    assert {name for _, name in pods} == {WORKER, WEB, "streamjobs-topics"}
    for (kind, _), pod in pods.items():
        for container in pod["containers"]:
            refs = {(k, v["name"]) for ref in container["envFrom"] for k, v in ref.items()}
            assert refs == {("configMapRef", _one(rendered, "ConfigMap")["metadata"]["name"]),
                            ("secretRef", KAFKA_SECRET)}
            ca = config.get(ENV["ssl_ca_location"])
            if ca:  # the CA file must be mounted where the config says
                mounts = [m["mountPath"] for m in container.get("volumeMounts", [])]
                assert any(ca.startswith(m.rstrip("/") + "/") for m in mounts), (kind, ca)


def test_worker_deployment_matches_the_worker(
        rendered: dict[tuple[str, str], dict[str, Any]]) -> None:
    """Rule: the worker runs `streamjobs worker <App>`; its named metrics port is the configured
    metrics port; liveness probes /healthz (200 on a live worker) and readiness /readyz (a path
    the health server serves); terminationGracePeriodSeconds exceeds the grace period; it runs
    non-root (the image's uid) with a read-only root, no privilege escalation, all capabilities
    dropped, requests and limits set, and a writable /tmp."""
    dep = _named(rendered, "Deployment", WORKER)
    pod = dep["spec"]["template"]["spec"]
    [worker] = pod["containers"]
    assert worker["command"] == ["streamjobs", "worker"]
    cli_command("worker")
    load_app(worker["args"][0])
    config = _config(rendered)
    port = int(config.get("STREAMJOBS_METRICS_PORT",
                          option_default(("worker",), "--metrics-port")))
    [metrics] = [p for p in worker["ports"] if p.get("name") == "metrics"]
    assert metrics["containerPort"] == port
    live, ready = worker["livenessProbe"]["httpGet"], worker["readinessProbe"]["httpGet"]
    assert live["port"] == ready["port"] == "metrics"
    assert live["path"] == "/healthz" and served_status(live["path"]) == 200
    assert ready["path"] == "/readyz" and served_status(ready["path"]) in (200, 503)
    grace = float(config.get("STREAMJOBS_GRACE_PERIOD",
                             option_default(("worker",), "--grace-period")))
    assert pod["terminationGracePeriodSeconds"] > grace
    _check_hardened(pod)
    mounts = {m["mountPath"]: m["name"] for m in worker["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    assert dep["spec"]["selector"]["matchLabels"].items() <= \
        dep["spec"]["template"]["metadata"]["labels"].items()


def _check_hardened(pod: dict[str, Any]) -> None:
    psc = pod["securityContext"]
    assert psc["runAsNonRoot"] is True and str(psc["runAsUser"]) == _image_uid()
    for container in pod["containers"]:
        sc = container["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"]
        for part in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(container["resources"][part])


def test_topics_job_runs_topics_apply(rendered: dict[tuple[str, str], dict[str, Any]]) -> None:
    """Rule: the Job runs the real `streamjobs topics apply` from the same image as the worker,
    hardened like it, and is retried on failure."""
    job = _one(rendered, "Job")
    pod = job["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["command"] == ["streamjobs", "topics", "apply"]
    cli_command("topics", "apply")
    [worker] = _named(rendered, "Deployment", WORKER)["spec"]["template"]["spec"]["containers"]
    assert container["image"] == worker["image"]
    assert pod["restartPolicy"] in ("OnFailure", "Never") and job["spec"]["backoffLimit"] >= 1
    _check_hardened(pod)


def test_keda_scales_the_worker_group_within_the_partition_count(
        rendered: dict[tuple[str, str], dict[str, Any]]) -> None:
    """Rule: the ScaledObject scales the worker Deployment on the lag of the worker's consumer
    group, with one kafka trigger per job topic the worker consumes (catalogue topics, with the
    prefix if any) at the worker's bootstrap servers; maxReplicaCount is at most the partition
    count of every such topic; offsetResetPolicy is the worker's auto.offset.reset; SASL and
    TLS match the worker's protocol and mechanism, with credentials from the worker's Secret."""
    so = _one(rendered, "ScaledObject")
    dep = _named(rendered, "Deployment", WORKER)
    assert so["spec"]["scaleTargetRef"]["name"] == dep["metadata"]["name"]
    assert so["spec"]["scaleTargetRef"].get("kind", "Deployment") == "Deployment"
    config = _config(rendered)
    app = load_app(dep["spec"]["template"]["spec"]["containers"][0]["args"][0])
    prefix = config.get("STREAMJOBS_TOPIC_PREFIX", app.topic_prefix)
    group = config.get("STREAMJOBS_GROUP_ID") or default_group_id(app.name, prefix)
    catalogue = Catalogue.load(ROOT / "schemas", topic_prefix="")
    types = [t for t in config.get("STREAMJOBS_JOB_TYPES", "").split(",") if t] or \
        list(app.handlers)
    partitions = {prefix + catalogue.get(t).topic: catalogue.get(t).partitions for t in types}
    triggers = so["spec"]["triggers"]
    assert {t["metadata"]["topic"] for t in triggers} == set(partitions)
    assert 1 <= so["spec"]["minReplicaCount"] <= so["spec"]["maxReplicaCount"]
    assert so["spec"]["maxReplicaCount"] <= min(partitions.values())
    runner = (ROOT / "streamjobs" / "_worker" / "runner.py").read_text()
    [reset] = re.findall(r'"auto\.offset\.reset": "(\w+)"', runner)
    protocol = config.get(ENV["security_protocol"], "PLAINTEXT")
    mechanism = config.get(ENV["sasl_mechanism"], "")
    auth = _one(rendered, "TriggerAuthentication")
    params = {ref["parameter"]: ref for ref in auth["spec"]["secretTargetRef"]}
    secret = _named(rendered, "Secret", KAFKA_SECRET)
    for trigger in triggers:
        meta = trigger["metadata"]
        assert trigger["type"] == "kafka"
        assert meta["consumerGroup"] == group
        assert meta["bootstrapServers"] == config[ENV["bootstrap_servers"]]
        assert meta["offsetResetPolicy"] == reset
        assert meta.get("tls", "disable") == ("enable" if "SSL" in protocol else "disable")
        if protocol.startswith("SASL"):
            assert meta["sasl"] == mechanism.lower().replace("-", "_").replace(
                "scram_sha_", "scram_sha").replace("plain", "plaintext")
            assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
    if protocol.startswith("SASL"):
        for parameter, var in (("username", "sasl_username"), ("password", "sasl_password")):
            assert params[parameter]["name"] == secret["metadata"]["name"]
            assert params[parameter]["key"] == ENV[var]
    if config.get(ENV["ssl_ca_location"]):
        assert "ca" in params


def test_pdb_and_podmonitor_select_the_worker_pods(
        rendered: dict[tuple[str, str], dict[str, Any]]) -> None:
    """Rule: the PodDisruptionBudget and the worker's PodMonitor select exactly the worker's
    pods (not the topics Job's nor the dashboard's); the PodMonitor scrapes the named metrics
    port at /metrics."""
    labels = _named(rendered, "Deployment", WORKER)["spec"]["template"]["metadata"]["labels"]
    others = [_one(rendered, "Job")["spec"]["template"]["metadata"]["labels"],
              _named(rendered, "Deployment", WEB)["spec"]["template"]["metadata"]["labels"]]
    pdb = _one(rendered, "PodDisruptionBudget")
    pm = _named(rendered, "PodMonitor", WORKER)
    for selector in (pdb["spec"]["selector"]["matchLabels"], pm["spec"]["selector"]["matchLabels"]):
        assert selector.items() <= labels.items()
        assert not any(selector.items() <= other.items() for other in others)
    assert pdb["spec"].get("maxUnavailable") == 1 or pdb["spec"].get("minAvailable")
    [endpoint] = pm["spec"]["podMetricsEndpoints"]
    [worker] = _named(rendered, "Deployment", WORKER)["spec"]["template"]["spec"]["containers"]
    assert endpoint["port"] in {p["name"] for p in worker["ports"]}
    assert endpoint.get("path", "/metrics") == "/metrics" and served_status("/metrics") == 200


def test_overlay_changes_what_it_claims() -> None:
    """Rule: the example overlay puts everything in its namespace, pins the image of the
    worker, the dashboard and the Job, and its patches change the base (merged, not replacing
    containers)."""
    base = {_ident(r): r for r in render(K8S / "base")}
    overlay = {_ident(r): r for r in render(K8S / "overlays" / "example")}
    assert set(base) == set(overlay)
    assert {r["metadata"].get("namespace") for r in overlay.values()} == {"jobs"}
    for pod in _pods(overlay).values():
        [container] = pod["containers"]
        assert container["image"] == "registry.example.com/acme/streamjobs:0.1.0"
        assert container["command"][0] == "streamjobs"  # base fields kept by the merge
    [worker] = _named(overlay, "Deployment", WORKER)["spec"]["template"]["spec"]["containers"]
    assert {m["mountPath"] for m in worker["volumeMounts"]} == {"/tmp",
                                                                "/etc/streamjobs/kafka-ca"}
    assert _config(overlay)[ENV["bootstrap_servers"]] != _config(base)[ENV["bootstrap_servers"]]


def test_keda_owns_the_worker_replica_count(
        rendered: dict[tuple[str, str], dict[str, Any]]) -> None:
    """Rule (#13): a Deployment a ScaledObject scales has no `replicas` field, so `kubectl
    apply -k` never resets KEDA's count (and forces a rebalance); the dashboard, which no
    ScaledObject scales, has a fixed count of 1."""
    scaled = {so["spec"]["scaleTargetRef"]["name"] for (kind, _), so in rendered.items()
              if kind == "ScaledObject"}
    assert scaled == {WORKER}
    for (kind, name), res in rendered.items():
        if kind != "Deployment":
            continue
        if name in scaled:
            assert "replicas" not in res["spec"], f"{name}: KEDA owns replicas"
        else:
            assert res["spec"].get("replicas") == 1, name


def test_the_base_deployment_has_no_replicas_in_any_overlay() -> None:
    """Rule (#13): no file of k8s/ sets replicas on the worker Deployment (a patch setting it
    would bring the reset back)."""
    for path in K8S.rglob("*.yaml"):
        for doc in _docs(path):
            if doc.get("kind") == "Deployment" and doc["metadata"]["name"] == WORKER:
                assert "replicas" not in doc.get("spec", {}), path


def _args(argv: list[str]) -> dict[str, str]:
    return {argv[i]: argv[i + 1] for i in range(0, len(argv) - 1, 2)
            if argv[i].startswith("--")}


def test_web_deployment_runs_the_dashboard(
        rendered: dict[tuple[str, str], dict[str, Any]]) -> None:
    """Rule: the dashboard runs `streamjobs web --host 0.0.0.0 --port P` from the worker's
    image with the token from its Secret's key (a non-loopback host requires it); its named
    port `http` is P; startup, liveness and readiness probe /healthz there; it runs hardened
    like the worker; every variable it is given is one the dashboard (or the shared config)
    reads."""
    dep = _named(rendered, "Deployment", WEB)
    pod = dep["spec"]["template"]["spec"]
    [web] = pod["containers"]
    assert web["command"] == ["streamjobs", "web"]
    args = _args(web["args"])
    assert args["--host"] == "0.0.0.0"
    port = int(args["--port"])
    for option in ("--host", "--port"):
        web_option(option)
    [worker] = _named(rendered, "Deployment", WORKER)["spec"]["template"]["spec"]["containers"]
    assert web["image"] == worker["image"]
    [http] = [p for p in web["ports"] if p.get("name") == "http"]
    assert http["containerPort"] == port
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        get = web[probe]["httpGet"]
        assert (get["path"], get["port"]) == ("/healthz", "http"), probe
    startup = web["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 120  # index rebuild
    [token] = [e for e in web["env"] if e["name"] == WEB_TOKEN]
    ref = token["valueFrom"]["secretKeyRef"]
    assert ref["key"] in _named(rendered, "Secret", ref["name"])["stringData"]
    assert {e["name"] for e in web["env"]} <= web_reads()
    _check_hardened(pod)
    assert dep["spec"]["selector"]["matchLabels"].items() <= \
        dep["spec"]["template"]["metadata"]["labels"].items()


def test_web_service_and_podmonitor_select_only_the_dashboard(
        rendered: dict[tuple[str, str], dict[str, Any]]) -> None:
    """Rule: the Service routes to the dashboard pods' `http` port only (not the workers'),
    and the dashboard's PodMonitor scrapes /metrics on that port, as the worker's does on its
    metrics port."""
    labels = _named(rendered, "Deployment", WEB)["spec"]["template"]["metadata"]["labels"]
    worker = _named(rendered, "Deployment", WORKER)["spec"]["template"]["metadata"]["labels"]
    svc = _named(rendered, "Service", WEB)
    pm = _named(rendered, "PodMonitor", WEB)
    for selector in (svc["spec"]["selector"], pm["spec"]["selector"]["matchLabels"]):
        assert selector.items() <= labels.items()
        assert not selector.items() <= worker.items()
    [port] = svc["spec"]["ports"]
    assert port["targetPort"] == "http"
    [endpoint] = pm["spec"]["podMetricsEndpoints"]
    worker_pm = _named(rendered, "PodMonitor", WORKER)["spec"]["podMetricsEndpoints"][0]
    assert endpoint["port"] == "http" and endpoint.get("path", "/metrics") == "/metrics"
    assert endpoint["interval"] == worker_pm["interval"]
