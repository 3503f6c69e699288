"""The deployment files, checked offline: Kubernetes manifests against the bundled
Kubernetes JSON schemas, the compose file's shape, and the Dockerfile's hygiene."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from tests.fixtures.backend import REPO_ROOT

DEPLOY = REPO_ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
# The oldest Kubernetes we support (the preStop `sleep` action is on by default from 1.30).
KUBERNETES_VERSION = "1.30.0"
SERVICES = {"auth": 8001, "registry": 8002, "sync": 8003}
WORKLOADS = [*SERVICES, "worker"]


def _documents() -> list[tuple[Path, dict]]:
    found = []
    for path in sorted(KUBERNETES.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document and document.get("kind") != "Kustomization":
                found.append((path, document))
    return found


def _by_kind(kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for _, d in _documents() if d["kind"] == kind}


@pytest.mark.parametrize(
    "path, document", _documents(),
    ids=lambda value: value.name if isinstance(value, Path) else value.get("kind"),
)
def test_every_manifest_passes_the_kubernetes_schema(path: Path, document: dict) -> None:
    kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_the_validator_rejects_a_broken_manifest() -> None:
    broken = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
              "spec": {"replicas": "two", "unknownField": 1}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    files = {p.name for p in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files


def test_each_workload_is_probed_limited_scaled_and_protected() -> None:
    deployments = _by_kind("Deployment")
    autoscalers, budgets, services = (
        _by_kind("HorizontalPodAutoscaler"), _by_kind("PodDisruptionBudget"), _by_kind("Service"),
    )
    for name in WORKLOADS:
        deployment = deployments[f"koppel-{name}"]
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["command"][0] == "koppel"
        assert container["resources"]["requests"] and container["resources"]["limits"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        sources = {next(iter(s.values()))["name"] for s in container["envFrom"]}
        assert sources == {"koppel-config", "koppel-secrets"}
        assert autoscalers[f"koppel-{name}"]["spec"]["scaleTargetRef"]["name"] == f"koppel-{name}"
        assert budgets[f"koppel-{name}"]["spec"]["selector"]["matchLabels"] == (
            deployment["spec"]["selector"]["matchLabels"])
    for name, port in SERVICES.items():
        container = deployments[f"koppel-{name}"]["spec"]["template"]["spec"]["containers"][0]
        assert container["command"][:3] == ["koppel", "serve", name]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["ports"][0]["containerPort"] == port
        assert services[f"koppel-{name}"]["spec"]["ports"][0]["port"] == port
    worker = deployments["koppel-worker"]["spec"]["template"]["spec"]["containers"][0]
    assert worker["command"][:2] == ["koppel", "worker"]


def test_migration_job_config_and_external_stores() -> None:
    (job,) = _by_kind("Job").values()
    assert job["spec"]["template"]["spec"]["containers"][0]["command"] == [
        "koppel", "db", "upgrade"]
    config = _by_kind("ConfigMap")["koppel-config"]["data"]
    assert config["KOPPEL_ENV"] == "production"
    assert config["KOPPEL_ISSUER"].startswith("https://")
    assert all(key.startswith("KOPPEL_") for key in config)
    secret = _by_kind("Secret")["koppel-secrets"]["stringData"]
    assert {"KOPPEL_DATABASE_URL", "KOPPEL_KEYS", "KOPPEL_ACTIVE_KEY_ID",
            "KOPPEL_DIGEST_KEY"} <= set(secret)
    # Secrets in the repository are placeholders only.
    assert "CHANGE-ME" in secret["KOPPEL_DIGEST_KEY"]
    external = {n: s for n, s in _by_kind("Service").items() if s["spec"].get("type")}
    assert {s["spec"]["type"] for s in external.values()} == {"ExternalName"}
    assert set(external) == {"koppel-postgres", "koppel-redis"}


def _compose() -> dict:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())


def test_compose_runs_every_process_from_one_image_after_the_migration() -> None:
    services = _compose()["services"]
    assert {"postgres", "redis", "migrate", *WORKLOADS} <= set(services)
    assert services["migrate"]["command"] == ["koppel", "db", "upgrade"]
    assert services["worker"]["command"][:2] == ["koppel", "worker"]
    for name in WORKLOADS:
        service = services[name]
        assert service["image"] == services["migrate"]["image"]
        assert service["build"]["dockerfile"] == "deploy/Dockerfile"
        assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert service["healthcheck"]["test"]
        env = service["environment"]
        assert all(key.startswith("KOPPEL_") for key in env)
        assert {"KOPPEL_DATABASE_URL", "KOPPEL_REDIS_URL", "KOPPEL_KEYS",
                "KOPPEL_ACTIVE_KEY_ID", "KOPPEL_DIGEST_KEY"} <= set(env)
        # Keys come from the operator's environment, never from the file.
        for key in ("KOPPEL_KEYS", "KOPPEL_DIGEST_KEY"):
            assert env[key].startswith("${") and ":?" in env[key]
    for name, port in SERVICES.items():
        service = services[name]
        assert service["command"][:3] == ["koppel", "serve", name]
        assert str(port) in service["command"]
        assert f"127.0.0.1:{port}/readyz" in " ".join(service["healthcheck"]["test"])
    for store in ("postgres", "redis"):
        assert services[store]["healthcheck"]["test"]


def test_dockerfile_is_multi_stage_non_root_and_holds_no_secret() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    instructions = [line.strip() for line in text.splitlines()
                    if line.strip() and not line.lstrip().startswith("#")]
    stages = [line for line in instructions if line.upper().startswith("FROM ")]
    assert len(stages) >= 2
    assert all(line.split()[1] == "python:3.11-slim" for line in stages)
    users = [line.split()[1] for line in instructions if line.upper().startswith("USER ")]
    assert users, "the image must switch to a non-root user"
    assert users[-1].split(":")[0] not in {"root", "0"}
    # The last USER comes after the last FROM: the runtime stage runs unprivileged.
    last_from = max(i for i, line in enumerate(instructions) if line.upper().startswith("FROM "))
    assert any(i > last_from for i, line in enumerate(instructions)
               if line.upper().startswith("USER "))
    for secret in ("KOPPEL_KEYS", "KOPPEL_DIGEST_KEY", "KOPPEL_DATABASE_URL",
                   "KOPPEL_ACTIVE_KEY_ID", "PASSWORD"):
        assert secret not in text.upper() or not re.search(
            rf"(ENV|ARG)\s+[^\n]*{secret}", text, re.IGNORECASE), secret
    assert not re.search(r"COPY\s+[^\n]*(\.env|keys\.json|var/)", text)
    ignored = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    assert {".env", "var", ".git"} <= set(ignored)
    assert re.search(r"pip install[^\n]*/app", text)


def test_the_image_holds_every_package_of_the_project() -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    packages = [p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]]
    text = (DEPLOY / "Dockerfile").read_text()
    assert "worker" in packages
    for package in packages:
        assert re.search(rf"^COPY {package} \./{package}$", text, re.MULTILINE), package
