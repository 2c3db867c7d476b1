"""Arena: ballots (pairs shown to raters) and votes.

Revision ID: b0002
Revises: b0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "b0002"
down_revision = "b0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "board_ballots",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("rater", sa.String(64), nullable=False),
        sa.Column("testset", sa.String(128), nullable=False),
        sa.Column("case_id", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("left_submission", sa.String(32), nullable=True),
        sa.Column("right_submission", sa.String(32), nullable=True),
        sa.Column("left_method", sa.String(128), nullable=False),
        sa.Column("right_method", sa.String(128), nullable=False),
        sa.Column("issued_at", sa.Float(), nullable=False),
    )
    op.create_index("ix_board_ballots_rater", "board_ballots", ["rater"])
    op.create_table(
        "board_votes",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("ballot_id", sa.String(32), sa.ForeignKey("board_ballots.id"), nullable=False),
        sa.Column("rater", sa.String(64), nullable=False),
        sa.Column("testset", sa.String(128), nullable=False),
        sa.Column("case_id", sa.String(128), nullable=False),
        sa.Column("pair", sa.String(300), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("left_method", sa.String(128), nullable=False),
        sa.Column("right_method", sa.String(128), nullable=False),
        sa.Column("vote", sa.String(16), nullable=False),
        sa.Column("passed", sa.Boolean(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.UniqueConstraint("ballot_id", name="uq_board_votes_ballot"),
        sa.UniqueConstraint("rater", "testset", "case_id", "pair", name="uq_board_votes_once"),
    )
    op.create_index("ix_board_votes_rater", "board_votes", ["rater"])
    op.create_index("ix_board_votes_created_at", "board_votes", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_board_votes_created_at", "board_votes")
    op.drop_index("ix_board_votes_rater", "board_votes")
    op.drop_table("board_votes")
    op.drop_index("ix_board_ballots_rater", "board_ballots")
    op.drop_table("board_ballots")
