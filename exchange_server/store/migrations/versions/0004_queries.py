"""queries, their resources, result segments and notices (relayed queries, deadlines)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _utc(name: str, nullable: bool = True) -> sa.Column[dt.datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "query",
        sa.Column("bundle_id", sa.String(length=36), nullable=False),
        sa.Column("upload_id", sa.String(length=36), nullable=False),
        sa.Column("requester", sa.String(length=32), nullable=False),
        sa.Column("business_type", sa.String(length=64), nullable=False),
        sa.Column("catalog_version", sa.Integer(), nullable=False),
        sa.Column("persons", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        _utc("received_at", nullable=False),
        sa.Column("due_date", sa.Date(), nullable=True),
        _utc("due_at"),
        _utc("closed_at"),
        _utc("overdue_at"),
        _utc("updated_at", nullable=False),
        sa.PrimaryKeyConstraint("bundle_id"),
    )
    op.create_index("ix_query_requester", "query", ["requester"])
    op.create_index("ix_query_state", "query", ["state"])
    op.create_table(
        "query_resource",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("query_id", sa.String(length=36), nullable=False),
        sa.Column("resource", sa.String(length=64), nullable=False),
        sa.Column("routing", sa.String(length=16), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("feedback_days", sa.Integer(), nullable=False),
        sa.Column("due_date", sa.Date(), nullable=True),
        _utc("due_at"),
        sa.Column("relay_id", sa.String(length=36), nullable=True),
        _utc("relay_sent_at"),
        sa.Column("answer_bundle", sa.String(length=36), nullable=True),
        _utc("answered_at"),
        _utc("overdue_at"),
        _utc("escalated_at"),
        sa.Column("decided_by", sa.String(length=64), nullable=True),
        sa.Column("note", sa.String(length=500), nullable=True),
        sa.Column("segment", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("query_id", "resource"),
        sa.UniqueConstraint("relay_id"),
    )
    op.create_index("ix_query_resource_query_id", "query_resource", ["query_id"])
    op.create_index("ix_query_resource_state", "query_resource", ["state"])
    op.create_table(
        "query_segment",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("query_id", sa.String(length=36), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("trigger", sa.String(length=80), nullable=False),
        sa.Column("final", sa.Boolean(), nullable=False),
        sa.Column("statuses", sa.Text(), nullable=False),
        _utc("created_at", nullable=False),
        _utc("delivered_at"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("query_id", "seq"),
        sa.UniqueConstraint("query_id", "trigger"),
    )
    op.create_index("ix_query_segment_query_id", "query_segment", ["query_id"])
    op.create_table(
        "query_notice",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("query_id", sa.String(length=36), nullable=False),
        sa.Column("resource", sa.String(length=64), nullable=False),
        sa.Column("dept", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("fields", sa.Text(), nullable=False),
        _utc("created_at", nullable=False),
        _utc("delivered_at"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_index("ix_query_notice_query_id", "query_notice", ["query_id"])


def downgrade() -> None:
    op.drop_table("query_notice")
    op.drop_table("query_segment")
    op.drop_table("query_resource")
    op.drop_table("query")
