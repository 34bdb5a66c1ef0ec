"""A realistic tenant database for the benchmarks: many tables of mixed width, indexes.

Per GB of database (heap + indexes), roughly: 60 % a wide-ish SaaS events table (jsonb, text,
numeric; 1.5 M rows) with a customers table beside it, 25 % six narrow metrics tables (4
columns, ~10 M rows together) and 15 % a documents table of ~700-byte text rows. Deterministic
(setseed), generated server-side with generate_series so loading 1 GB takes about a minute,
not an hour of client inserts.
"""

from __future__ import annotations

import time

from dumpsafe.devcluster import Cluster

ROWS_PER_GB = 1_500_000  # events
METRIC_TABLES = 6
METRIC_ROWS_PER_GB = 1_700_000  # per metrics table
DOC_ROWS_PER_GB = 200_000
CHUNK_ROWS = 250_000

SCHEMA = """
CREATE TABLE customers (
    id bigint PRIMARY KEY,
    name text NOT NULL,
    email text NOT NULL,
    plan text NOT NULL,
    settings jsonb NOT NULL,
    created_at timestamptz NOT NULL
);
CREATE TABLE events (
    id bigint PRIMARY KEY,
    customer_id bigint NOT NULL,
    kind text NOT NULL,
    amount numeric(12,2),
    currency text NOT NULL,
    title text NOT NULL,
    body text,
    payload jsonb NOT NULL,
    created_at timestamptz NOT NULL
);
"""

METRICS_SCHEMA = """
CREATE TABLE metrics_{k} (
    id bigint PRIMARY KEY,
    sensor integer NOT NULL,
    value double precision NOT NULL,
    at timestamptz NOT NULL
);
"""
METRICS_SQL = """
INSERT INTO metrics_{k}
SELECT g, (g::int8 * 7919) % 5000, random() * 1000, timestamptz '2024-01-01' + (g || ' seconds')::interval
FROM generate_series({lo}, {hi}) g
"""
DOCS_SCHEMA = """
CREATE TABLE documents (
    id bigint PRIMARY KEY,
    customer_id bigint NOT NULL,
    title text NOT NULL,
    body text NOT NULL
);
"""
DOCS_SQL = """
INSERT INTO documents
SELECT g, 1 + g % {customers}, 'Document ' || g,
       (SELECT string_agg(md5((g * 31 + k)::text), ' ') FROM generate_series(1, 20) k)
FROM generate_series({lo}, {hi}) g
"""

INDEXES = """
CREATE INDEX events_customer_created_idx ON events (customer_id, created_at);
CREATE INDEX events_kind_idx ON events (kind);
CREATE UNIQUE INDEX customers_email_idx ON customers (email);
"""

# words give text realistic (compressible but not trivial) content; md5 adds entropy
WORDS = (
    "'{invoice,payment,refund,order,shipped,delivered,account,upgrade,plan,seat,trial,"
    "renewal,cancelled,pending,failed,retry,webhook,customer,support,ticket,priority,"
    "billing,address,warehouse,parcel,discount,coupon,export,import,report,monthly,annual}'::text[]"
)

CUSTOMERS_SQL = f"""
INSERT INTO customers
SELECT g,
       'Customer ' || g,
       'user' || g || '@' || (ARRAY['example.com','mail.test','corp.example'])[1 + g % 3],
       (ARRAY['free','pro','team','enterprise'])[1 + (g * 7) % 4],
       jsonb_build_object('locale', (ARRAY['en','de','fr','es'])[1 + g % 4],
                          'seats', g % 50, 'beta', g % 5 = 0,
                          'theme', (ARRAY['light','dark'])[1 + g % 2]),
       timestamptz '2023-01-01' + (g || ' minutes')::interval
FROM generate_series(1, %(n)s) g
"""

