"""The initial schema: API keys, the usage ledger and background jobs.

Revision ID: 0001
Revises: none
Create Date: 2026-11-21

Databases made before migrations existed already hold `api_keys` and `usage` (created by
`metadata.create_all`), so each table here is created only when missing: upgrading such a
database adds `jobs` and records the revision instead of failing on "table exists". The
jobs table mirrors the former `jobs.sqlite3` schema with portable types: JSON is stored as
text (as `api_keys.collections` is) and times as epoch seconds in floats.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def _missing(name: str) -> bool:
    return not sa.inspect(op.get_bind()).has_table(name)


def upgrade() -> None:
    if _missing("api_keys"):
        op.create_table(
            "api_keys",
            sa.Column("id", sa.String(32), primary_key=True),
            sa.Column("tenant", sa.String(128), nullable=False),
            sa.Column("name", sa.String(200), nullable=False),
            sa.Column("salt", sa.String(32), nullable=False),
            sa.Column("digest", sa.String(64), nullable=False),
            sa.Column("scopes", sa.String(64), nullable=False),
            sa.Column("collections", sa.Text, nullable=True),
            sa.Column("created_at", sa.Float, nullable=False),
            sa.Column("expires_at", sa.Float, nullable=True),
            sa.Column("revoked_at", sa.Float, nullable=True),
            sa.Column("monthly_tokens", sa.BigInteger, nullable=True),
            sa.Column("monthly_usd", sa.Float, nullable=True),
        )
        # The name `create_all` gave it, so old and new databases look the same.
        op.create_index("ix_api_keys_tenant", "api_keys", ["tenant"])
    if _missing("usage"):
        op.create_table(
            "usage",
            sa.Column("tenant", sa.String(128), nullable=False),
            sa.Column("key_id", sa.String(160), nullable=False),
            sa.Column("month", sa.String(7), nullable=False),
            sa.Column("requests", sa.BigInteger, nullable=False),
            sa.Column("prompt_tokens", sa.BigInteger, nullable=False),
            sa.Column("completion_tokens", sa.BigInteger, nullable=False),
            sa.Column("cost_usd", sa.Float, nullable=False),
            sa.PrimaryKeyConstraint("tenant", "key_id", "month"),
        )
    if _missing("jobs"):
        op.create_table(
            "jobs",
            sa.Column("id", sa.String(64), primary_key=True),
            sa.Column("tenant", sa.String(128), nullable=False),
            sa.Column("collection", sa.String(128), nullable=False),
            sa.Column("state", sa.String(16), nullable=False),
            sa.Column("owner", sa.Text, nullable=True),
            sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
            sa.Column("payload", sa.Text, nullable=False),
            sa.Column("progress", sa.Text, nullable=False),
            sa.Column("errors", sa.Text, nullable=False),
            sa.Column("result", sa.Text, nullable=True),
            sa.Column("error", sa.Text, nullable=True),
            sa.Column("created_at", sa.Float, nullable=False),
            sa.Column("started_at", sa.Float, nullable=True),
            sa.Column("heartbeat_at", sa.Float, nullable=True),
            sa.Column("finished_at", sa.Float, nullable=True),
            sa.CheckConstraint("state IN ('queued', 'running', 'succeeded', 'failed')", name="jobs_state"),
        )
        op.create_index("jobs_by_state", "jobs", ["state", "created_at"])


def downgrade() -> None:
    op.drop_index("jobs_by_state", table_name="jobs")
    op.drop_table("jobs")
    op.drop_table("usage")
    op.drop_index("ix_api_keys_tenant", table_name="api_keys")
    op.drop_table("api_keys")
