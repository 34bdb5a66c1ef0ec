def test_cli_backup_roundtrip_smoke(env):
    r = env.cli("backup", "create", "acme", "--json")
    assert r.code == 0, r.err
    rec = r.json()[0]
    assert rec["tenant"] == "acme" and rec["tables"]["public.orders"] == 800
