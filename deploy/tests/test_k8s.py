"""The Kubernetes overlays, as `kubectl kustomize` renders them, agree with the code and with each other."""

from __future__ import annotations

import secrets
from typing import Any

import pytest

from fastmicro.testing.tokens import new_signing_key
from fastmicro.tokens import PublicKeySet, SigningKey

from .stack import (
    DEPLOYMENT_REQUIRED,
    OVERLAYS,
    SECRET_VARIABLES,
    SERVICE_REQUIRED,
    SERVICES,
    Document,
    app_paths,
    cli_commands,
    env_names,
    find,
    overlay,
    python_m_commands,
    required_env,
    settings_class,
)

CASES = [(o, s) for o in OVERLAYS for s in SERVICES]
PRIVATE_KEY_JSON = new_signing_key("k8s-test")
PRIVATE_KEY = SigningKey.from_json(PRIVATE_KEY_JSON)
IDS = [f"{o}-{s}" for o, s in CASES]


def labels(service: str, component: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": service, "app.kubernetes.io/component": component}


def pod_spec(workload: Document) -> Document:
    spec: Document = workload["spec"]["template"]["spec"]
    return spec


def container(workload: Document) -> Document:
    containers = pod_spec(workload)["containers"]
    assert len(containers) == 1
    only: Document = containers[0]
    return only


def workloads(name: str, service: str) -> list[Document]:
    documents = overlay(name)
    return [
        find(documents, "Deployment", f"{service}-api"),
        find(documents, "Deployment", f"{service}-worker"),
        find(documents, "Job", f"{service}-migrate"),
    ]


def environment(name: str, workload: Document) -> dict[str, Any]:
    """The container's variables: its ConfigMaps' data, then its own `env` (values or references)."""
    variables: dict[str, Any] = {}
    for source in container(workload).get("envFrom", []):
        variables |= find(overlay(name), "ConfigMap", source["configMapRef"]["name"])["data"]
    for variable in container(workload).get("env", []):
        variables[variable["name"]] = variable.get("value", variable.get("valueFrom"))
    return variables


def stand_in(service: str, name: str) -> str | None:
    """A valid value for a variable that a Secret supplies, to check the settings accept the rest."""
    return {
        "DATABASE_URL": f"postgresql+asyncpg://{service}:{secrets.token_hex(8)}@fastmicro-pg-rw:5432/{service}",
        "AMQP_URL": f"amqp://fastmicro:{secrets.token_hex(8)}@fastmicro-rabbitmq:5672/",
        "JWT_PUBLIC_KEYS": PublicKeySet.of(PRIVATE_KEY).to_json(),
        "JWT_SIGNING_KEY": PRIVATE_KEY_JSON,
        "METRICS_TOKEN": secrets.token_hex(32),
    }.get(name)


@pytest.mark.parametrize(("name", "service"), CASES, ids=IDS)
def test_each_service_has_its_parts(name: str, service: str) -> None:
    documents = overlay(name)
    for kind, object_name in [
        ("Deployment", f"{service}-api"),
        ("Deployment", f"{service}-worker"),
        ("Service", service),
        ("Job", f"{service}-migrate"),
        ("PodDisruptionBudget", f"{service}-api"),
        ("HorizontalPodAutoscaler", f"{service}-worker"),
    ]:
        find(documents, kind, object_name)


@pytest.mark.parametrize(("name", "service"), CASES, ids=IDS)
def test_every_variable_set_is_a_setting_and_every_required_one_is_set(name: str, service: str) -> None:
    for workload in workloads(name, service):
        variables = set(environment(name, workload))
        where = f"{workload['kind']}/{workload['metadata']['name']}"

        assert variables <= env_names(service), f"{where} sets variables its settings ignore"
        missing = (required_env(service) | DEPLOYMENT_REQUIRED | SERVICE_REQUIRED.get(service, set())) - variables
        assert not missing, f"{where} leaves {missing} unset"


@pytest.mark.parametrize(("name", "service"), CASES, ids=IDS)
def test_the_settings_accept_the_values_set(name: str, service: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in env_names(service):
        monkeypatch.delenv(variable, raising=False)
    for variable, value in environment(name, find(overlay(name), "Deployment", f"{service}-api")).items():
        literal = value if isinstance(value, str) else stand_in(service, variable)
        if literal is not None:
            monkeypatch.setenv(variable, literal)

    settings = settings_class(service)(_env_file=None)

    assert settings.service_name == service
    assert settings.http_port == SERVICES[service]
    assert settings.http_host == "0.0.0.0"  # noqa: S104 - the pod's address, for the kubelet and the Service
    assert settings.log_format == "json"
    assert settings.environment == ("production" if name == "prod" else "development")


@pytest.mark.parametrize(("name", "service"), CASES, ids=IDS)
def test_the_api_gets_the_metrics_token_that_prometheus_presents(name: str, service: str) -> None:
    """Production refuses to serve without METRICS_TOKEN; the PodMonitor scrapes with the same Secret."""
    api = environment(name, find(overlay(name), "Deployment", f"{service}-api"))
    [endpoint] = find(overlay(name), "PodMonitor", "fastmicro-api")["spec"]["podMetricsEndpoints"]

    assert api["METRICS_TOKEN"] == {"secretKeyRef": endpoint["authorization"]["credentials"]}
    assert (endpoint["port"], endpoint["path"]) == ("http", "/metrics")


@pytest.mark.parametrize(("name", "service"), CASES, ids=IDS)
def test_secrets_are_references_never_values(name: str, service: str) -> None:
    """deploy/tests/test_create_secrets.py checks that create-secrets.sh makes each one."""
    for workload in workloads(name, service):
        for variable, value in environment(name, workload).items():
            if variable in SECRET_VARIABLES | {"JWT_PUBLIC_KEYS"} or "PASSWORD" in variable:
                assert set(value) == {"secretKeyRef"}, (variable, value)


@pytest.mark.parametrize(("name", "service"), CASES, ids=IDS)
def test_ports_match_the_contract_the_settings_and_the_service(name: str, service: str) -> None:
    documents = overlay(name)
    api = find(documents, "Deployment", f"{service}-api")
    kube_service = find(documents, "Service", service)
    port = SERVICES[service]

    assert container(api)["ports"] == [{"name": "http", "containerPort": port}]
    assert environment(name, api)["HTTP_PORT"] == str(port)
    assert kube_service["spec"]["ports"] == [{"name": "http", "port": port, "targetPort": "http"}]
    assert kube_service["spec"]["selector"] == labels(service, "api")


@pytest.mark.parametrize(("name", "service"), CASES, ids=IDS)
def test_probes_ask_liveness_and_readiness_of_the_app(name: str, service: str) -> None:
    api = container(find(overlay(name), "Deployment", f"{service}-api"))
    paths = {probe: api[probe]["httpGet"]["path"] for probe in ("startupProbe", "livenessProbe", "readinessProbe")}

    assert paths == {"startupProbe": "/health/live", "livenessProbe": "/health/live", "readinessProbe": "/health/ready"}
    assert set(paths.values()) <= app_paths(service)
    assert all(api[probe]["httpGet"]["port"] == "http" for probe in paths)


@pytest.mark.parametrize(("name", "service"), CASES, ids=IDS)
def test_commands_exist_in_the_services_cli(name: str, service: str) -> None:
    api, worker, job = workloads(name, service)
    steps = python_m_commands(" ".join(container(job)["command"] + container(job)["args"]))

    assert container(api)["args"] == ["serve"]
    assert container(worker)["args"] == ["worker"]
    assert steps == [(service, "migrate"), (service, "topology")]
    assert {"serve", "worker", "migrate", "topology"} <= cli_commands(service)
    assert pod_spec(job)["restartPolicy"] == "Never"


@pytest.mark.parametrize(("name", "service"), CASES, ids=IDS)
def test_the_api_leaves_the_background_roles_to_the_worker(name: str, service: str) -> None:
    api, worker, _ = workloads(name, service)

    assert environment(name, api)["SERVE_ROLES"] == "false"
    assert container(worker)["args"] == ["worker"]  # runs them whatever SERVE_ROLES says


@pytest.mark.parametrize(("name", "service"), CASES, ids=IDS)
def test_each_workload_runs_its_services_image_unprivileged_with_resources(name: str, service: str) -> None:
    for workload in workloads(name, service):
        spec = container(workload)
        resources = spec["resources"]

        assert spec["image"].rpartition(":")[0].endswith(f"fastmicro/{service}")
        assert {"cpu", "memory"} <= set(resources["requests"])
        assert "memory" in resources["limits"]
        assert pod_spec(workload)["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["allowPrivilegeEscalation"] is False
        assert pod_spec(workload)["automountServiceAccountToken"] is False


@pytest.mark.parametrize(("name", "service"), CASES, ids=IDS)
def test_selectors_find_their_pods(name: str, service: str) -> None:
    documents = overlay(name)
    api, worker, _ = workloads(name, service)
    budget = find(documents, "PodDisruptionBudget", f"{service}-api")
    autoscaler = find(documents, "HorizontalPodAutoscaler", f"{service}-worker")

    for workload, component in ((api, "api"), (worker, "worker")):
        assert workload["spec"]["selector"]["matchLabels"] == labels(service, component)
        assert labels(service, component).items() <= workload["spec"]["template"]["metadata"]["labels"].items()
    assert budget["spec"]["selector"]["matchLabels"] == labels(service, "api")
    assert autoscaler["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": worker["metadata"]["name"],
    }
    assert "replicas" not in worker["spec"], "the autoscaler owns the worker's replicas"
    assert 1 <= autoscaler["spec"]["minReplicas"] <= autoscaler["spec"]["maxReplicas"]


@pytest.mark.parametrize("name", OVERLAYS)
def test_each_service_owns_a_database_and_a_role(name: str) -> None:
    documents = overlay(name)
    cluster = find(documents, "Cluster", "fastmicro-pg")
    roles = {role["name"]: role for role in cluster["spec"]["managed"]["roles"]}
    find(documents, "RabbitmqCluster", "fastmicro-rabbitmq")

    for service in SERVICES:
        database = find(documents, "Database", f"fastmicro-pg-{service}")["spec"]
        assert (database["name"], database["owner"], database["cluster"]["name"]) == (service, service, "fastmicro-pg")
        assert roles[service]["login"] is True
        assert roles[service]["passwordSecret"]["name"] == f"fastmicro-pg-{service}"


def test_production_runs_several_of_each_service_and_of_postgres() -> None:
    documents = overlay("prod")

    assert find(documents, "Cluster", "fastmicro-pg")["spec"]["instances"] >= 3
    # quorum queues on three broker nodes, spread over the cluster's machines
    rabbitmq = find(documents, "RabbitmqCluster", "fastmicro-rabbitmq")["spec"]
    assert rabbitmq["replicas"] == 3
    (spread,) = rabbitmq["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert spread["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert spread["podAffinityTerm"]["labelSelector"]["matchLabels"] == {"app.kubernetes.io/name": "fastmicro-rabbitmq"}
    # every service's queues are quorum queues there (one node, the base's, keeps classic ones)
    configs = [d for d in documents if d["kind"] == "ConfigMap" and "SERVE_ROLES" in d.get("data", {})]
    assert len(configs) == len(SERVICES)
    assert {d["data"].get("QUEUE_TYPE") for d in configs} == {"quorum"}
    for service in SERVICES:
        assert find(documents, "Deployment", f"{service}-api")["spec"]["replicas"] >= 2
        assert find(documents, "HorizontalPodAutoscaler", f"{service}-worker")["spec"]["minReplicas"] >= 2


def test_everything_lands_in_the_overlays_namespace() -> None:
    for name, namespace in (("dev", "fastmicro-dev"), ("prod", "fastmicro")):
        documents = overlay(name)
        assert find(documents, "Namespace", namespace)
        assert {d["metadata"].get("namespace") for d in documents if d["kind"] != "Namespace"} == {namespace}
