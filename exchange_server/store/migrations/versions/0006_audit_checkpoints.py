"""audit checkpoints and the person index of audited queries

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_checkpoint",
        sa.Column("size", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("root", sa.String(length=64), nullable=False),
        sa.Column("note", sa.String(), nullable=False),
        sa.Column("frontier", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("size"),
    )
    op.create_table(
        "audit_person",
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("position", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("auth_ref", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("seq", "position"),
    )
    op.create_index("ix_audit_person_digest", "audit_person", ["digest"])


def downgrade() -> None:
    op.drop_index("ix_audit_person_digest", table_name="audit_person")
    op.drop_table("audit_person")
    op.drop_table("audit_checkpoint")
