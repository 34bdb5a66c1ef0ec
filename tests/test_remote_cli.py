"""`--server`: the same CLI commands over REST, the same output, the same errors and exit codes.
The token travels only in $DUMPSAFE_TOKEN, never in argv."""

from __future__ import annotations

import subprocess

import pytest


@pytest.fixture
def remote(served, monkeypatch):
    """The served env's CLI, pointed at the live server with the acme write token."""
    monkeypatch.setenv("DUMPSAFE_SERVER", served.url)
    monkeypatch.setenv("DUMPSAFE_TOKEN", served.tokens["write"])
    return served


def test_round_trip_create_list_get_delete(remote):
    env = remote.env
    made = env.cli("backup", "create", "acme", "--no-uploads", "--label", "remote", "--json")
    assert made.code == 0, made.err
    rec = made.json()[0]
    assert rec["tenant"] == "acme" and rec["label"] == "remote"
    # the server wrote it, with the token's id as the actor
    line = [e for e in remote.service.audit.entries() if e["backup_id"] == rec["id"]][-1]
    assert line["actor"] == remote.token_ids["write"]

    listed = env.cli("backup", "list", "--json").json()
    assert rec["id"] in [r["id"] for r in listed] and {r["tenant"] for r in listed} == {"acme"}
    assert env.cli("backup", "get", rec["id"], "--json").json() == rec
    table = env.cli("backup", "list")
    assert table.code == 0 and rec["id"] in table.out

    gone = env.cli("backup", "delete", rec["id"], "--yes")
    assert gone.code == 0 and f"deleted {rec['id']}" in gone.err
    assert rec["id"] not in [r.id for r in remote.service.list("acme")]


def test_output_is_identical_to_local(remote, monkeypatch):
    bid = remote.service.create("acme", uploads=False)[0].id
    over_rest = remote.env.cli("backup", "get", bid)
    monkeypatch.delenv("DUMPSAFE_SERVER")
    local = remote.env.cli("backup", "get", bid)
    # the one difference: a tenant token is never shown a host path (issue 12)
    where = remote.service.get(bid).location
    assert where in local.out and where not in over_rest.out
    assert over_rest.code == local.code == 0
    assert over_rest.out.split() == local.out.replace(where, f"dumpsafe://local/{bid}").split()  # column widths differ


def test_errors_keep_their_message_and_exit_code(remote, monkeypatch):
    env = remote.env
    beta_id = remote.service.create("beta", uploads=False)[0].id
    hidden = env.cli("backup", "get", beta_id)
    assert hidden.code == 1 and f"backup {beta_id!r} not found" in hidden.err
    for args in (("backup", "get", "bad id"), ("backup", "list", "--store", "nostore"),
                 ("backup", "create", "acme", "--database", "nodb"), ("backup", "get", "acme.x.20260101T000000Z.abcdefgh")):
        over_rest = env.cli(*args)
        with monkeypatch.context() as m:
            m.delenv("DUMPSAFE_SERVER")
            local = env.cli(*args)
        # a tenant token is not told the names of every configured store (issue 12)
        local_err = local.err.replace(" (configured stores: local, offsite)", "")
        assert (over_rest.code, over_rest.err) == (local.code, local_err) and local.code in (1, 2), args

    monkeypatch.setenv("DUMPSAFE_TOKEN", remote.tokens["read"])
    denied = env.cli("backup", "create", "acme", "--no-uploads")
    assert denied.code == 1 and "lacks the backups:create scope" in denied.err

    monkeypatch.setenv("DUMPSAFE_TOKEN", remote.tokens["bad"])
    r = env.cli("backup", "list")
    assert r.code == 1 and "invalid token" in r.err and remote.tokens["bad"] not in r.err

    monkeypatch.delenv("DUMPSAFE_TOKEN")
    r = env.cli("backup", "list")
    assert r.code == 2 and "DUMPSAFE_TOKEN" in r.err

    monkeypatch.setenv("DUMPSAFE_TOKEN", remote.tokens["write"])
    monkeypatch.setenv("DUMPSAFE_SERVER", "http://127.0.0.1:9")
    r = env.cli("backup", "list")
    assert r.code == 1 and "cannot reach dumpsafe server" in r.err and "Traceback" not in r.err


def test_installed_entry_point_over_rest_keeps_the_token_out_of_argv(remote):
    env = remote.env
    proc_env = env.subprocess_env() | {"DUMPSAFE_SERVER": remote.url, "DUMPSAFE_TOKEN": remote.tokens["read"]}
    del proc_env["ACME_PGPASSWORD"]  # the client needs no database password, nor a config file
    argv = [a for a in env.cli_argv("backup", "list", "acme", "--json") if a not in ("--config", str(env.config_path))]
    assert not any(remote.tokens["read"] in a for a in argv)
    out = subprocess.run(argv, env=proc_env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert '"tenant": "acme"' in out.stdout and remote.tokens["read"] not in out.stdout + out.stderr


def test_a_feature_without_a_route_is_one_sentence_not_a_traceback(remote):
    from dumpsafe.errors import UsageError
    from dumpsafe.fronts.remote import RemoteService

    svc = RemoteService(remote.url, remote.tokens["read"])
    with pytest.raises(UsageError, match="not available with --server"):
        svc.save_record(None)
    with pytest.raises(AttributeError):
        svc._private
    assert [r.tenant for r in svc.list()] and {r.tenant for r in svc.list()} == {"acme"}
