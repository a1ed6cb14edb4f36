"""Checks of deploy/: the files are valid for their tools and agree with the code and each other.

- Prometheus: `promtool check rules`, `promtool test rules` (alerts_test.yml), `promtool check
  config`; the k8s PrometheusRule carries exactly alerts.yml's groups.
- nginx: the template rendered for local upstreams passes `nginx -t`, and a real nginx in front
  of two local servers retries, refuses and passes headers as the comments promise; the compose
  config is the template's current rendering.
- Kubernetes: core kinds validated against the API schemas by kubernetes-validate (strict);
  CRDs (ServiceMonitor, PrometheusRule, ScaledObject, TriggerAuthentication) and the
  Kustomization have no schema there, so they are checked field by field, with cross-references.
- compose: parsed as YAML (the docker compose plugin is not installed everywhere) and checked:
  healthchecks, depends_on conditions, volumes, mounts, no secret values, documented variables.
- Grafana and alerts: every metric name used exists in ragserve.observability.metrics.
- Dockerfile: copied paths exist and survive .dockerignore; CMD, HEALTHCHECK, user, torch pin.

Binaries (promtool, nginx) skip their tests when absent; `make test` installs them.
"""

from __future__ import annotations

import fnmatch
import http.client
import importlib.util
import json
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from ragserve.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
PROMETHEUS = DEPLOY / "prometheus"
METRICS_SOURCE = ROOT / "src" / "ragserve" / "observability" / "metrics.py"
CELERY_SOURCE = ROOT / "src" / "ragserve" / "worker" / "celery_app.py"

# Being added to metrics.py now: accepted whether or not they are there yet.
PENDING_METRICS = {"rag_ingest_queue_depth": "Gauge", "rag_ingest_job_seconds": "Histogram"}

SECRET_NAME = re.compile(r"(PASSWORD|SECRET|API_KEY|PEPPER|TOKEN)", re.IGNORECASE)
CRD_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
    ("keda.sh/v1alpha1", "ScaledObject"),
    ("keda.sh/v1alpha1", "TriggerAuthentication"),
}


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (`make test` installs it with apt-get: prometheus for promtool, nginx)")
    return path


def _run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


def _load_module(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"deploy_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _yaml_docs(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]


def _all_k8s_docs() -> list[tuple[Path, dict[str, Any]]]:
    return [(path, doc) for path in sorted(K8S.glob("*.yaml")) for doc in _yaml_docs(path)]


def _metric_names() -> set[str]:
    """Every sample name ragserve exposes: counters as *_total, histograms as *_bucket/_sum/_count."""
    source = METRICS_SOURCE.read_text(encoding="utf-8")
    kinds = dict(PENDING_METRICS)
    for kind, name in re.findall(r"\b(Counter|Histogram|Gauge|GaugeMetricFamily)\(\s*\"(rag_\w+)\"", source):
        kinds[name] = kind
    names: set[str] = set()
    for name, kind in kinds.items():
        if kind == "Counter":
            names.add(f"{name}_total")
        elif kind == "Histogram":
            names.update(f"{name}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
        else:
            names.add(name)
    return names


def _rag_metrics_in(expr: str) -> set[str]:
    return set(re.findall(r"\b(rag_[a-zA-Z0-9_]+)", expr))


# ------------------------------------------------------------------ Prometheus


def test_promtool_checks_alert_rules() -> None:
    promtool = _tool("promtool")
    _run(promtool, "check", "rules", str(PROMETHEUS / "alerts.yml"))


def test_promtool_unit_tests_of_alerts_pass() -> None:
    promtool = _tool("promtool")
    _run(promtool, "test", "rules", "alerts_test.yml", cwd=PROMETHEUS)


def test_alert_unit_tests_cover_firing_and_silence() -> None:
    tests = yaml.safe_load((PROMETHEUS / "alerts_test.yml").read_text(encoding="utf-8"))["tests"]
    firing: set[str] = set()
    silent: set[str] = set()
    for case in tests:
        for check in case.get("alert_rule_test", []):
            (firing if check["exp_alerts"] else silent).add(check["alertname"])
    both = firing & silent
    assert len(both) >= 3, f"alerts tested both firing and not firing: {sorted(both)}"


def test_promtool_checks_compose_prometheus_config() -> None:
    promtool = _tool("promtool")
    # rule_files are relative to the config, so this also checks alerts.yml as Prometheus loads it.
    _run(promtool, "check", "config", str(PROMETHEUS / "prometheus.yml"))


def test_alerts_carry_severity_annotations_and_runbooks() -> None:
    groups = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text(encoding="utf-8"))["groups"]
    alerts = [rule for group in groups for rule in group["rules"] if "alert" in rule]
    names = {rule["alert"] for rule in alerts}
    for wanted in (
        "RagQueryLatencyHigh",
        "RagErrorRateHigh",
        "RagCircuitBreakerOpen",
        "RagCacheHitRatioLow",
        "RagBudgetBurnHigh",
        "RagRateLimitRejectionsSurge",
        "RagAuthFailuresSurge",
        "RagIngestQueueBacklog",
    ):
        assert wanted in names
    for rule in alerts:
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
        for key in ("summary", "description", "runbook_url"):
            assert rule["annotations"].get(key), f"{rule['alert']}: no {key}"
        assert re.fullmatch(r"README\.md#runbook-[a-z0-9-]+", rule["annotations"]["runbook_url"]), rule["alert"]


def test_rules_and_dashboard_use_only_exposed_metrics() -> None:
    known = _metric_names()
    assert "rag_requests_total" in known and "rag_request_latency_seconds_bucket" in known
    groups = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text(encoding="utf-8"))["groups"]
    for rule in (rule for group in groups for rule in group["rules"]):
        unknown = _rag_metrics_in(rule["expr"]) - known
        assert not unknown, f"{rule.get('alert') or rule.get('record')}: unknown metrics {sorted(unknown)}"


