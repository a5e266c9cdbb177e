"""The registry's SQLite schema, versioned with `PRAGMA user_version`.

A new version appends its statements to `MIGRATIONS`; `migrate` runs those a file has not seen yet.
"""

from __future__ import annotations

import sqlite3

from emulator.errors import ConfigError

_VERSION_1 = """
CREATE TABLE certificates (
    certificate_id TEXT PRIMARY KEY,
    certificate_pem TEXT NOT NULL,
    status TEXT NOT NULL,
    owner TEXT NOT NULL,
    token_sha256 TEXT UNIQUE,
    token_redeemed_at REAL,
    created_at REAL NOT NULL
);
-- expire_pending() runs on every Create* and RegisterThing.
CREATE INDEX certificates_by_status_age ON certificates (status, created_at);
CREATE TABLE things (
    thing_name TEXT PRIMARY KEY,
    attributes TEXT NOT NULL,
    thing_type_name TEXT,
    billing_group TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE thing_groups (
    thing_name TEXT NOT NULL REFERENCES things ON DELETE CASCADE,
    group_name TEXT NOT NULL,
    PRIMARY KEY (thing_name, group_name)
);
CREATE TABLE policies (
    policy_name TEXT PRIMARY KEY,
    policy_document TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE certificate_policies (
    certificate_id TEXT NOT NULL REFERENCES certificates ON DELETE CASCADE,
    policy_name TEXT NOT NULL REFERENCES policies ON DELETE CASCADE,
    PRIMARY KEY (certificate_id, policy_name)
);
CREATE TABLE thing_principals (
    thing_name TEXT NOT NULL REFERENCES things ON DELETE CASCADE,
    certificate_id TEXT NOT NULL REFERENCES certificates ON DELETE CASCADE,
    PRIMARY KEY (thing_name, certificate_id)
);
CREATE TABLE template_uses (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    template_name TEXT NOT NULL,
    certificate_id TEXT NOT NULL,
    thing_name TEXT NOT NULL,
    used_at REAL NOT NULL
);
"""

# The control plane: a thing's id and version (DescribeThing, DeleteThing's expectedVersion), a
# certificate's last change and version (DescribeCertificate), how a principal is attached
# (ListThingPrincipalsV2), and the indexes its look-ups by certificate and by policy use.
_VERSION_2 = """
ALTER TABLE things ADD COLUMN thing_id TEXT;
ALTER TABLE things ADD COLUMN version INTEGER NOT NULL DEFAULT 1;
UPDATE things SET thing_id = lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' ||
    substr(hex(randomblob(2)), 2) || '-a' || substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6)));
ALTER TABLE certificates ADD COLUMN updated_at REAL;
UPDATE certificates SET updated_at = created_at;
ALTER TABLE certificates ADD COLUMN customer_version INTEGER NOT NULL DEFAULT 1;
ALTER TABLE thing_principals ADD COLUMN principal_type TEXT NOT NULL DEFAULT 'NON_EXCLUSIVE_THING';
CREATE INDEX thing_principals_by_certificate ON thing_principals (certificate_id);
CREATE INDEX certificate_policies_by_policy ON certificate_policies (policy_name)
"""

# MIGRATIONS[n] brings a file from version n to version n + 1.
MIGRATIONS = (_VERSION_1, _VERSION_2)
SCHEMA_VERSION = len(MIGRATIONS)

# Every table, children before parents (the order reset() empties them in).
TABLES = (
    "template_uses",
    "thing_principals",
    "certificate_policies",
    "thing_groups",
    "policies",
    "things",
    "certificates",
)


def migrate(db: sqlite3.Connection, path: str) -> None:
    """Bring the open database to SCHEMA_VERSION; call inside a write transaction."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise ConfigError(
            f"registry {path} has schema version {version}; this emulator knows up to {SCHEMA_VERSION}"
        )
    for script in MIGRATIONS[version:]:
        # Not executescript(): it would commit the surrounding transaction.
        for statement in script.split(";"):
            if statement.strip():
                db.execute(statement)
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
