"""deploy/: the Kubernetes manifests pass the Kubernetes schema, the compose file wires app,
postgres, an S3-compatible store and dumpsafe around one uploads volume, the configs they
carry load, the systemd unit is hardened, the Dockerfile is what the README says, and the
install script the image uses runs on this host. (The image itself is not built here.)"""

from __future__ import annotations

import configparser
import os
import re
import subprocess
import tomllib
from pathlib import Path

import httpx
import kubernetes_validate
import yaml

from dumpsafe.config_load import config_from_dict, load_config

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"


def _docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _k8s() -> dict[tuple[str, str], dict]:
    docs = {}
    for path in sorted((DEPLOY / "kubernetes").glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for d in _docs(path):
            docs[(d["kind"], d["metadata"]["name"])] = d
    return docs


def test_kubernetes_manifests_pass_the_schema():
    docs = _k8s()
    assert {("ConfigMap", "dumpsafe-config"), ("Secret", "dumpsafe-secrets"), ("PersistentVolumeClaim", "dumpsafe-state"),
            ("Deployment", "dumpsafe"), ("Service", "dumpsafe")} <= set(docs)
    for d in docs.values():
        kubernetes_validate.validate(d, "1.30", strict=True)
    listed = yaml.safe_load((DEPLOY / "kubernetes" / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == sorted(p.name for p in (DEPLOY / "kubernetes").glob("*.yaml") if p.name != "kustomization.yaml")


def test_kubernetes_deployment_serves_with_the_config_secret_and_state(tmp_path):
    docs = _k8s()
    text = docs[("ConfigMap", "dumpsafe-config")]["data"]["dumpsafe.toml"]
    cfg = config_from_dict(tomllib.loads(text), tmp_path / "dumpsafe.toml")
    assert str(cfg.state_dir) == "/var/lib/dumpsafe"
    secret = docs[("Secret", "dumpsafe-secrets")]["stringData"]
    assert {t.password_env for t in cfg.tenants.values()} <= set(secret)

    pod = docs[("Deployment", "dumpsafe")]["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["args"][:2] == ["--config", "/etc/dumpsafe/dumpsafe.toml"] and "serve" in c["args"]
    assert c["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["envFrom"] == [{"secretRef": {"name": "dumpsafe-secrets"}}]
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert mounts["config"] == "/etc/dumpsafe" and volumes["config"]["configMap"]["name"] == "dumpsafe-config"
    assert mounts["state"] == str(cfg.state_dir) and volumes["state"]["persistentVolumeClaim"]["claimName"] == "dumpsafe-state"
    assert pod["securityContext"]["runAsNonRoot"] and c["securityContext"]["readOnlyRootFilesystem"]


def test_exported_cronjobs_use_the_same_configmap_secret_and_claim(tmp_path):
    from dumpsafe.schedule_export import export

    text = _k8s()[("ConfigMap", "dumpsafe-config")]["data"]["dumpsafe.toml"]
    cfg = config_from_dict(tomllib.loads(text), tmp_path / "dumpsafe.toml")
    (job,) = [d for d in yaml.safe_load_all(export(cfg, Path("/x"), "kubernetes").text) if d]
    kubernetes_validate.validate(job, "1.30", strict=True)
    pod = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    names = {v["name"]: v for v in pod["volumes"]}
    assert names["config"]["configMap"]["name"] == "dumpsafe-config"
    assert names["state"]["persistentVolumeClaim"]["claimName"] == "dumpsafe-state"
    assert pod["containers"][0]["envFrom"] == [{"secretRef": {"name": "dumpsafe-secrets"}}]


def test_compose_sidecar_shares_the_uploads_and_backs_up_to_s3():
    compose = yaml.safe_load((DEPLOY / "compose" / "compose.yaml").read_text())
    services = compose["services"]
    assert {"app", "postgres", "minio", "dumpsafe"} <= set(services)
    assert {"uploads", "pgdata", "s3data", "dumpsafe-state"} <= set(compose["volumes"])
    ds = services["dumpsafe"]
    assert ds["command"][0] == "serve" and ds["build"]["dockerfile"] == "deploy/Dockerfile"
    assert (DEPLOY / "compose" / ds["build"]["context"] / ds["build"]["dockerfile"]).resolve() == DEPLOY / "Dockerfile"
    mounts = {v.split(":")[0]: v.split(":")[1] for v in ds["volumes"]}
    app_mounts = {v.split(":")[0] for v in services["app"]["volumes"]}
    assert "uploads" in app_mounts and "uploads" in mounts  # the sidecar sees the app's files
    cfg = load_config(DEPLOY / "compose" / "dumpsafe.toml")
    assert mounts["./dumpsafe.toml"] == ds["environment"]["DUMPSAFE_CONFIG"]
    (tenant,) = cfg.tenants.values()
    assert str(tenant.uploads) == mounts["uploads"]
    assert tenant.host in services and tenant.password_env in ds["environment"] and tenant.schedule
    store = cfg.stores[tenant.store]
    assert store.kind == "s3" and store.endpoint_url == "http://minio:9000"
    assert "minio" in services and store.bucket in services["create-bucket"]["command"][0]
    assert mounts["dumpsafe-state"] == str(cfg.state_dir)
    assert ds["depends_on"]["postgres"]["condition"] == "service_healthy"
    env_example = (DEPLOY / "compose" / ".env.example").read_text()
    for var in re.findall(r"\$\{(\w+)", (DEPLOY / "compose" / "compose.yaml").read_text()):
        assert f"{var}=" in env_example, var


def test_systemd_unit_is_hardened_and_takes_secrets_as_credentials():
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(DEPLOY / "systemd" / "dumpsafe.service")
    svc = unit["Service"]
    assert svc["ExecStart"].split()[0] == "/opt/dumpsafe/bin/dumpsafe" and " serve " in svc["ExecStart"]
    assert svc["ProtectSystem"] == "strict" and svc["NoNewPrivileges"] == "true" and svc["PrivateTmp"] == "true"
    assert "/var/lib/dumpsafe" in svc["ReadWritePaths"].split()
    assert svc["LoadCredential"].startswith("acme-pgpassword:")
    assert "/run/credentials/dumpsafe.service/acme-pgpassword" in (DEPLOY / "systemd" / "dumpsafe.service").read_text()
    assert svc["User"] == "dumpsafe" and svc["UMask"] == "0077"


def test_dockerfile_is_slim_non_root_and_healthchecked():
    text = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.\d+-slim", text, re.M)
    assert "deploy/install.sh" in text and "RUN bash /usr/local/lib/dumpsafe/install.sh" in text
    assert re.search(r"^USER 10001", text, re.M)
    assert '/healthz' in re.search(r"^HEALTHCHECK.*(?:\n .*)*", text, re.M).group(0)
    assert 'ENTRYPOINT ["dumpsafe"]' in text and 'CMD ["serve"' in text
    for path in re.findall(r"^COPY (.+) \S+$", text, re.M):
        for part in path.split():
            assert (ROOT / part).exists(), part


def _installed_majors() -> list[str]:
    return sorted(p.parent.parent.name for p in Path("/usr/lib/postgresql").glob("*/bin/pg_dump"))


def test_install_script_runs_on_this_host_and_installs_only_what_is_missing(tmp_path):
    majors = _installed_majors()
    assert majors  # scripts/ensure-postgres.sh put at least one here
    env = dict(os.environ, PG_MAJORS=" ".join(majors))
    r = subprocess.run(["bash", str(DEPLOY / "install.sh")], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    for m in majors:
        assert f"postgresql-client-{m}: present" in r.stdout
        assert f"(PostgreSQL) {m}." in r.stdout
    assert "would run" not in r.stdout
    # a major that is missing: the apt steps it would take, dry (nothing changes on this host)
    env.update(PG_MAJORS=f"{majors[0]} 99", DRY_RUN="1", DUMPSAFE_PREFIX=str(tmp_path / "venv"))
    r = subprocess.run(["bash", str(DEPLOY / "install.sh"), str(ROOT)], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "install -y -qq --no-install-recommends postgresql-client-99" in r.stdout
    assert f"postgresql-client-{majors[0]}" not in r.stdout.split("would run")[-1]
    assert f"would run: python3 -m venv {tmp_path / 'venv'}" in r.stdout and not (tmp_path / "venv").exists()


def test_api_docs_routes_are_off_and_openapi_stays(served):
    with httpx.Client(base_url=served.url, timeout=10) as client:
        assert client.get("/docs").status_code == 404
        assert client.get("/redoc").status_code == 404
        assert client.get("/openapi.json").status_code == 200