def test_prometheus_rule_is_alerts_yml() -> None:
    (rule,) = _yaml_docs(K8S / "prometheusrule.yaml")
    alerts = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text(encoding="utf-8"))
    assert rule["spec"]["groups"] == alerts["groups"], "regenerate: python deploy/prometheus/to_prometheusrule.py"
    generator = _load_module(PROMETHEUS / "to_prometheusrule.py")
    assert generator.prometheus_rule_from_alerts() == (K8S / "prometheusrule.yaml").read_text(encoding="utf-8")


def test_compose_prometheus_scrapes_every_api_replica() -> None:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text(encoding="utf-8"))
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == "ragserve-api"]
    targets = [t for sc in job["static_configs"] for t in sc["targets"]]
    services = _compose()["services"]
    api = sorted(name for name in services if name.startswith("api-"))
    assert sorted(targets) == [f"{name}:8000" for name in api]
    assert job.get("metrics_path", "/metrics") == "/metrics"


# ------------------------------------------------------------------ nginx


@pytest.fixture(scope="module")
def render() -> ModuleType:
    return _load_module(DEPLOY / "nginx" / "render.py")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_compose_nginx_conf_is_the_rendered_template(render: ModuleType) -> None:
    assert (DEPLOY / "nginx" / "nginx.conf").read_text(encoding="utf-8") == render.render_compose_conf(), (
        "deploy/nginx/nginx.conf is stale: python deploy/nginx/render.py"
    )
    services = _compose()["services"]
    for upstream in render.COMPOSE_UPSTREAMS:
        host, port = upstream.split(":")
        assert host in services and port in [str(p) for p in services[host].get("expose", [])]


def test_nginx_limits_follow_ragserve_defaults(render: ModuleType) -> None:
    defaults = Settings()
    assert defaults.max_upload_bytes == render.DEFAULT_MAX_UPLOAD_BYTES
    assert defaults.max_request_bytes == render.DEFAULT_MAX_REQUEST_BYTES
    conf = render.render_compose_conf()
    assert f"client_max_body_size {defaults.max_upload_bytes};" in conf
    assert "least_conn;" in conf and "max_fails=" in conf and "fail_timeout=" in conf
    assert "proxy_next_upstream error timeout http_502 http_503 http_504;" in conf
    # Only the read-only POSTs (questions, searches) may go to another replica once sent, and only
    # after a connection error or a 503 (no work done): never after a timeout or a 502/504.
    code = re.sub(r"#.*", "", conf)
    assert code.count("non_idempotent") == 1, "only one location may retry a POST once sent"
    readonly = re.search(r"location ~ \^/v1/\(query\|search\|chat/completions\)\$ \{(.*?)\}", code, re.S)
    assert readonly is not None and "proxy_next_upstream error http_503 non_idempotent;" in readonly.group(1)
    assert "proxy_buffering off;" in conf


