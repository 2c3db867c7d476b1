"""The board's tables: methods, their submissions, the scores of each, and the test set's cases.

A *method* is what a card describes (name, description, paper, code, submitter). A *submission* is
one scoring of a method on one test set: seeded from a benchmark results file, or uploaded as an
archive of outputs and scored here. *Scores* are the aggregates the leaderboard shows (per scope:
``all`` or an edit type; per metric, ``composite`` included); *case results* are each case's
numbers for the per-case viewer. Every number comes from the benchmark's scorer
(:func:`flowstudio.bench.run_benchmark`), never from what a submitter claims.

Table names carry a ``board_`` prefix so that the board can share one database with
``flowstudio serve`` (its ``jobs`` table) without a clash.
"""

from __future__ import annotations

from sqlalchemy import Boolean, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

#: Submission statuses: queued -> scoring -> scored | failed; withdrawn by its owner at any time.
STATUSES = ("queued", "scoring", "scored", "failed", "withdrawn")


class Base(DeclarativeBase):
    pass


class Method(Base):
    __tablename__ = "board_methods"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    paper: Mapped[str | None] = mapped_column(String(512), nullable=True)
    code: Mapped[str | None] = mapped_column(String(512), nullable=True)
    submitter: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[float] = mapped_column(Float)


class Submission(Base):
    __tablename__ = "board_submissions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    method_id: Mapped[int] = mapped_column(ForeignKey("board_methods.id"), index=True)
    testset: Mapped[str] = mapped_column(String(128), index=True)
    testset_sha256: Mapped[str] = mapped_column(String(64))
    origin: Mapped[str] = mapped_column(String(16))  # "seed" (a results file) or "upload"
    source: Mapped[str] = mapped_column(Text, default="")  # the results file, or the archive's name
    owner: Mapped[str] = mapped_column(String(64), index=True, default="")
    status: Mapped[str] = mapped_column(String(16), index=True, default="queued")
    settings: Mapped[str] = mapped_column(Text, default="{}")  # JSON: what produced the outputs
    metric_versions: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON, of the last scoring
    outputs: Mapped[str | None] = mapped_column(Text, nullable=True)  # folder of outputs, if kept
    composite: Mapped[float | None] = mapped_column(Float, nullable=True)
    cases_scored: Mapped[int] = mapped_column(Integer, default=0)
    cases_total: Mapped[int] = mapped_column(Integer, default=0)
    errors: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[float] = mapped_column(Float, index=True)
    started_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)


class Score(Base):
    """One aggregate: ``metric`` (or ``composite``) over the cases of ``scope`` (``all`` or an edit type)."""

    __tablename__ = "board_scores"
    __table_args__ = (UniqueConstraint("submission_id", "scope", "metric", name="uq_board_scores"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    submission_id: Mapped[str] = mapped_column(ForeignKey("board_submissions.id"), index=True)
    scope: Mapped[str] = mapped_column(String(32))
    metric: Mapped[str] = mapped_column(String(64))
    mean: Mapped[float] = mapped_column(Float)
    std: Mapped[float] = mapped_column(Float)
    n: Mapped[int] = mapped_column(Integer)


class CaseResult(Base):
    __tablename__ = "board_case_results"

    submission_id: Mapped[str] = mapped_column(ForeignKey("board_submissions.id"), primary_key=True)
    case_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))  # ok / error, as the runner recorded it
    metrics: Mapped[str] = mapped_column(Text, default="{}")  # JSON {name: number}
    skipped: Mapped[str] = mapped_column(Text, default="{}")  # JSON {name: reason}
    composite: Mapped[float | None] = mapped_column(Float, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)


class BoardCase(Base):
    """A case of a test set the board serves: what the viewer and the archive validator need."""

    __tablename__ = "board_cases"

    testset: Mapped[str] = mapped_column(String(128), primary_key=True)
    case_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    edit_type: Mapped[str] = mapped_column(String(32), index=True)
    source_prompt: Mapped[str] = mapped_column(Text)
    target_prompt: Mapped[str] = mapped_column(Text)
    instruction: Mapped[str | None] = mapped_column(Text, nullable=True)
    frames: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    width: Mapped[int] = mapped_column(Integer)
    position: Mapped[int] = mapped_column(Integer)  # order in the manifest


class Ballot(Base):
    """A pair shown to a rater: two outputs on one case (or an attention check), names hidden.

    The id is random and unguessable; the rater's vote names the ballot, so what was shown is known
    to the server and never sent back by the client. ``kind`` ``check``: the case's ground truth
    against a corrupted copy of it (``left_method``/``right_method`` are ``ground-truth`` and
    ``corrupted``).
    """

    __tablename__ = "board_ballots"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    rater: Mapped[str] = mapped_column(String(64), index=True)
    testset: Mapped[str] = mapped_column(String(128))
    case_id: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(8))  # pair / check
    left_submission: Mapped[str | None] = mapped_column(String(32), nullable=True)
    right_submission: Mapped[str | None] = mapped_column(String(32), nullable=True)
    left_method: Mapped[str] = mapped_column(String(128))
    right_method: Mapped[str] = mapped_column(String(128))
    issued_at: Mapped[float] = mapped_column(Float)


class ArenaVote(Base):
    """One vote. ``pair`` is the two methods sorted and joined by ``|`` (``check:<ballot>`` for an
    attention check), so the unique constraint is "one vote per pair, case and rater"."""

    __tablename__ = "board_votes"
    __table_args__ = (UniqueConstraint("rater", "testset", "case_id", "pair", name="uq_board_votes_once"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ballot_id: Mapped[str] = mapped_column(ForeignKey("board_ballots.id"), unique=True)
    rater: Mapped[str] = mapped_column(String(64), index=True)
    testset: Mapped[str] = mapped_column(String(128))
    case_id: Mapped[str] = mapped_column(String(128))
    pair: Mapped[str] = mapped_column(String(300))
    kind: Mapped[str] = mapped_column(String(8))
    left_method: Mapped[str] = mapped_column(String(128))
    right_method: Mapped[str] = mapped_column(String(128))
    vote: Mapped[str] = mapped_column(String(16))  # left / right / tie / both_bad
    passed: Mapped[bool | None] = mapped_column(Boolean, nullable=True)  # checks: picked the ground truth
    created_at: Mapped[float] = mapped_column(Float, index=True)


class LikertRating(Base):
    """One rater's 1-5 ratings of one output (a ``likert`` ballot: one case, one hidden method).

    One rating per (case, method, rater) is a unique constraint."""

    __tablename__ = "board_likert"
    __table_args__ = (UniqueConstraint("rater", "testset", "case_id", "method", name="uq_board_likert_once"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ballot_id: Mapped[str] = mapped_column(ForeignKey("board_ballots.id"), unique=True)
    rater: Mapped[str] = mapped_column(String(64), index=True)
    testset: Mapped[str] = mapped_column(String(128))
    case_id: Mapped[str] = mapped_column(String(128))
    method: Mapped[str] = mapped_column(String(128))
    edit_accuracy: Mapped[int] = mapped_column(Integer)
    preservation: Mapped[int] = mapped_column(Integer)
    temporal: Mapped[int] = mapped_column(Integer)
    overall: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[float] = mapped_column(Float, index=True)
