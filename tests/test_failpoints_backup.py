"""kill -9 at every failpoint of backup, copy and prune (local store and S3 on moto), then
the next command: nothing partial is listed, nothing a dead writer left remains, every
backup still listed verifies, and the audit log has a line for the killed write."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from conftest import Env
from dumpsafe.failpoints import ENV, points
from dumpsafe.storage import open_store
from stores import fake_aws_env, gcs_server, s3_server, store_section  # noqa: F401  (fixtures)
from waiting import wait_stopped

BACKUP_POINTS = points("backup")
COPY_POINTS = points("copy")
PRUNE_POINTS = points("delete") + points("prune")
KINDS = ["local", "s3"]


def _toml(name: str, section: dict) -> str:
    return f"[stores.{name}]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in section.items())


def setup(env: Env, tmp_path, request, kind: str, *, second: str | None = None, big_upload: bool = False,
          retention: str = "") -> None:
    env.stores_toml = _toml("main", store_section(kind, tmp_path, request))
    if second:
        env.stores_toml += _toml("second", store_section(second, tmp_path, request))
    env.tenant_extra = f'store = "main"\ninclude_globals = true\n{retention}'
    if big_upload:  # incompressible and over one 5 MiB part: an S3 multipart upload
        (env.uploads / "big.bin").write_bytes(os.urandom(9 << 20))
    env.write_config()


def run_killed(env: Env, point: str, *args: str) -> subprocess.Popen:
    proc = subprocess.run(env.cli_argv(*args), env={**env.subprocess_env(), ENV: f"{point}=kill"},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, (point, proc.returncode, proc.stderr)
    return proc


def store_keys(env: Env, name: str = "main") -> list[str]:
    """Every key but the history's (issue 15: evidence outlives backups) and the catalog's change
    notes and manifests (catalog/: see dumpsafe.manifest)."""
    return sorted(o.key for o in open_store(env.config(), name).list() if not o.key.startswith(("history/", "catalog/")))


def assert_clean(env: Env, name: str = "main") -> list[str]:
    """Every object belongs to a listed backup; no marker, temp file or unfinished upload."""
    listed = [r["id"] for r in env.cli("backup", "list", "--store", name, "--json").json()]
    keys = store_keys(env, name)
    # issue 16: a lease keeps one (released) entry per name; nothing else of it stays behind
    leases = [k.rsplit("/", 1)[0] for k in keys if k.startswith("leases/")]
    assert len(leases) == len(set(leases)), f"superseded lease entries left: {leases}"
    for key in (k for k in keys if not k.startswith(("leases/", "claims/"))):
        owner = key.removeprefix("records/").removesuffix(".json") if key.startswith("records/") else (
            key.split("/")[1] if key.startswith("objects/") else None)
        assert owner in listed, f"{key} in store {name!r} belongs to no listed backup ({listed})"
    st = open_store(env.config(), name)
    assert list(st.unfinished()) == [], "unfinished uploads left"
    if st.kind == "local":
        assert not [p for p in st.root.rglob("*") if ".tmp-" in p.name]
    return listed


def assert_all_verify(env: Env, ids: list[str]) -> None:
    for bid in ids:
        r = env.cli("backup", "verify", bid)
        assert r.code == 0, (bid, r.err)


def audit(env: Env) -> list[dict]:
    return [json.loads(x) for x in (env.state_dir / "audit.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("kind", [*KINDS, "gcs"])
@pytest.mark.parametrize("point", BACKUP_POINTS)
def test_kill_during_backup(point, kind, env, tmp_path, request):
    setup(env, tmp_path, request, kind)
    earlier = env.cli("backup", "create", "acme", "--json").json()[0]["id"]
    run_killed(env, point, "backup", "create", "acme")
    committed = point in ("backup.after_record_commit", "backup.after_audit")
    listed = [r["id"] for r in env.cli("backup", "list", "--json").json()]
    assert len(listed) == (2 if committed else 1) and earlier in listed  # nothing partial listed
    killed = next((i for i in listed if i != earlier), None)

    nxt = env.cli("backup", "create", "acme", "--json")  # the next run sweeps what the dead one left
    assert nxt.code == 0, nxt.err
    ids = assert_clean(env)
    assert len(ids) == len(listed) + 1
    assert_all_verify(env, ids)
    if killed:  # committed but killed before its audit line: the line is there now, once
        lines = [e for e in audit(env) if e["backup_id"] == killed and e["action"] == "create"]
        assert [e["outcome"] for e in lines] == ["ok"]
    else:
        dead = [e for e in audit(env) if e["action"] == "create" and e.get("recovered")]
        assert len(dead) == 1 and dead[0]["outcome"] == "failed" and "interrupted" in dead[0]["error"]


def test_kill_with_a_multipart_upload_in_flight_on_s3(env, tmp_path, request):
    setup(env, tmp_path, request, "s3", big_upload=True)
    run_killed(env, "store.after_multipart_start", "backup", "create", "acme")
    st = open_store(env.config(), "main")
    assert len(list(st.unfinished())) == 1
    assert env.cli("backup", "list", "--json").json() == []
    r = env.cli("recover", "--json")
    assert r.code == 0, r.err
    assert r.json()["main"]["aborted_uploads"] == 1 and len(r.json()["main"]["removed_uncommitted"]) == 1
    assert assert_clean(env) == []


def test_two_concurrent_creates_on_s3_both_succeed(env, tmp_path, request):
    """The first is frozen with its multipart upload in flight while a second create runs
    (and sweeps): the second must not abort the first's upload."""
    setup(env, tmp_path, request, "s3", big_upload=True)
    first = subprocess.Popen(env.cli_argv("backup", "create", "acme", "--json"),
                             env={**env.subprocess_env(), ENV: "store.after_multipart_start=stop"},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_stopped(first)
        second = env.cli("backup", "create", "acme", "--json")
        assert second.code == 0, second.err
    finally:
        os.kill(first.pid, signal.SIGCONT)
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    ids = {json.loads(out)[0]["id"], second.json()[0]["id"]}
    assert set(assert_clean(env)) == ids
    assert_all_verify(env, sorted(ids))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("point", COPY_POINTS)
def test_kill_during_copy(point, kind, env, tmp_path, request):
    setup(env, tmp_path, request, "local", second=kind)
    bid = env.cli("backup", "create", "acme", "--json").json()[0]["id"]
    run_killed(env, point, "backup", "copy", bid, "--to", "second")
    copied = point == "copy.after_record_commit"
    assert [r["id"] for r in env.cli("backup", "list", "--store", "second", "--json").json()] == ([bid] if copied else [])
    assert env.cli("recover").code == 0
    assert assert_clean(env, "second") == ([bid] if copied else [])
    r = env.cli("backup", "copy", bid, "--to", "second")  # the copy can simply be run again
    assert r.code == 0, r.err
    assert assert_clean(env, "second") == [bid] and assert_clean(env, "main") == [bid]
    assert env.cli("backup", "get", bid, "--json").json()["copies"] == ["second"]
    r = env.cli("backup", "verify", bid)
    assert r.code == 0, r.err
    assert env.service().verify(bid).last_verification.result == "passed"
    copy = env.service().get(bid, "second")
    assert copy.store == "second" and copy.objects == env.service().get(bid, "main").objects


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("point", PRUNE_POINTS)
def test_kill_during_prune(point, kind, env, tmp_path, request):
    setup(env, tmp_path, request, kind, retention="retention = { last = 1 }")
    ids = [env.cli("backup", "create", "acme", "--json").json()[0]["id"] for _ in range(3)]
    run_killed(env, point, "prune")
    listed = [r["id"] for r in env.cli("backup", "list", "--json").json()]
    assert ids[2] in listed and set(listed) <= set(ids)
    assert_all_verify(env, listed)  # whatever is still listed is whole
    r = env.cli("prune")  # the next prune finishes the job
    assert r.code == 0, r.err
    assert assert_clean(env) == [ids[2]]
    assert_all_verify(env, [ids[2]])
    deletes = [e for e in audit(env) if e["action"] == "delete" and e["outcome"] == "ok"]
    assert sorted({e["backup_id"] for e in deletes}) == sorted(ids[:2])


def test_s3_unreachable_mid_upload_prints_one_error_and_the_parts_are_swept_later(env, tmp_path, request):
    """The upload cannot be aborted either: no warning with URLs or upload ids before the
    error; the dead writer's marker lets the next command abort the upload."""
    from stores import TcpProxy

    server = request.getfixturevalue("s3_server")
    proxy = TcpProxy(server.port)
    section = store_section("s3", tmp_path, request)
    env.stores_toml = _toml("main", {**section, "endpoint_url": proxy.url, "max_attempts": 2, "connect_timeout_s": 2})
    env.tenant_extra = 'store = "main"'
    (env.uploads / "big.bin").write_bytes(os.urandom(9 << 20))
    env.write_config()
    proc = subprocess.Popen(env.cli_argv("backup", "create", "acme"),
                            env={**env.subprocess_env(), ENV: "store.after_multipart_start=stop"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_stopped(proc)
        proxy.cut()
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1
    assert err.count("\n") == 1 and err.startswith("error: store 'main': cannot reach "), err
    assert "upload" not in err.lower().replace("uploads", ""), err

    env.stores_toml = _toml("main", section)  # the server is reachable again
    env.write_config()
    st = open_store(env.config(), "main")
    assert len(list(st.unfinished())) == 1
    r = env.cli("recover", "--json")
    assert r.code == 0 and r.json()["main"]["aborted_uploads"] == 1, r.out
    assert assert_clean(env) == []


def test_serve_recovers_at_start(env):
    """A backup killed after its dump: serving starts by sweeping what it left."""
    import httpx

    from stores import free_port

    run_killed(env, "backup.after_dump_commit", "backup", "create", "acme")
    assert [k for k in store_keys(env, "local") if k.startswith("objects/")]
    port = free_port()
    server = subprocess.Popen(env.cli_argv("serve", "--port", str(port), "--no-scheduler"), env=env.subprocess_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None and time.monotonic() < deadline
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        assert store_keys(env, "local") == []
    finally:
        server.terminate()
        log, _ = server.communicate(timeout=30)
    assert "store 'local': 1 uncommitted backup(s) removed" in log, log


def test_error_action_fails_cleanly_and_a_typo_is_refused(env, monkeypatch):
    monkeypatch.setenv(ENV, "backup.after_dump_commit=error")
    r = env.cli("backup", "create", "acme")
    assert r.code == 1 and r.err.startswith("error: failpoint backup.after_dump_commit triggered"), r.err
    assert env.cli("backup", "list", "--json").json() == []
    assert store_keys(env, "local") == []  # the failed write removed its objects and its marker
    assert audit(env)[-1]["outcome"] == "failed"
    monkeypatch.setenv(ENV, "backup.after_dump_comit=kill")
    r = env.cli("backup", "create", "acme")
    assert r.code == 2 and "unknown failpoint 'backup.after_dump_comit'" in r.err, r.err