def test_nginx_accepts_the_config_rendered_for_local_replicas(render: ModuleType, tmp_path: Path) -> None:
    nginx = _tool("nginx")
    conf = tmp_path / "nginx.conf"
    conf.write_text(render.render_nginx_conf(["127.0.0.1:18001", "127.0.0.1:18002"], 18080, runtime_dir=tmp_path))
    (tmp_path / "temp").mkdir()
    _run(nginx, "-t", "-q", "-e", "stderr", "-p", str(tmp_path), "-c", str(conf))


class _Replica(BaseHTTPRequestHandler):
    """A stand-in API replica: answers with its name and the request's X-Request-ID; on the "bad" replica
    /v1/boom fails with 502 and /v1/search with 503 (a draining replica)."""

    protocol_version = "HTTP/1.1"
    server: _ReplicaServer

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        with self.server.lock:
            self.server.hits.append((self.command, self.path))
        bad = self.server.name == "bad"
        status = 502 if self.path == "/v1/boom" and bad else 503 if self.path == "/v1/search" and bad else 200
        body = json.dumps({"replica": self.server.name, "request_id": self.headers.get("X-Request-ID")}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _ReplicaServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, name: str) -> None:
        super().__init__(("127.0.0.1", 0), _Replica)
        self.name = name
        self.hits: list[tuple[str, str]] = []
        self.lock = threading.Lock()


@pytest.fixture
def replicas() -> Iterator[tuple[_ReplicaServer, _ReplicaServer]]:
    servers = (_ReplicaServer("good"), _ReplicaServer("bad"))
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    yield servers
    for server in servers:
        server.shutdown()
        server.server_close()


