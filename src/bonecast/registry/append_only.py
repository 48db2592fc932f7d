"""Database triggers that keep the audit log append-only: UPDATE and DELETE are refused.

Installed by migration 0003 on SQLite and PostgreSQL (on PostgreSQL TRUNCATE is refused too).
The triggers hold against any client of the database, not only bonecast; a database owner can
still drop them, so on PostgreSQL run the application as a role that does not own the tables
(SECURITY.md).
"""

from __future__ import annotations

MESSAGE = "audit_log is append-only"

_SQLITE_INSTALL = [
    f"CREATE TRIGGER audit_log_no_{action} BEFORE {action.upper()} ON audit_log "
    f"BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END"
    for action in ("update", "delete")
]
_SQLITE_REMOVE = [
    f"DROP TRIGGER IF EXISTS audit_log_no_{action}" for action in ("update", "delete")
]

_POSTGRES_INSTALL = [
    "CREATE OR REPLACE FUNCTION audit_log_refuse() RETURNS trigger LANGUAGE plpgsql AS $$ "
    f"BEGIN RAISE EXCEPTION '{MESSAGE}'; END $$",
    "CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log "
    "FOR EACH ROW EXECUTE FUNCTION audit_log_refuse()",
    "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log "
    "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse()",
]
_POSTGRES_REMOVE = [
    "DROP TRIGGER IF EXISTS audit_log_no_change ON audit_log",
    "DROP TRIGGER IF EXISTS audit_log_no_truncate ON audit_log",
    "DROP FUNCTION IF EXISTS audit_log_refuse()",
]


def install_statements(dialect: str) -> list[str]:
    """The SQL that makes ``audit_log`` append-only on this dialect (``sqlite``/``postgresql``)."""
    return _POSTGRES_INSTALL if dialect == "postgresql" else _SQLITE_INSTALL


def remove_statements(dialect: str) -> list[str]:
    """The SQL that removes those triggers again (downgrade; emptying a test database)."""
    return _POSTGRES_REMOVE if dialect == "postgresql" else _SQLITE_REMOVE
