"""The board store: every read and write of the board's tables, each one short transaction.

Scores enter only through :meth:`BoardStore.record_results`, from a results dict that the benchmark
runner wrote (a seeded file, or the worker's own re-scoring of an upload), so the numbers on the board
are always the benchmark scorer's.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from flowstudio.bench.manifest import TestSet
from flowstudio.board.aggregate import ALL, COMPOSITE, aggregate, case_composite
from flowstudio.board.db import make_engine, upgrade
from flowstudio.board.models import BoardCase, CaseResult, Method, Score, Submission

#: Statuses whose last scores are shown: scored, and re-scoring ones (queued or scoring again after a
#: metric change) until their new scores replace the old in one transaction.
SHOWN = ("scored", "queued", "scoring")


def _on_board() -> tuple[Any, ...]:
    return (Submission.status.in_(SHOWN), Submission.metric_versions.is_not(None))


def on_board(submission: Submission) -> bool:
    return submission.status in SHOWN and submission.metric_versions is not None


def new_id() -> str:
    return uuid.uuid4().hex


def versions_json(versions: dict[str, str]) -> str:
    return json.dumps(versions, sort_keys=True)


@dataclass(frozen=True)
class Row:
    """One leaderboard row: a scored submission, its method, and its stats in the asked scope."""

    submission: Submission
    method: Method
    stats: dict[str, Score]


class BoardStore:
    def __init__(self, db: str | Path) -> None:
        self.engine = make_engine(db)
        upgrade(self.engine)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    def close(self) -> None:
        self.engine.dispose()

    def _session(self) -> Session:
        return self.sessions()

    # -- test set --------------------------------------------------------------------------------

    def sync_cases(self, testset: TestSet) -> int:
        """Make ``board_cases`` hold exactly the cases of ``testset`` (by its name); returns the count.

        Frame count and size are read from each source once here, so that validating an archive
        never loads the sources again.
        """
        rows = []
        for position, case in enumerate(testset):
            frames, height, width = case.load_source().shape[:3]
            rows.append(
                BoardCase(
                    testset=testset.name,
                    case_id=case.id,
                    edit_type=case.edit_type,
                    source_prompt=case.source_prompt,
                    target_prompt=case.target_prompt,
                    instruction=case.instruction,
                    frames=int(frames),
                    height=int(height),
                    width=int(width),
                    position=position,
                )
            )
        with self._session() as session, session.begin():
            session.execute(delete(BoardCase).where(BoardCase.testset == testset.name))
            session.add_all(rows)
        return len(rows)

    def cases(self, testset: str, edit_type: str | None = None) -> list[BoardCase]:
        query = select(BoardCase).where(BoardCase.testset == testset)
        if edit_type is not None:
            query = query.where(BoardCase.edit_type == edit_type)
        with self._session() as session:
            return list(session.scalars(query.order_by(BoardCase.position)))

    def case(self, testset: str, case_id: str) -> BoardCase | None:
        with self._session() as session:
            return session.get(BoardCase, (testset, case_id))

    # -- methods and submissions -----------------------------------------------------------------

    def method(self, name: str) -> Method | None:
        with self._session() as session:
            return session.scalars(select(Method).where(Method.name == name)).first()

    def method_by_id(self, method_id: int) -> Method | None:
        with self._session() as session:
            return session.get(Method, method_id)

    def ensure_method(
        self,
        name: str,
        *,
        description: str = "",
        paper: str | None = None,
        code: str | None = None,
        submitter: str = "",
    ) -> Method:
        """The method ``name``, created with this card if new (an existing card is kept as it is).

        Safe against a concurrent first submission of the same name (another request, or another
        server on the same database): the name is unique in the database, so the slower insert fails
        with an ``IntegrityError``, rolls back, and returns the row the faster one made instead of
        answering 500.
        """
        existing = self.method(name)
        if existing is not None:
            return existing
        method = Method(
            name=name,
            description=description,
            paper=paper,
            code=code,
            submitter=submitter,
            created_at=time.time(),
        )
        try:
            with self._session() as session, session.begin():
                session.add(method)
        except IntegrityError:  # created between our check and our insert: the first card is kept
            winner = self.method(name)
            if winner is None:  # not a duplicate name after all: a real error
                raise
            return winner
        return method

    def add_submission(
        self,
        method: Method,
        testset: TestSet | tuple[str, str],
        *,
        origin: str,
        source: str,
        owner: str = "",
        settings: dict[str, Any] | None = None,
        outputs: str | None = None,
        status: str = "queued",
        submission_id: str | None = None,
        cases_total: int = 0,
    ) -> Submission:
        name, sha = (testset.name, testset.manifest_sha256) if isinstance(testset, TestSet) else testset
        submission = Submission(
            id=submission_id or new_id(),
            method_id=method.id,
            testset=name,
            testset_sha256=sha,
            origin=origin,
            source=source,
            owner=owner,
            status=status,
            settings=json.dumps(settings or {}, sort_keys=True, default=str),
            outputs=outputs,
            cases_total=cases_total,
            cases_scored=0,
            errors=0,
            created_at=time.time(),
            attempts=0,
        )
        with self._session() as session, session.begin():
            session.add(submission)
        return submission

    def submission(self, submission_id: str) -> Submission | None:
        with self._session() as session:
            return session.get(Submission, submission_id)

    def seeded(self, source: str, method: Method) -> Submission | None:
        """The seeded submission of ``method`` from results file ``source``, if seeded before."""
        with self._session() as session:
            return session.scalars(
                select(Submission).where(
                    Submission.origin == "seed",
                    Submission.source == source,
                    Submission.method_id == method.id,
                )
            ).first()

    def submissions(self, *, method_id: int | None = None, owner: str | None = None) -> list[Submission]:
        query = select(Submission)
        if method_id is not None:
            query = query.where(Submission.method_id == method_id)
        if owner is not None:
            query = query.where(Submission.owner == owner)
        with self._session() as session:
            return list(session.scalars(query.order_by(Submission.created_at.desc())))

    def pending(self, owner: str) -> int:
        """Submissions of ``owner`` waiting for or in scoring."""
        with self._session() as session:
            return (
                session.scalar(
                    select(func.count())
                    .select_from(Submission)
                    .where(Submission.owner == owner, Submission.status.in_(("queued", "scoring")))
                )
                or 0
            )

    def count(self, status: str) -> int:
        with self._session() as session:
            return len(list(session.scalars(select(Submission.id).where(Submission.status == status))))

    # -- scoring ---------------------------------------------------------------------------------

    def claim_next(self) -> Submission | None:
        """Mark the oldest queued submission ``scoring`` and return it (one conditional UPDATE, so two
        workers never score the same one)."""
        while True:
            with self._session() as session, session.begin():
                found = session.scalars(
                    select(Submission)
                    .where(Submission.status == "queued")
                    .order_by(Submission.created_at, Submission.id)
                    .limit(1)
                ).first()
                if found is None:
                    return None
                claimed = session.execute(
                    update(Submission)
                    .where(Submission.id == found.id, Submission.status == "queued")
                    .values(status="scoring", started_at=time.time(), attempts=Submission.attempts + 1)
                ).rowcount
            if claimed:
                return self.submission(found.id)

    def record_results(
        self, submission_id: str, results: dict[str, Any], *, from_status: tuple[str, ...] = ("scoring",)
    ) -> bool:
        """Store the scores of ``results`` (the runner's results dict) for the submission, status ``scored``.

        Only if the submission is still in ``from_status`` (a submission withdrawn while it was being
        scored stays withdrawn). Old scores are replaced in the same transaction, so a page never shows
        half of a re-scoring. Returns whether the scores were stored.
        """
        records = list(results.get("cases", []))
        stats = aggregate(records)
        versions = (results.get("settings") or {}).get("metric_versions") or {}
        overall = stats.get(ALL, {}).get(COMPOSITE)
        with self._session() as session, session.begin():
            current = session.get(Submission, submission_id)
            if current is None or current.status not in from_status:
                return False
            session.execute(delete(Score).where(Score.submission_id == submission_id))
            session.execute(delete(CaseResult).where(CaseResult.submission_id == submission_id))
            session.add_all(
                Score(submission_id=submission_id, scope=scope, metric=name, mean=s.mean, std=s.std, n=s.n)
                for scope, metrics in stats.items()
                for name, s in metrics.items()
            )
            session.add_all(
                CaseResult(
                    submission_id=submission_id,
                    case_id=str(r["id"]),
                    status=str(r.get("status", "ok")),
                    metrics=json.dumps(r.get("metrics", {})),
                    skipped=json.dumps(r.get("skipped", {})),
                    composite=case_composite(r),
                    error=(r.get("error") or {}).get("message") if r.get("status") == "error" else None,
                )
                for r in records
            )
            current.status = "scored"
            current.metric_versions = versions_json(versions)
            current.composite = overall.mean if overall else None
            current.cases_scored = sum(r.get("status", "ok") == "ok" for r in records)
            current.errors = sum(r.get("status") == "error" for r in records)
            current.finished_at = time.time()
            current.error = None
        return True

    def fail(self, submission_id: str, error: str) -> None:
        with self._session() as session, session.begin():
            session.execute(
                update(Submission)
                .where(Submission.id == submission_id, Submission.status == "scoring")
                .values(status="failed", error=error, finished_at=time.time())
            )

    def withdraw(self, submission_id: str) -> None:
        """Withdrawn: off the board (its scores and case results deleted), the row kept as a record."""
        with self._session() as session, session.begin():
            session.execute(delete(Score).where(Score.submission_id == submission_id))
            session.execute(delete(CaseResult).where(CaseResult.submission_id == submission_id))
            session.execute(
                update(Submission)
                .where(Submission.id == submission_id)
                .values(status="withdrawn", finished_at=time.time(), outputs=None)
            )

    def requeue_stale(self, versions: dict[str, str]) -> list[str]:
        """Re-queue every scored submission whose outputs are kept and whose metric versions differ from
        ``versions``; its old scores stay shown until the new ones replace them. Returns the ids."""
        wanted = versions_json(versions)
        with self._session() as session, session.begin():
            stale = list(
                session.scalars(
                    select(Submission).where(
                        Submission.status == "scored",
                        Submission.outputs.is_not(None),
                        Submission.metric_versions != wanted,
                    )
                )
            )
            for submission in stale:
                submission.status = "queued"
                submission.note = "re-scoring: the metric versions changed"
        return [s.id for s in stale]

    def recover(self) -> list[str]:
        """After a restart: submissions found ``scoring`` were interrupted; queue them again."""
        with self._session() as session, session.begin():
            found = list(session.scalars(select(Submission).where(Submission.status == "scoring")))
            for submission in found:
                submission.status = "queued"
                submission.note = "re-queued: the server stopped while scoring it"
        return [s.id for s in found]

    # -- reading the board -----------------------------------------------------------------------

    def leaderboard(self, testset: str, scope: str = ALL) -> list[Row]:
        """Submissions on ``testset`` with scores (:data:`SHOWN`), their stats in ``scope``, best composite
        first."""
        with self._session() as session:
            pairs = session.execute(
                select(Submission, Method)
                .join(Method, Method.id == Submission.method_id)
                .where(Submission.testset == testset, *_on_board())
            ).all()
            ids = [s.id for s, _ in pairs]
            scores = session.scalars(
                select(Score).where(Score.submission_id.in_(ids), Score.scope == scope)
            ).all()
        by: dict[str, dict[str, Score]] = {}
        for score in scores:
            by.setdefault(score.submission_id, {})[score.metric] = score
        rows = [Row(s, m, by.get(s.id, {})) for s, m in pairs]
        rows.sort(key=lambda r: -(r.stats[COMPOSITE].mean if COMPOSITE in r.stats else -1.0))
        return rows

    def scores(self, submission_id: str) -> list[Score]:
        with self._session() as session:
            return list(session.scalars(select(Score).where(Score.submission_id == submission_id)))

    def case_results(
        self, *, submission_id: str | None = None, case_id: str | None = None
    ) -> list[CaseResult]:
        query = select(CaseResult)
        if submission_id is not None:
            query = query.where(CaseResult.submission_id == submission_id)
        if case_id is not None:
            query = query.where(CaseResult.case_id == case_id)
        with self._session() as session:
            return list(session.scalars(query))

    def testsets(self) -> list[str]:
        with self._session() as session:
            return sorted(set(session.scalars(select(BoardCase.testset))))