def _request(port: int, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> Any:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def test_nginx_in_front_of_replicas_retries_only_what_is_safe(
    render: ModuleType, tmp_path: Path, replicas: tuple[_ReplicaServer, _ReplicaServer]
) -> None:
    nginx = _tool("nginx")
    good, bad = replicas
    dead = _free_port()  # nothing listens: connection refused
    listen = _free_port()
    upstreams = [f"127.0.0.1:{good.server_address[1]}", f"127.0.0.1:{bad.server_address[1]}", f"127.0.0.1:{dead}"]
    conf = tmp_path / "nginx.conf"
    conf.write_text(render.render_nginx_conf(upstreams, listen, runtime_dir=tmp_path, max_fails=100))
    (tmp_path / "temp").mkdir()
    process = subprocess.Popen(
        [nginx, "-e", "stderr", "-p", str(tmp_path), "-c", str(conf), "-g", "daemon off; master_process off;"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                status, _, _ = _request(listen, "GET", "/nginx-health")
                break
            except OSError:
                assert process.poll() is None, process.communicate()[0]
                assert time.monotonic() < deadline, "nginx did not start"
                time.sleep(0.05)
        assert status == 200

        # A POST nobody received (connection refused) goes to another replica: every one succeeds.
        for _ in range(9):
            status, _, body = _request(listen, "POST", "/v1/query", b"{}", {"Content-Type": "application/json"})
            assert status == 200, body

        # A POST that reached a replica is never sent again when that replica answered 502 (a write
        # may have happened; the read-only /v1/query, /v1/search and chat locations retry only after
        # a connection error or a 503)...
        before = len(good.hits) + len(bad.hits)
        statuses = [_request(listen, "POST", "/v1/boom", b"{}")[0] for _ in range(12)]
        assert len(good.hits) + len(bad.hits) - before == 12, "a POST was sent twice"
        assert 502 in statuses and 200 in statuses
        # A read-only POST that a replica refused with 503 (it did no work) is answered by another.
        before = len(good.hits) + len(bad.hits)
        for _ in range(8):
            status, _, body = _request(listen, "POST", "/v1/search", b"{}", {"Content-Type": "application/json"})
            assert status == 200, body
        assert len(good.hits) + len(bad.hits) - before > 8, "no POST /v1/search was retried"
        # ...while a GET is retried on another replica.
        for _ in range(6):
            assert _request(listen, "GET", "/v1/boom")[0] == 200

        # X-Request-ID: the caller's passes through; without one, nginx makes one.
        _, _, body = _request(listen, "GET", "/v1/collections", headers={"X-Request-ID": "trace-abc.123"})
        assert json.loads(body)["request_id"] == "trace-abc.123"
        _, _, body = _request(listen, "GET", "/v1/collections")
        assert re.fullmatch(r"[0-9a-f]{32}", json.loads(body)["request_id"])

        # /metrics is not served publicly, and never reaches a replica.
        hits = len(good.hits) + len(bad.hits)
        assert _request(listen, "GET", "/metrics")[0] == 404
        assert len(good.hits) + len(bad.hits) == hits

        # Bodies over RAGSERVE_MAX_REQUEST_BYTES are refused by nginx with a JSON error.
        conn = http.client.HTTPConnection("127.0.0.1", listen, timeout=10)
        conn.putrequest("POST", "/v1/query")
        conn.putheader("Content-Length", str(render.DEFAULT_MAX_REQUEST_BYTES + 1))
        conn.endheaders()
        response = conn.getresponse()
        assert response.status == 413
        assert json.loads(response.read())["error"]["type"] == "payload_too_large"
        conn.close()
    finally:
        process.terminate()
        process.wait(timeout=10)


# ------------------------------------------------------------------ Kubernetes


def test_k8s_core_manifests_validate_against_the_api_schemas() -> None:
    kubernetes_validate = pytest.importorskip(
        "kubernetes_validate", reason="kubernetes-validate is not installed (dev extra: kubernetes-validate==1.37.0)"
    )
    import jsonschema  # a dependency of kubernetes-validate

    version = kubernetes_validate.latest_version()
    validated = 0
    for path, doc in _all_k8s_docs():
        if (doc["apiVersion"], doc["kind"]) in CRD_KINDS or doc["kind"] == "Kustomization":
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except jsonschema.ValidationError as exc:  # kubernetes_validate's ValidationError and jsonschema's own
            pytest.fail(f"{path.name} {doc['kind']}/{doc['metadata']['name']}: {exc.message}")
        validated += 1
    assert validated >= 9


def _by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for _, doc in _all_k8s_docs() if doc["kind"] == kind}


def _pod_labels(deployment: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = deployment["spec"]["template"]["metadata"]["labels"]
    return labels


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def test_k8s_kustomization_lists_every_manifest() -> None:
    (kustomization,) = _yaml_docs(K8S / "kustomization.yaml")
    assert kustomization["kind"] == "Kustomization"
    resources = kustomization["resources"]
    assert sorted(resources) == sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def test_k8s_api_deployment_probes_and_graceful_drain() -> None:
    deployment = _by_kind("Deployment")["ragserve-api"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 120, "model load needs a generous startup probe"
    assert container["resources"]["requests"] and container["resources"]["limits"]
    graceful = float(_by_kind("ConfigMap")["ragserve-config"]["data"]["RAGSERVE_GRACEFUL_TIMEOUT_S"])
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    assert pod["terminationGracePeriodSeconds"] > graceful + float(pre_stop[1])
    assert pod["securityContext"]["runAsNonRoot"] is True


def test_k8s_references_resolve() -> None:
    deployments = _by_kind("Deployment")
    config_maps, secrets, claims = _by_kind("ConfigMap"), _by_kind("Secret"), _by_kind("PersistentVolumeClaim")
    for deployment in deployments.values():
        pod = deployment["spec"]["template"]["spec"]
        assert _selects(deployment["spec"]["selector"]["matchLabels"], _pod_labels(deployment))
        for container in pod["containers"]:
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    assert source["configMapRef"]["name"] in config_maps
                if "secretRef" in source:
                    assert source["secretRef"]["name"] in secrets
        for volume in pod.get("volumes", []):
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims
    for service in _by_kind("Service").values():
        assert any(_selects(service["spec"]["selector"], _pod_labels(d)) for d in deployments.values())
    for pdb in _by_kind("PodDisruptionBudget").values():
        assert any(_selects(pdb["spec"]["selector"]["matchLabels"], _pod_labels(d)) for d in deployments.values())
    for hpa in _by_kind("HorizontalPodAutoscaler").values():
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert hpa["spec"]["scaleTargetRef"]["name"] in deployments
        assert {m["resource"]["name"] for m in hpa["spec"]["metrics"]} == {"cpu", "memory"}
    assert set(_by_kind("PodDisruptionBudget")) == {"ragserve-api", "ragserve-worker"}


def test_k8s_config_holds_real_settings_and_no_secrets() -> None:
    fields = {f"RAGSERVE_{name.upper()}" for name in Settings.model_fields}
    (config,) = _by_kind("ConfigMap").values()
    for key, value in config["data"].items():
        assert key in fields, f"ConfigMap: {key} is not a ragserve setting"
        assert not SECRET_NAME.search(key), f"ConfigMap: {key} is a secret"
        assert "@" not in value, f"ConfigMap: {key} looks like a URL with credentials"
    (secret,) = _by_kind("Secret").values()
    assert "data" not in secret, "the Secret template uses stringData placeholders only"
    for key, value in secret["stringData"].items():
        assert key in fields, f"Secret: {key} is not a ragserve setting"
        assert "<" in value and ">" in value, f"Secret: {key} must be a <placeholder>, not a value"


def test_k8s_custom_resources_structure() -> None:
    # kubernetes-validate knows only built-in kinds; CRDs are checked against what their
    # operators require (Prometheus Operator, KEDA) and against the rest of the manifests.
    services, deployments = _by_kind("Service"), _by_kind("Deployment")

    (monitor,) = _by_kind("ServiceMonitor").values()
    api_service = services["ragserve-api"]
    assert _selects(monitor["spec"]["selector"]["matchLabels"], api_service["metadata"]["labels"])
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {port["name"] for port in api_service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"

    (rule,) = _by_kind("PrometheusRule").values()
    for group in rule["spec"]["groups"]:
        assert group["name"] and group["rules"]
        for item in group["rules"]:
            assert ("alert" in item) != ("record" in item) and item["expr"]

    (scaled,) = _by_kind("ScaledObject").values()
    assert scaled["spec"]["scaleTargetRef"]["name"] in deployments
    assert scaled["spec"]["minReplicaCount"] <= scaled["spec"]["maxReplicaCount"]
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "redis"
    queue = re.search(r'^QUEUE = "([^"]+)"', CELERY_SOURCE.read_text(encoding="utf-8"), re.M)
    assert queue is not None and trigger["metadata"]["listName"] == queue.group(1)
    assert int(trigger["metadata"]["listLength"]) > 0
    assert trigger["authenticationRef"]["name"] in _by_kind("TriggerAuthentication")


# ------------------------------------------------------------------ compose


def _compose() -> dict[str, Any]:
    compose: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))
    return compose


def test_compose_services_are_healthchecked_and_wait_for_health() -> None:
    services = _compose()["services"]
    assert {"nginx", "api-1", "api-2", "worker", "redis", "qdrant", "postgres", "prometheus", "grafana"} <= set(
        services
    )
    for name, service in services.items():
        assert service.get("healthcheck", {}).get("test"), f"{name}: no healthcheck"
        for dependency, condition in service.get("depends_on", {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            assert condition == {"condition": "service_healthy"}, f"{name} -> {dependency}: not service_healthy"
    assert services["worker"]["command"] == ["ragserve", "worker"]
    assert set(services["nginx"]["depends_on"]) == {"api-1", "api-2"}


def test_compose_volumes_and_mounts_exist() -> None:
    compose = _compose()
    declared = set(compose["volumes"])
    for name, service in compose["services"].items():
        for mount in service.get("volumes", []):
            source = mount.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: {source} does not exist"
            else:
                assert source in declared, f"{name}: volume {source} is not declared"
        if "build" in service:
            context = DEPLOY / service["build"]["context"]
            assert (context / service["build"]["dockerfile"]).is_file()


def test_compose_has_no_secret_values_and_documents_every_variable() -> None:
    text = (DEPLOY / "compose.yaml").read_text(encoding="utf-8")
    compose = _compose()
    for name, service in compose["services"].items():
        environment = service.get("environment", {})
        assert isinstance(environment, dict), f"{name}: environment as a mapping"
        for key, value in environment.items():
            if SECRET_NAME.search(key):
                assert re.fullmatch(r"\$\{[A-Z0-9_]+:\?[^}]*\}", str(value)), (
                    f"{name}: {key} must come from deploy/.env"
                )
            if "://" in str(value) and "@" in str(value):
                assert re.search(r"://[^:/]+:\$\{[A-Z0-9_]+:\?[^}]*\}@", str(value)), f"{name}: {key} has a password"
    example = (DEPLOY / ".env.example").read_text(encoding="utf-8")
    documented = dict(re.findall(r"^([A-Z][A-Z0-9_]*)=(.*)$", example, re.M))
    for variable in set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", text)):
        assert variable in documented, f"${{{variable}}} is not in deploy/.env.example"
    for key, value in documented.items():
        if SECRET_NAME.search(key):
            assert value == "", f".env.example: {key} must be left empty"
    # Every secret that compose requires fails fast when empty.
    for key in ("POSTGRES_PASSWORD", "RAGSERVE_ADMIN_API_KEY", "RAGSERVE_API_KEY_PEPPER", "QDRANT_API_KEY"):
        assert f"${{{key}:?" in text


def test_compose_stop_grace_covers_graceful_timeout() -> None:
    api = _compose()["services"]["api-1"]
    grace = int(api["stop_grace_period"].rstrip("s"))
    timeout = float(re.search(r"(\d+)", api["environment"]["RAGSERVE_GRACEFUL_TIMEOUT_S"]).group(1))  # type: ignore[union-attr]
    assert grace > timeout


# ------------------------------------------------------------------ Grafana


def test_grafana_dashboard_panels_use_exposed_metrics() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "ragserve.json").read_text(encoding="utf-8"))
    assert dashboard["uid"] and dashboard["title"]
    known = _metric_names()
    panels = [panel for panel in dashboard["panels"] if panel["type"] != "row"]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    used: set[str] = set()
    for panel in panels:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = _rag_metrics_in(target["expr"])
            assert names, f"{panel['title']}: expression without a ragserve metric"
            assert names <= known, f"{panel['title']}: unknown metrics {sorted(names - known)}"
            used |= names
    for family in (
        "rag_requests_total",
        "rag_request_latency_seconds_bucket",
        "rag_errors_total",
        "rag_cache_requests_total",
        "rag_llm_tokens_total",
        "rag_cost_dollars_total",
        "rag_circuit_state",
        "rag_ratelimit_decisions_total",
        "rag_guard_flags_total",
        "rag_ingest_queue_depth",
    ):
        assert family in used, f"no panel shows {family}"
    datasource = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yaml").read_text(encoding="utf-8")
    )
    (source,) = datasource["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    provider = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "dashboards" / "ragserve.yaml").read_text(encoding="utf-8")
    )
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"


# ------------------------------------------------------------------ Dockerfile


def _dockerignored(path: str, patterns: list[str]) -> bool:
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(
            fnmatch.fnmatchcase(p, pattern) or fnmatch.fnmatchcase(p, pattern.removeprefix("**/")) for p in prefixes
        ):
            ignored = not negate
    return ignored


def test_dockerfile_copies_what_exists_and_runs_as_expected() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    copies = re.findall(r"^COPY\s+(?!--from)(?:--\S+\s+)*(.+)$", dockerfile, re.M)
    assert copies
    for line in copies:
        *sources, _destination = line.split()
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
            assert not _dockerignored(source.rstrip("/"), patterns), f"COPY {source}: excluded by .dockerignore"
    assert 'CMD ["ragserve", "serve", "--host", "0.0.0.0"]' in dockerfile
    assert "/health/live" in re.search(r"^HEALTHCHECK.*(?:\n\s+.*)*", dockerfile, re.M).group(0)  # type: ignore[union-attr]
    assert re.search(r"^EXPOSE 8000$", dockerfile, re.M)
    assert re.search(r"^FROM \$\{PYTHON_IMAGE\} AS runtime$", dockerfile, re.M)
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in dockerfile
    users = re.findall(r"^USER (\S+)", dockerfile, re.M)
    assert users and not users[-1].startswith(("root", "0"))
    pins = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    (torch,) = [pin for pin in pins if pin.startswith("torch==")]
    assert f"torch=={torch.split('==')[1]}" in dockerfile
    assert "build_embedder(Settings(data_dir='/opt/ragserve/model-cache'))" in dockerfile


def test_entrypoint_links_the_baked_model_into_a_fresh_data_dir(tmp_path: Path) -> None:
    baked = tmp_path / "baked" / "models"
    baked.mkdir(parents=True)
    env = {"PATH": "/usr/bin:/bin", "RAGSERVE_DATA_DIR": str(tmp_path / "data"), "RAGSERVE_MODEL_CACHE": str(baked)}
    script = str(DEPLOY / "docker" / "entrypoint.sh")
    subprocess.run(["sh", script, "true"], env=env, check=True, timeout=30)
    assert (tmp_path / "data" / "models").resolve() == baked.resolve()
    # A data directory with its own models/ keeps it.
    own = tmp_path / "own"
    (own / "models").mkdir(parents=True)
    subprocess.run(["sh", script, "true"], env={**env, "RAGSERVE_DATA_DIR": str(own)}, check=True, timeout=30)
    assert not (own / "models").is_symlink()
    # The command's exit status is the container's.
    assert subprocess.run(["sh", script, "false"], env=env, timeout=30, check=False).returncode == 1
