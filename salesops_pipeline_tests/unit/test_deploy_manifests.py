"""The Kubernetes deployment in deploy/ agrees with the project: every manifest validates,
strictly and offline, against the API of the Kubernetes version it targets, the
chart's version and dagster-k8s follow the Dagster pinned in setup.py, the instance the chart
renders keeps the run queue, monitoring and retries of dagster.postgres.yaml, the intake is
probed where it listens, Prometheus scrapes it with the metrics token, and no manifest holds a
secret, only references and placeholders."""

import copy
import re
import runpy
import shlex
import textwrap
import tomllib
from unittest import mock

import kubernetes_validate
import pytest
import yaml

from salesops_pipeline import settings
from salesops_pipeline.assets.constants import POST_CALL_LANE_TAG
from salesops_pipeline.devtools.stack import SECRETS_NOT_NEEDED
from salesops_pipeline_tests.conftest import REPO_ROOT

DEPLOY = REPO_ROOT / "deploy"
VALUES = DEPLOY / "helm" / "values.yaml"
INTAKE = DEPLOY / "k8s" / "intake.yaml"
SECRETS_EXAMPLE = DEPLOY / "k8s" / "secrets.example.yaml"
SHIPPED_INSTANCE = REPO_ROOT / "salesops_pipeline" / "deploy" / "dagster.postgres.yaml"

# The oldest Kubernetes the manifests are written for (deploy/README.md): a field it lacks, or
# one removed since, fails the check.
KUBERNETES_VERSION = "1.33"

# Environment variables whose value is a secret: they may only come from a Secret.
SECRET_NAME = re.compile(r"KEY|SECRET|PASSWORD|TOKEN|DATABASE_URL|WEBHOOK_URL", re.IGNORECASE)
# A placeholder reads `<...>`.
PLACEHOLDER = re.compile(r"<[^<>]+>")
CREDENTIALS_IN_URL = re.compile(r"://[^/\s:@]+:([^/\s@]+)@")


def _manifests() -> dict[str, list]:
    files = sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yaml", ".yml"))
    return {
        str(p.relative_to(REPO_ROOT)): [d for d in yaml.safe_load_all(p.read_text()) if d]
        for p in files
    }


@pytest.fixture(scope="module")
def manifests() -> dict[str, list]:
    return _manifests()


@pytest.fixture(scope="module")
def values() -> dict:
    return yaml.safe_load(VALUES.read_text())


@pytest.fixture(scope="module")
def setup_arguments() -> dict:
    """What setup.py passes to setup(), as setuptools would receive it."""
    with mock.patch("setuptools.setup") as setup:
        runpy.run_path(str(REPO_ROOT / "setup.py"))
    return setup.call_args.kwargs


def _pins(requirements: list[str]) -> dict[str, str]:
    return dict(r.split("==", 1) for r in requirements if "==" in r)


def _kinds(manifests: dict[str, list], kind: str) -> list[dict]:
    return [doc for docs in manifests.values() for doc in docs if doc.get("kind") == kind]


