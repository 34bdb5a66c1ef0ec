"""deploy/kubernetes-fleet (issue 16): serve + N workers + the queue database's secret pass the
Kubernetes schema, and the config they share loads with a queue whose password the Secret holds."""

from __future__ import annotations

import tomllib
from pathlib import Path

import kubernetes_validate
import yaml

from dumpsafe.config_load import config_from_dict

FLEET = Path(__file__).resolve().parent.parent / "deploy" / "kubernetes-fleet"


def _docs() -> dict[tuple[str, str], dict]:
    out = {}
    for path in sorted(FLEET.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            for d in yaml.safe_load_all(path.read_text()):
                if d:
                    out[(d["kind"], d["metadata"]["name"])] = d
    return out


def test_fleet_manifests_pass_the_schema_and_are_all_listed():
    docs = _docs()
    assert {("Deployment", "dumpsafe"), ("Deployment", "dumpsafe-worker"), ("Secret", "dumpsafe-fleet-secrets"),
            ("ConfigMap", "dumpsafe-fleet-config"), ("Service", "dumpsafe")} <= set(docs)
    for d in docs.values():
        kubernetes_validate.validate(d, "1.30", strict=True)
    listed = yaml.safe_load((FLEET / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == sorted(p.name for p in FLEET.glob("*.yaml") if p.name != "kustomization.yaml")


def test_workers_and_serve_share_a_config_with_a_queue_and_its_secret(tmp_path):
    docs = _docs()
    cfg = config_from_dict(tomllib.loads(docs[("ConfigMap", "dumpsafe-fleet-config")]["data"]["dumpsafe.toml"]),
                           tmp_path / "dumpsafe.toml")
    assert cfg.queue and cfg.queue_password_env and ":" not in cfg.queue.split("@")[0].split("//")[1]
    secret = docs[("Secret", "dumpsafe-fleet-secrets")]["stringData"]
    assert {cfg.queue_password_env} | {t.password_env for t in cfg.tenants.values()} <= set(secret)
    workers = docs[("Deployment", "dumpsafe-worker")]["spec"]
    assert workers["replicas"] >= 2
    (w,) = workers["template"]["spec"]["containers"]
    assert w["args"][:3] == ["--config", "/etc/dumpsafe/dumpsafe.toml", "worker"] and "--concurrency" in w["args"]
    (s,) = docs[("Deployment", "dumpsafe")]["spec"]["template"]["spec"]["containers"]
    assert "serve" in s["args"] and "--no-scheduler" not in s["args"]
    for c in (w, s):
        assert c["envFrom"] == [{"secretRef": {"name": "dumpsafe-fleet-secrets"}}]
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
