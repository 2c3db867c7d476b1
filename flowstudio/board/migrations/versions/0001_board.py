"""The board's first schema: methods, submissions, scores, case results, cases.

Revision ID: b0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "b0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "board_methods",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("paper", sa.String(512), nullable=True),
        sa.Column("code", sa.String(512), nullable=True),
        sa.Column("submitter", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.UniqueConstraint("name", name="uq_board_methods_name"),
    )
    op.create_table(
        "board_submissions",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("method_id", sa.Integer(), sa.ForeignKey("board_methods.id"), nullable=False),
        sa.Column("testset", sa.String(128), nullable=False),
        sa.Column("testset_sha256", sa.String(64), nullable=False),
        sa.Column("origin", sa.String(16), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("settings", sa.Text(), nullable=False),
        sa.Column("metric_versions", sa.Text(), nullable=True),
        sa.Column("outputs", sa.Text(), nullable=True),
        sa.Column("composite", sa.Float(), nullable=True),
        sa.Column("cases_scored", sa.Integer(), nullable=False),
        sa.Column("cases_total", sa.Integer(), nullable=False),
        sa.Column("errors", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=True),
        sa.Column("finished_at", sa.Float(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
    )
    for column in ("method_id", "testset", "owner", "status", "created_at"):
        op.create_index(f"ix_board_submissions_{column}", "board_submissions", [column])
    op.create_table(
        "board_scores",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("submission_id", sa.String(32), sa.ForeignKey("board_submissions.id"), nullable=False),
        sa.Column("scope", sa.String(32), nullable=False),
        sa.Column("metric", sa.String(64), nullable=False),
        sa.Column("mean", sa.Float(), nullable=False),
        sa.Column("std", sa.Float(), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.UniqueConstraint("submission_id", "scope", "metric", name="uq_board_scores"),
    )
    op.create_index("ix_board_scores_submission_id", "board_scores", ["submission_id"])
    op.create_table(
        "board_case_results",
        sa.Column("submission_id", sa.String(32), sa.ForeignKey("board_submissions.id"), primary_key=True),
        sa.Column("case_id", sa.String(128), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("metrics", sa.Text(), nullable=False),
        sa.Column("skipped", sa.Text(), nullable=False),
        sa.Column("composite", sa.Float(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
    )
    op.create_table(
        "board_cases",
        sa.Column("testset", sa.String(128), primary_key=True),
        sa.Column("case_id", sa.String(128), primary_key=True),
        sa.Column("edit_type", sa.String(32), nullable=False),
        sa.Column("source_prompt", sa.Text(), nullable=False),
        sa.Column("target_prompt", sa.Text(), nullable=False),
        sa.Column("instruction", sa.Text(), nullable=True),
        sa.Column("frames", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
    )
    op.create_index("ix_board_cases_edit_type", "board_cases", ["edit_type"])


def downgrade() -> None:
    op.drop_table("board_cases")
    op.drop_table("board_case_results")
    op.drop_index("ix_board_scores_submission_id", "board_scores")
    op.drop_table("board_scores")
    for column in ("method_id", "testset", "owner", "status", "created_at"):
        op.drop_index(f"ix_board_submissions_{column}", "board_submissions")
    op.drop_table("board_submissions")
    op.drop_table("board_methods")