def _strings(node, path=""):
    """Every (path, string) in a parsed document."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _strings(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _strings(value, f"{path}[{index}]")
    elif isinstance(node, str):
        yield path, node


def _env_entries(node):
    """Every container env entry (`name` with `value` or `valueFrom`) in a document."""
    if isinstance(node, dict):
        if "name" in node and ("value" in node or "valueFrom" in node):
            yield node
        for value in node.values():
            yield from _env_entries(value)
    elif isinstance(node, list):
        for value in node:
            yield from _env_entries(value)


def _code_location(values: dict) -> dict:
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    return deployment


def _intake_deployment(manifests: dict[str, list]) -> dict:
    (deployment,) = [
        d for d in _kinds(manifests, "Deployment") if "intake" in d["metadata"]["name"]
    ]
    return deployment


def _example_secrets(manifests: dict[str, list]) -> dict[str, dict]:
    docs = manifests[str(SECRETS_EXAMPLE.relative_to(REPO_ROOT))]
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == "Secret"}


def test_every_manifest_parses(manifests):
    assert {str(INTAKE.relative_to(REPO_ROOT)), str(VALUES.relative_to(REPO_ROOT))} <= set(
        manifests
    )
    for name, docs in manifests.items():
        assert docs, f"{name} holds no document"
        for doc in docs:
            assert isinstance(doc, dict), name
            if name != str(VALUES.relative_to(REPO_ROOT)):
                assert {"apiVersion", "kind", "metadata"} <= set(doc), name


def test_the_chart_is_pinned_to_the_dagster_of_setup_py(setup_arguments):
    dagster = _pins(setup_arguments["install_requires"])["dagster"]
    for document in (VALUES, DEPLOY / "README.md"):
        text = document.read_text()
        assert "dagster/dagster" in text, document
        assert re.findall(r"--version\s+(\S+)", text) == [dagster], document


def test_the_k8s_extra_pins_dagster_k8s_beside_dagster_postgres(setup_arguments):
    postgres = _pins(setup_arguments["install_requires"])["dagster-postgres"]
    assert _pins(setup_arguments["extras_require"]["k8s"]) == {"dagster-k8s": postgres}


def test_the_run_queue_is_the_shipped_one(values):
    shipped = yaml.safe_load(SHIPPED_INSTANCE.read_text())["run_queue"]
    coordinator = values["dagsterDaemon"]["runCoordinator"]
    assert coordinator["enabled"] and coordinator["type"] == "QueuedRunCoordinator"
    queued = coordinator["config"]["queuedRunCoordinator"]
    assert queued["tagConcurrencyLimits"] == shipped["tag_concurrency_limits"]
    assert [limit["key"] for limit in queued["tagConcurrencyLimits"]] == [POST_CALL_LANE_TAG]
    assert queued["maxConcurrentRuns"] == shipped["max_concurrent_runs"]
    assert queued["dequeueIntervalSeconds"] == shipped["dequeue_interval_seconds"]
    assert queued["dequeueUseThreads"] == shipped["dequeue_use_threads"]


def test_run_monitoring_and_retries_are_the_shipped_ones(values):
    shipped = yaml.safe_load(SHIPPED_INSTANCE.read_text())
    daemon = values["dagsterDaemon"]
    monitoring = daemon["runMonitoring"]
    assert {
        "enabled": monitoring["enabled"],
        "start_timeout_seconds": monitoring["startTimeoutSeconds"],
        "cancel_timeout_seconds": monitoring["cancelTimeoutSeconds"],
        "poll_interval_seconds": monitoring["pollIntervalSeconds"],
    } == shipped["run_monitoring"]
    # Dagster's default when the shipped instance says nothing: no resuming in a new process.
    assert monitoring["maxResumeRunAttempts"] == 0
    # The chart's own block is off, so that the one in additionalInstanceConfig is the only one.
    assert daemon["runRetries"]["enabled"] is False
    assert values["additionalInstanceConfig"]["run_retries"] == shipped["run_retries"]
    assert values["telemetry"] == shipped["telemetry"]


def test_dagsters_connections_time_out_like_the_projects(values):
    """Across a network that partitions, Dagster's storage gives up on a lost connection as
    soon as the project's own pools do."""
    from salesops_pipeline.postgres import NETWORK_TIMEOUTS

    assert values["postgresql"]["postgresqlParams"] == NETWORK_TIMEOUTS


def test_runs_are_kubernetes_jobs_configured_like_the_code_server(values):
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    location = _code_location(values)
    assert location["includeConfigInLaunchedRuns"] == {"enabled": True}
    mounted = {mount["name"] for mount in location["volumeMounts"]}
    assert mounted == {volume["name"] for volume in location["volumes"]}
    assert any(
        m["mountPath"] == location["env"][settings.HOME_ENV] for m in location["volumeMounts"]
    )
    # Runs inherit the location's volumes: the launcher listing them too would mount them twice.
    assert values["runLauncher"]["config"]["k8sRunLauncher"]["volumes"] == []


def test_the_image_serves_the_code_location_the_chart_loads(values):
    location = _code_location(values)
    module = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["dagster"][
        "module_name"
    ]
    assert location["dagsterApiGrpcArgs"] == ["-m", module]
    (cmd,) = re.findall(r"^CMD (\[.*\])$", (DEPLOY / "Dockerfile").read_text(), re.MULTILINE)
    command = yaml.safe_load(cmd)
    assert command[:3] == ["dagster", "api", "grpc"]
    assert command[command.index("-m") + 1] == module
    assert int(command[command.index("-p") + 1]) == location["port"]