EVENTS_SQL = f"""
INSERT INTO events
SELECT g,
       1 + (hashint4(g::int) & 2147483647) %% %(customers)s,
       (ARRAY['order.created','order.paid','order.shipped','refund.issued','ticket.opened',
              'ticket.closed','plan.changed','login'])[1 + (g * 13) %% 8],
       round((random() * 2000)::numeric, 2),
       (ARRAY['EUR','USD','GBP'])[1 + g %% 3],
       initcap(w[1 + (g * 7) %% 32]) || ' ' || w[1 + (g * 11) %% 32] || ' #' || g,
       w[1 + (g * 3) %% 32] || ' ' || w[1 + (g * 5) %% 32] || ' ' || w[1 + (g * 17) %% 32] || ' ref '
         || md5(g::text) || ' ' || w[1 + (g * 29) %% 32] || ' ' || w[1 + (g * 31) %% 32],
       jsonb_build_object(
           'ip', '10.' || (g %% 256) || '.' || ((g / 256) %% 256) || '.' || (g * 7 %% 256),
           'agent', (ARRAY['Mozilla/5.0 (X11; Linux x86_64)','Mozilla/5.0 (Macintosh)',
                           'curl/8.4.0','python-requests/2.31'])[1 + g %% 4],
           'tags', jsonb_build_array(w[1 + g %% 32], w[1 + (g * 3) %% 32]),
           'score', round((random() * 100)::numeric, 3),
           'items', (g %% 9) + 1,
           'session', md5((g * 31)::text),
           'trace', substr(md5(random()::text), 1, 24)),
       timestamptz '2024-01-01' + (g || ' seconds')::interval
FROM generate_series(%(lo)s, %(hi)s) g, (SELECT {WORDS} AS w) words
"""


def parse_size(text: str) -> float:
    """'100MB' -> 0.1, '1GB' -> 1.0, '10GB' -> 10.0 (in GB)."""
    t = text.strip().upper().removesuffix("B")
    if t.endswith("G"):
        return float(t[:-1])
    if t.endswith("M"):
        return float(t[:-1]) / 1000
    raise SystemExit(f"bench: size {text!r} not understood (use 100MB, 1GB or 10GB)")


def _chunks(rows: int):
    for lo in range(1, rows + 1, CHUNK_ROWS):
        yield lo, min(rows, lo + CHUNK_ROWS - 1)


def load(cluster: Cluster, dbname: str, size_gb: float, log=print) -> dict:
    """Create and fill ``dbname``; return row counts and the database size."""
    rows = int(ROWS_PER_GB * size_gb)
    customers = max(1000, rows // 50)
    metric_rows = int(METRIC_ROWS_PER_GB * size_gb)
    doc_rows = int(DOC_ROWS_PER_GB * size_gb)
    t0 = time.monotonic()
    cluster.create_database(dbname)
    with cluster.connect(dbname) as c:
        c.execute("SET synchronous_commit = off")
        c.execute("SELECT setseed(0.42)")
        c.execute(SCHEMA)
        c.execute(CUSTOMERS_SQL.replace("%(n)s", str(customers)))
        for lo, hi in _chunks(rows):
            c.execute((EVENTS_SQL % {"customers": customers, "lo": lo, "hi": hi}))
            log(f"  loaded {hi:,}/{rows:,} events ({time.monotonic() - t0:.0f} s)")
        for k in range(METRIC_TABLES):
            c.execute(METRICS_SCHEMA.format(k=k))
            for lo, hi in _chunks(metric_rows):
                c.execute(METRICS_SQL.format(k=k, lo=lo, hi=hi))
            log(f"  loaded {metric_rows:,} rows into metrics_{k} ({time.monotonic() - t0:.0f} s)")
        c.execute(DOCS_SCHEMA)
        for lo, hi in _chunks(doc_rows):
            c.execute(DOCS_SQL.format(customers=customers, lo=lo, hi=hi))
        log(f"  loaded {doc_rows:,} documents ({time.monotonic() - t0:.0f} s)")
        c.execute(INDEXES)
        # set hint bits and visibility now, so the first measured dump does not write pages
        c.execute("VACUUM (FREEZE, ANALYZE)")
        size = c.execute("SELECT pg_database_size(current_database())").fetchone()[0]
    return {"events": rows, "customers": customers, "metrics": metric_rows * METRIC_TABLES, "documents": doc_rows,
            "tables": 3 + METRIC_TABLES, "db_bytes": size, "load_s": time.monotonic() - t0}
