"""``dumpsafe init``: a commented sample ``dumpsafe.toml`` to edit. Never overwrites a file."""

from __future__ import annotations

import os
from pathlib import Path

from dumpsafe.errors import UsageError

SAMPLE = '''\
# dumpsafe.toml: found by --config PATH, else $DUMPSAFE_CONFIG, else ./dumpsafe.toml.
# Edit, then run `dumpsafe config check`: it tests every tenant's connection and every store.
# Relative paths are relative to this file. No secret belongs in this file.

state_dir = ".dumpsafe"             # audit log, tokens, locks, cache (keep it off the backup store)
# spool_dir = "/var/tmp/dumpsafe"   # where restores spool the dump (default <state_dir>/spool)
# notify = ["json://alerts.internal:8080/dumpsafe"]   # apprise URLs: failed runs, max_age breaches
# retention = { last = 3, daily = 7, weekly = 4, monthly = 12 }   # default policy for every tenant

# ---- stores: where backups go (off the data disk) ----------------------------------------
[stores.local]
kind = "local"
path = "backups"                    # better: a separate disk or mount, e.g. /mnt/backups

# [stores.offsite]                  # any S3-compatible store; credentials: the AWS chain (env, profile, role)
# kind = "s3"
# bucket = "acme-backups"
# prefix = "pg/"
# endpoint_url = "https://s3.eu-west-1.amazonaws.com"   # MinIO, Ceph, R2, ... : their URL

# [stores.gcs]                      # credentials: GOOGLE_APPLICATION_CREDENTIALS or the metadata server
# kind = "gcs"
# bucket = "acme-backups-eu"

# ---- tenants: one PostgreSQL server (and optionally an uploads tree) each ------------------
[tenants.acme]
host = "127.0.0.1"
port = 5432
user = "postgres"
password_env = "ACME_PGPASSWORD"    # the password comes from this variable...
# password_file = "/run/secrets/acme"   # ...or from a file (mode 0600)
databases = ["app"]                 # omit to back up every non-template database
# uploads = "/srv/acme/uploads"     # a files tree kept with each backup
# exec = ["ssh", "db1"]             # run pg_dump inside the tenant's host/container:
#                                   # ["docker", "exec", "-i", "pg"], ["incus", "exec", "acme", "--"]
store = "local"
# copy_to = ["offsite"]             # copy each backup to another store (3-2-1)
# schedule = "0 30 2 * * *"         # for `dumpsafe serve`: 02:30:00 (6 fields: seconds first), UTC
# timezone = "Europe/Berlin"
# max_age = "26h"                   # `dumpsafe status` exits 1 when the last success is older
# drill_schedule = "@weekly"        # restore drill of the latest backup
# encrypt_to = ["age1..."]          # from `dumpsafe keygen`: only the tenant can read its backups
'''


def write_sample(path: Path) -> Path:
    """Write the sample to ``path`` (0600); refuse when anything is already there."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise UsageError(f"{path} already exists; dumpsafe init never overwrites (edit it, or pass --config NEW_PATH)") from None
    except OSError as e:
        raise UsageError(f"cannot write {path}: {e.strerror} (create its directory or choose another --config)") from None
    with os.fdopen(fd, "w") as fh:
        fh.write(SAMPLE)
    return path