def test_the_intake_runs_the_code_locations_image(values, manifests):
    image = _code_location(values)["image"]
    (container,) = _intake_deployment(manifests)["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"{image['repository']}:{image['tag']}"


def test_the_intake_is_probed_on_healthz_where_it_listens(manifests):
    deployment = _intake_deployment(manifests)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    command = [*container.get("command", []), *container["args"]]
    assert command[:2] == ["salesops", "serve"], shlex.join(command)
    port = int(command[command.index("--port") + 1])
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert port in named.values()
    for probe in ("readinessProbe", "livenessProbe"):
        get = container[probe]["httpGet"]
        assert get["path"] == "/healthz", probe
        assert named.get(get["port"], get["port"]) == port, probe
    (service,) = [s for s in _kinds(manifests, "Service") if "intake" in s["metadata"]["name"]]
    assert all(
        named.get(p["targetPort"], p["targetPort"]) == port for p in service["spec"]["ports"]
    )
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_no_manifest_holds_a_secret_value(manifests, values):
    secrets_example = str(SECRETS_EXAMPLE.relative_to(REPO_ROOT))
    for name, docs in manifests.items():
        for doc in docs:
            if doc.get("kind") == "Secret":
                assert name == secrets_example, f"{name}: a Secret outside the example"
                assert "data" not in doc, f"{name}: base64 data hides what is committed"
                for key, value in doc["stringData"].items():
                    assert PLACEHOLDER.search(value), f"{name}: {key} is not a placeholder"
                continue
            for entry in _env_entries(doc):
                if SECRET_NAME.search(entry["name"]):
                    assert "value" not in entry, f"{name}: {entry['name']} is written in clear"
                    assert "secretKeyRef" in entry["valueFrom"], f"{name}: {entry['name']}"
            for path, text in _strings(doc):
                match = CREDENTIALS_IN_URL.search(text)
                assert not match or PLACEHOLDER.fullmatch(match[1]), f"{name}{path}"
    location_env = _code_location(values)["env"]
    assert not [key for key in location_env if SECRET_NAME.search(key)]
    assert "postgresqlPassword" not in values["postgresql"]
    assert values["generatePostgresqlPasswordSecret"] is False


def test_every_secret_referenced_is_in_the_example(manifests, values):
    example = {
        name: set(secret["stringData"]) for name, secret in _example_secrets(manifests).items()
    }
    (container,) = _intake_deployment(manifests)["spec"]["template"]["spec"]["containers"]
    for entry in container["env"]:
        ref = entry.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            assert ref["key"] in example[ref["name"]], entry["name"]
    for secret in _code_location(values)["envSecrets"]:
        assert settings.DATABASE_URL_ENV in example[secret["name"]]
    assert "postgresql-password" in example[values["global"]["postgresqlSecretName"]]


def test_each_part_gets_only_the_secrets_it_uses(manifests, values):
    example = {
        name: set(secret["stringData"]) for name, secret in _example_secrets(manifests).items()
    }
    (container,) = _intake_deployment(manifests)["spec"]["template"]["spec"]["containers"]
    intake = {e["name"] for e in container["env"] if "valueFrom" in e}
    dagster = set().union(*(example[s["name"]] for s in _code_location(values)["envSecrets"]))
    assert settings.INTAKE_KEY_ENV in intake
    assert {settings.REMOTE_API_KEY_ENV, settings.ALERT_WEBHOOK_URL_ENV} <= dagster
    assert not intake & set(SECRETS_NOT_NEEDED["intake"])
    assert not dagster & set(SECRETS_NOT_NEEDED["dagster"])


def _scrape_jobs(document) -> list[dict]:
    """The Prometheus scrape jobs of the yaml blocks of a markdown document."""
    blocks = re.findall(r"```yaml\n(.*?)```", document.read_text(), re.DOTALL)
    parsed = [yaml.safe_load(textwrap.dedent(block)) for block in blocks]
    return [job for doc in parsed if isinstance(doc, dict) for job in doc.get("scrape_configs", [])]


def test_the_intake_may_get_a_metrics_token_and_prometheus_sends_it(manifests):
    (container,) = _intake_deployment(manifests)["spec"]["template"]["spec"]["containers"]
    [entry] = [e for e in container["env"] if e["name"] == settings.METRICS_TOKEN_ENV]
    ref = entry["valueFrom"]["secretKeyRef"]
    # Optional: without it the intake runs, and /metrics answers 404.
    assert ref == {"name": "salesops-intake", "key": settings.METRICS_TOKEN_ENV, "optional": True}
    jobs = [
        job for doc in (DEPLOY / "README.md", REPO_ROOT / "README.md") for job in _scrape_jobs(doc)
    ]
    assert len(jobs) == 2
    for job in jobs:
        assert job["authorization"]["type"] == "Bearer"
        assert "metrics-token" in job["authorization"]["credentials_file"]


def _kubernetes_documents() -> list[tuple[str, dict]]:
    return [
        (f"{path}: {document['kind']} {document['metadata']['name']}", document)
        for path, documents in _manifests().items()
        if "/k8s/" in path
        for document in documents
    ]


@pytest.mark.parametrize(
    "document", [d for _, d in _kubernetes_documents()], ids=[i for i, _ in _kubernetes_documents()]
)
def test_every_kubernetes_manifest_validates_strictly(document):
    # Strict: a key the API does not know fails too, where kubectl would drop it silently.
    kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize(
    "spoil",
    [
        pytest.param(lambda d: d["spec"].update(replica=d["spec"].pop("replicas")), id="wrong key"),
        pytest.param(lambda d: d["spec"].update(replicas="three"), id="wrong type"),
        pytest.param(
            lambda d: d["spec"]["template"]["spec"]["containers"][0].update(
                ports=[{"containerPort": "8020"}]
            ),
            id="wrong type, deep",
        ),
    ],
)
def test_a_wrong_key_or_type_fails_the_check(spoil):
    spoiled = copy.deepcopy(_intake_deployment(_manifests()))
    kubernetes_validate.validate(spoiled, KUBERNETES_VERSION, strict=True)  # sound before
    spoil(spoiled)
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(spoiled, KUBERNETES_VERSION, strict=True)
