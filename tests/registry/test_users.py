"""Users and API tokens: argon2id password hashes, roles, sign-in, token issue and verification."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from argon2 import PasswordHasher
from pydantic import ValidationError
from sqlalchemy import select, text, update
from sqlalchemy.exc import IntegrityError

from bonecast.registry import (
    ConflictError,
    PasswordIn,
    Registry,
    TokenIn,
    UserIn,
    UserRecord,
    models,
)

PASSWORD = "correct horse battery"


@pytest.fixture
def bob(registry: Registry) -> UserRecord:
    """A clinician created by the admin."""
    with registry.session("admin") as session:
        return session.create_user(
            UserIn(username="bob", password=PASSWORD, role="clinician", display_name="Dr Bob")
        )


def stored_hash(registry: Registry, username: str) -> str:
    with registry.engine.connect() as connection:
        query = select(models.User.password_hash).where(models.User.username == username)
        return str(connection.execute(query).scalar_one())


def test_passwords_are_stored_as_argon2id_hashes_only(registry: Registry, bob: UserRecord) -> None:
    password_hash = stored_hash(registry, "bob")

    assert password_hash.startswith("$argon2id$")
    assert PASSWORD not in password_hash
    assert PasswordHasher().verify(password_hash, PASSWORD)
    assert "password" not in UserRecord.model_fields and "hash" not in repr(bob)


def test_sign_in_needs_the_right_password_of_an_active_user(
    registry: Registry, bob: UserRecord
) -> None:
    with registry.session() as session:
        assert session.authenticate("bob", PASSWORD) == bob
        assert session.authenticate("bob", "wrong password!") is None
        assert session.authenticate("nobody", PASSWORD) is None
    with registry.session("admin") as session:
        session.deactivate_user(bob.id)
    with registry.session() as session:
        assert session.authenticate("bob", PASSWORD) is None


def test_a_changed_password_replaces_the_old_one(registry: Registry, bob: UserRecord) -> None:
    with registry.session("bob") as session:
        session.set_password(bob.id, PasswordIn(password="a new long password"))
    with registry.session() as session:
        assert session.authenticate("bob", PASSWORD) is None
        assert session.authenticate("bob", "a new long password") == bob


def test_an_old_style_hash_is_upgraded_at_sign_in_and_audited(
    registry: Registry, bob: UserRecord
) -> None:
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(PASSWORD)
    with registry.engine.begin() as connection:
        connection.execute(update(models.User).values(password_hash=weak))

    with registry.session() as session:
        assert session.authenticate("bob", PASSWORD) == bob
        (entry,) = session.audit_log(entity="users", entity_id=bob.id)[:1]

    assert stored_hash(registry, "bob") != weak
    assert (entry.actor, entry.action) == ("bob", "update")


def test_roles_are_admin_clinician_or_viewer(registry: Registry, bob: UserRecord) -> None:
    with registry.session("admin") as session:
        assert session.set_role(bob.id, "viewer").role == "viewer"
    with pytest.raises(ValidationError, match="role"):
        UserIn(username="eve", password=PASSWORD, role="superuser")  # type: ignore[arg-type]
    with pytest.raises(IntegrityError), registry.engine.begin() as connection:
        connection.execute(text("UPDATE users SET role = 'superuser'"))


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"username": "Bob Smith"}, "username"),
        ({"password": "too short"}, "password"),
    ],
)
def test_invalid_users_are_refused(values: dict[str, str], field: str) -> None:
    with pytest.raises(ValidationError) as error:
        UserIn.model_validate({"username": "eve", "password": PASSWORD, "role": "viewer"} | values)

    assert [e["loc"] for e in error.value.errors()] == [(field,)]


def test_usernames_are_unique(registry: Registry, bob: UserRecord) -> None:
    with pytest.raises(ConflictError, match="taken"), registry.session("admin") as session:
        session.create_user(UserIn(username="bob", password=PASSWORD, role="viewer"))


def test_a_token_is_shown_once_stored_as_a_hash_and_verifies(
    registry: Registry, bob: UserRecord
) -> None:
    with registry.session("bob") as session:
        record, token = session.create_token(bob.id, TokenIn(name="laptop"))
    with registry.engine.connect() as connection:
        stored = connection.execute(text("SELECT prefix, token_hash FROM api_tokens")).one()

    assert token.startswith("bct_") and len(token) > 40
    assert (
        token not in stored and token.startswith(stored.prefix) and record.prefix == stored.prefix
    )
    with registry.session() as session:
        assert session.verify_token(token) == bob
        assert session.verify_token(token + "x") is None
        assert session.verify_token("bct_" + "A" * 43) is None
        assert [t.name for t in session.list_tokens(bob.id)] == ["laptop"]


def test_revoked_expired_and_deactivated_users_tokens_do_not_verify(
    registry: Registry, bob: UserRecord, monkeypatch: pytest.MonkeyPatch
) -> None:
    expires = datetime.now(UTC) + timedelta(days=30)
    with registry.session("bob") as session:
        revoked, revoked_token = session.create_token(bob.id, TokenIn(name="old"))
        _, expiring_token = session.create_token(bob.id, TokenIn(name="ci", expires_at=expires))
        _, plain_token = session.create_token(bob.id, TokenIn(name="plain"))
        assert session.revoke_token(revoked.id).revoked_at is not None

    with registry.session() as session:
        assert session.verify_token(revoked_token) is None
        assert session.verify_token(expiring_token) == bob
        monkeypatch.setattr(models, "utcnow", lambda: expires + timedelta(seconds=1))
        assert session.verify_token(expiring_token) is None
        assert session.verify_token(plain_token) == bob
    with registry.session("admin") as session:
        session.deactivate_user(bob.id)
    with registry.session() as session:
        assert session.verify_token(plain_token) is None


def test_token_expiry_must_be_a_future_time_with_a_zone() -> None:
    with pytest.raises(ValidationError, match="time zone"):
        TokenIn(name="x", expires_at=datetime(2999, 1, 1))
    with pytest.raises(ValidationError, match="not in the future"):
        TokenIn(name="x", expires_at=datetime(2000, 1, 1, tzinfo=UTC))
