"""Verified bearer tokens are trusted for a few seconds; revocation takes effect after them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from api_samples import Headers
from fastapi.testclient import TestClient

from bonecast.api.auth import TOKEN_CACHE_SECONDS, TokenCache
from bonecast.registry import Registry, UserRecord

NOW = datetime(2026, 1, 1, tzinfo=UTC)
USER = UserRecord(
    id=1,
    username="alice",
    display_name=None,
    role="clinician",
    active=True,
    created_at=NOW,
    updated_at=NOW,
)


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_valid_token_is_checked_again_only_after_the_cache_time() -> None:
    clock = Clock()
    cache = TokenCache(seconds=5, clock=clock)
    answers: list[UserRecord | None] = [USER, None]
    calls: list[str] = []

    def verify(token: str) -> UserRecord | None:
        calls.append(token)
        return answers[len(calls) - 1]

    assert cache.user("bct_a", verify) == USER
    clock.now += 4.9
    assert cache.user("bct_a", verify) == USER
    assert calls == ["bct_a"]
    clock.now += 0.2  # revoked meanwhile: refused once the entry is older than 5 s
    assert cache.user("bct_a", verify) is None
    assert calls == ["bct_a", "bct_a"]


def test_an_invalid_token_is_never_cached_and_the_cache_is_bounded() -> None:
    clock = Clock()
    cache = TokenCache(seconds=5, capacity=2, clock=clock)
    calls: list[str] = []

    def verify(token: str) -> UserRecord | None:
        calls.append(token)
        return None if token == "bad" else USER

    assert cache.user("bad", verify) is None
    assert cache.user("bad", verify) is None
    for token in ("a", "b", "c", "a", "b", "c"):
        assert cache.user(token, verify) == USER
    assert calls == ["bad", "bad", "a", "b", "c", "c"]  # "c" found the cache full
    clock.now += 6  # the expired entries make room again
    cache.user("c", verify)
    cache.user("c", verify)
    assert calls == ["bad", "bad", "a", "b", "c", "c", "c"]


def test_the_application_refuses_a_revoked_token_after_the_cache_time(
    client: TestClient, clinician: Headers, registry: Registry
) -> None:
    tokens: TokenCache = client.app.state.token_cache  # type: ignore[attr-defined]
    assert tokens.seconds == TOKEN_CACHE_SECONDS
    clock = Clock()
    tokens.clock = clock
    assert client.get("/api/v1/patients", headers=clinician).status_code == 200
    with registry.session(actor="system:test") as session:
        (user,) = session.list_users()
        (token,) = session.list_tokens(user.id)
        session.revoke_token(token.id)
    assert client.get("/api/v1/patients", headers=clinician).status_code == 200
    clock.now += TOKEN_CACHE_SECONDS
    assert client.get("/api/v1/patients", headers=clinician).status_code == 401


def test_a_new_token_works_at_once(client: TestClient, login: Callable[[str], Headers]) -> None:
    assert (
        client.get("/api/v1/patients", headers={"Authorization": "Bearer bct_x"}).status_code == 401
    )
    assert client.get("/api/v1/patients", headers=login("viewer")).status_code == 200
