"""Settings: the summary /status shows."""

from __future__ import annotations

from pydantic import SecretStr

from ragserve.settings import Settings, public_summary


def test_configuration_summary_masks_secrets() -> None:
    class WithSecrets(Settings):
        admin_key: SecretStr = SecretStr("s3cret-admin")
        unset_key: SecretStr = SecretStr("")
        database_url: str = "postgresql://app:hunter2@db:5432/rag"
        redis_url: str | None = "redis://:s3cret-redis@cache:6379/0"
        session_token: str = "tok-123"

    summary = public_summary(WithSecrets())
    assert summary["admin_key"] == "***"
    assert summary["unset_key"] is None
    assert summary["database_url"] == "postgresql://app:***@db:5432/rag"
    assert summary["redis_url"] == "redis://:***@cache:6379/0"  # a password without a user name
    assert summary["session_token"] == "***"
    assert summary["chunk_tokens"] == 200  # "tokens" is a count, not a secret
    assert not any(s in str(summary) for s in ("s3cret-admin", "hunter2", "tok-123", "s3cret-redis"))
