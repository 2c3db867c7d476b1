"""Likert ratings (1-5 per dimension) of single outputs.

Revision ID: b0003
Revises: b0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "b0003"
down_revision = "b0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "board_likert",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("ballot_id", sa.String(32), sa.ForeignKey("board_ballots.id"), nullable=False),
        sa.Column("rater", sa.String(64), nullable=False),
        sa.Column("testset", sa.String(128), nullable=False),
        sa.Column("case_id", sa.String(128), nullable=False),
        sa.Column("method", sa.String(128), nullable=False),
        sa.Column("edit_accuracy", sa.Integer(), nullable=False),
        sa.Column("preservation", sa.Integer(), nullable=False),
        sa.Column("temporal", sa.Integer(), nullable=False),
        sa.Column("overall", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.UniqueConstraint("ballot_id", name="uq_board_likert_ballot"),
        sa.UniqueConstraint("rater", "testset", "case_id", "method", name="uq_board_likert_once"),
    )
    op.create_index("ix_board_likert_rater", "board_likert", ["rater"])
    op.create_index("ix_board_likert_created_at", "board_likert", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_board_likert_created_at", "board_likert")
    op.drop_index("ix_board_likert_rater", "board_likert")
    op.drop_table("board_likert")
