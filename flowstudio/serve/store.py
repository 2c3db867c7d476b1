"""The job store: one SQLAlchemy table of jobs (a SQLite file by default, any SQLAlchemy URL).

Statuses: ``queued`` -> ``running`` -> ``succeeded`` / ``failed`` / ``cancelled``; a queued job can be
cancelled at once, a running one is asked to stop (``cancel_requested``) and stops at its next step.
``attempts`` counts the times a job was started: after a restart a job found ``running`` is
re-queued once (:meth:`JobStore.recover`), a second time it fails with the reason.

Admission (:meth:`JobStore.admit`) is the one way a submitter (the API, the studio) queues a job:
the idempotency-key lookup, the queue bound, the per-owner bound and the insert are one database
transaction that holds the database's admission lock (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: a
transaction-scoped advisory lock), so several servers on one database cannot pass a bound together.

The schema is Alembic's (:mod:`flowstudio.serve.migrate`): a store upgrades its database to the
newest revision when it opens it. ``owner`` is the name of the token that submitted a job (``""`` on
an open server); idempotency keys are per owner.
"""

from __future__ import annotations

import json
import math
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Boolean,
    Float,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    delete,
    event,
    func,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.pool import StaticPool

STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
FINAL = ("succeeded", "failed", "cancelled")
#: How many times a job may be started before a restart that finds it running fails it.
MAX_ATTEMPTS = 2
#: The key of PostgreSQL's transaction-scoped advisory lock that serialises admissions ("flowstud").
ADMISSION_LOCK_KEY = 0x666C6F7773747564


class AdmissionRefused(Exception):
    """A submission over a bound: ``code`` ``queue_full`` or ``token_limit``, and when to retry."""

    def __init__(self, code: str, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.code, self.message, self.retry_after = code, message, retry_after


def set_wal_journal(cursor: Any, attempts: int = 50, wait: float = 0.1) -> None:
    """``PRAGMA journal_mode=WAL`` on a new SQLite connection, retried while the database is locked.

    Switching a fresh database file to WAL takes an exclusive lock, and SQLite can answer BUSY to it at
    once, without the connection's busy handler, while another process opens the same new file (seen
    once in CI: several servers starting on one fresh database). A bounded retry rides that out; any
    other error, or a lock that outlasts ``attempts x wait`` seconds, is raised."""
    import sqlite3

    for attempt in range(attempts):
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) or attempt == attempts - 1:
                raise
            time.sleep(wait)


class Base(DeclarativeBase):
    pass


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (UniqueConstraint("owner", "idempotency_key", name="uq_jobs_owner_key"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    request: Mapped[str] = mapped_column(Text)  # the request as JSON
    status: Mapped[str] = mapped_column(String(16), index=True, default="queued")
    step: Mapped[int] = mapped_column(Integer, default=0)
    total: Mapped[int] = mapped_column(Integer, default=0)
    phase: Mapped[str | None] = mapped_column(String(32), nullable=True)
    created_at: Mapped[float] = mapped_column(Float, index=True)
    started_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    note: Mapped[str | None] = mapped_column(Text, nullable=True)  # e.g. why it was re-queued
    files: Mapped[str | None] = mapped_column(Text, nullable=True)  # name -> file name, JSON
    idempotency_key: Mapped[str | None] = mapped_column(String(255), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    owner: Mapped[str] = mapped_column(String(64), index=True, default="", server_default="")
    # sha256 of the request with uploads as their digests: an idempotency key's "same request" test
    fingerprint: Mapped[str | None] = mapped_column(String(64), nullable=True)
    claimed_by: Mapped[str | None] = mapped_column(String(128), nullable=True)  # the worker running it
    # counts every change of the row (the id of its server-sent events; 0003)
    version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    purged_at: Mapped[float | None] = mapped_column(Float, nullable=True)  # retention removed its files


def database_url(db: str | Path) -> str:
    """``db`` as a SQLAlchemy URL: a URL is kept, anything else is a SQLite file path."""
    text = str(db)
    if "://" in text:
        return text
    Path(text).expanduser().parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{Path(text).expanduser()}"


def new_job_id() -> str:
    return uuid.uuid4().hex


class JobStore:
    """Jobs in a database; every method is one short transaction (safe from several threads)."""

    def __init__(self, db: str | Path) -> None:
        url = database_url(db)
        kwargs: dict[str, Any] = {}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
            if url in ("sqlite://", "sqlite:///:memory:"):
                kwargs["poolclass"] = StaticPool
        self.engine = create_engine(url, **kwargs)
        if url.startswith("sqlite"):

            @event.listens_for(self.engine, "connect")
            def _pragmas(connection: Any, _record: Any) -> None:
                cursor = connection.cursor()
                set_wal_journal(cursor)
                cursor.execute("PRAGMA synchronous=NORMAL")
                cursor.close()

        from flowstudio.serve.migrate import upgrade

        upgrade(self.engine)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.dialect = self.engine.dialect.name
        self._one_connection = kwargs.get("poolclass") is StaticPool  # in memory: this process only
        # held by :meth:`admit` in this process (API handlers, studio threads) around its transaction;
        # the database's own lock (``_lock_admission``) covers other processes on the same database
        self.admission = threading.Lock()

    def close(self) -> None:
        self.engine.dispose()

    def _session(self) -> Session:
        return self.sessions()

    # -- submitting and reading ------------------------------------------------------------------

    def add(
        self,
        kind: str,
        request: dict[str, Any],
        idempotency_key: str | None = None,
        *,
        owner: str = "",
        fingerprint: str | None = None,
        job_id: str | None = None,
    ) -> tuple[Job, bool]:
        """Queue a job with no bound (tools and tests; submitters use :meth:`admit`); returns
        ``(job, created)``: the job of an existing ``idempotency_key`` as is.

        ``job_id``: the id to give the job (the API picks it first, to store its uploads in its folder).
        """
        if idempotency_key is not None:
            existing = self.by_key(idempotency_key, owner)
            if existing is not None:
                return existing, False
        job = self._new_job(kind, request, idempotency_key, owner, fingerprint, job_id)
        try:
            with self._session() as session, session.begin():
                session.add(job)
        except IntegrityError:  # the same key submitted at the same moment: that job
            existing = self.by_key(idempotency_key, owner) if idempotency_key is not None else None
            if existing is None:
                raise
            return existing, False
        return job, True

    def admit(
        self,
        kind: str,
        request: dict[str, Any],
        *,
        max_queue: int,
        max_per_owner: int | None = None,
        idempotency_key: str | None = None,
        owner: str = "",
        fingerprint: str | None = None,
        job_id: str | None = None,
    ) -> tuple[Job, bool]:
        """Queue a job if the bounds allow it; returns ``(job, created)`` as :meth:`add`.

        One transaction under the admission lock (this process's and the database's): the job of an
        existing ``idempotency_key`` of ``owner`` is returned as is (even when the queue is full);
        else :class:`AdmissionRefused` if ``max_queue`` jobs are queued (``queue_full``) or ``owner``
        has ``max_per_owner`` jobs queued or running (``token_limit``; ``None``: no per-owner bound);
        else the job is inserted. Every submitter (the API, the studio) queues through here.
        """
        try:
            return self._admit(
                kind, request, max_queue, max_per_owner, idempotency_key, owner, fingerprint, job_id
            )
        except IntegrityError:  # the same key at the same moment, on a database without the lock
            existing = self.by_key(idempotency_key, owner) if idempotency_key is not None else None
            if existing is None:
                raise
            return existing, False

    def _admit(
        self,
        kind: str,
        request: dict[str, Any],
        max_queue: int,
        max_per_owner: int | None,
        idempotency_key: str | None,
        owner: str,
        fingerprint: str | None,
        job_id: str | None,
    ) -> tuple[Job, bool]:
        with self.admission, self._session() as session, session.begin():
            self._lock_admission(session)
            if idempotency_key is not None:
                existing = session.scalars(
                    select(Job).where(Job.idempotency_key == idempotency_key, Job.owner == owner)
                ).first()
                if existing is not None:
                    return existing, False
            queued = session.scalar(select(func.count()).select_from(Job).where(Job.status == "queued")) or 0
            if queued >= max_queue:
                retry = self.retry_after(session)
                raise AdmissionRefused(
                    "queue_full",
                    f"{queued} jobs are queued (the limit is {max_queue}); retry in {retry} s",
                    retry,
                )
            if max_per_owner is not None:
                mine = (
                    session.scalar(
                        select(func.count())
                        .select_from(Job)
                        .where(Job.status.in_(("queued", "running")), Job.owner == owner)
                    )
                    or 0
                )
                if mine >= max_per_owner:
                    retry = self.retry_after(session)
                    raise AdmissionRefused(
                        "token_limit",
                        f"this token has {mine} jobs queued or running (the limit is {max_per_owner}); "
                        f"retry in {retry} s",
                        retry,
                    )
            job = self._new_job(kind, request, idempotency_key, owner, fingerprint, job_id)
            session.add(job)
        return job, True

    def _lock_admission(self, session: Session) -> None:
        """Take the database's admission lock for the rest of ``session``'s transaction (its first
        statement): SQLite ``BEGIN IMMEDIATE`` (the write lock, so other connections' admissions wait
        on the busy timeout); PostgreSQL ``pg_advisory_xact_lock``. Other databases: none (only this
        process's lock; several servers could pass a bound together)."""
        connection = session.connection()
        if self.dialect == "sqlite" and not self._one_connection:
            # pysqlite opens its transactions itself, lazily: this one is opened here, as a writer
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        elif self.dialect == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADMISSION_LOCK_KEY})

    def retry_after(self, session: Session | None = None) -> int:
        """Seconds a refused submitter should wait: the mean run time of recent jobs, else 10."""
        return max(1, math.ceil(self.mean_run_seconds(session=session) or 10.0))

    @staticmethod
    def _new_job(
        kind: str,
        request: dict[str, Any],
        idempotency_key: str | None,
        owner: str,
        fingerprint: str | None,
        job_id: str | None,
    ) -> Job:
        return Job(
            id=job_id or new_job_id(),
            kind=kind,
            request=json.dumps(request, sort_keys=True),
            status="queued",
            step=0,
            total=0,
            created_at=time.time(),
            idempotency_key=idempotency_key,
            attempts=0,
            cancel_requested=False,
            owner=owner,
            fingerprint=fingerprint,
            version=0,
        )

    def get(self, job_id: str) -> Job | None:
        with self._session() as session:
            return session.get(Job, job_id)

    def by_key(self, key: str, owner: str = "") -> Job | None:
        with self._session() as session:
            return session.scalars(select(Job).where(Job.idempotency_key == key, Job.owner == owner)).first()

    def list(
        self, status: str | None = None, limit: int = 50, offset: int = 0, owner: str | None = None
    ) -> tuple[list[Job], int]:
        """Jobs newest first (of ``status`` and ``owner`` if given) and how many there are in all."""
        with self._session() as session:
            query = select(Job)
            count = select(func.count()).select_from(Job)
            if status is not None:
                query = query.where(Job.status == status)
                count = count.where(Job.status == status)
            if owner is not None:
                query = query.where(Job.owner == owner)
                count = count.where(Job.owner == owner)
            jobs = session.scalars(query.order_by(Job.created_at.desc(), Job.id).offset(offset).limit(limit))
            return list(jobs), session.scalar(count) or 0

    def count(self, status: str | tuple[str, ...], owner: str | None = None) -> int:
        """How many jobs have ``status`` (one or several), of ``owner`` if given."""
        statuses = (status,) if isinstance(status, str) else status
        query = select(func.count()).select_from(Job).where(Job.status.in_(statuses))
        if owner is not None:
            query = query.where(Job.owner == owner)
        with self._session() as session:
            return session.scalar(query) or 0

    def position(self, job: Job) -> int | None:
        """1 for the next queued job to run, 2 for the one after...; ``None`` unless queued."""
        if job.status != "queued":
            return None
        with self._session() as session:
            ahead = session.scalar(
                select(func.count())
                .select_from(Job)
                .where(Job.status == "queued", Job.created_at < job.created_at)
            )
            return (ahead or 0) + 1

    def mean_run_seconds(self, last: int = 20, session: Session | None = None) -> float | None:
        """Mean run time of the last ``last`` succeeded jobs, or ``None`` if none ran."""
        query = (
            select(Job.started_at, Job.finished_at)
            .where(Job.status == "succeeded", Job.started_at.is_not(None))
            .order_by(Job.finished_at.desc())
            .limit(last)
        )
        if session is not None:  # inside a caller's transaction
            rows = session.execute(query).all()
        else:
            with self._session() as own:
                rows = own.execute(query).all()
        spans = [end - start for start, end in rows if end is not None and start is not None]
        return sum(spans) / len(spans) if spans else None

    # -- the worker's side -----------------------------------------------------------------------

    def claim_next(self, worker: str = "") -> Job | None:
        """Mark the oldest queued job running (attempts + 1) by ``worker`` and return it; ``None`` if none.

        The claim is one conditional UPDATE, so several workers (threads or processes on one database)
        never run the same job.
        """
        while True:
            with self._session() as session, session.begin():
                job = session.scalars(
                    select(Job).where(Job.status == "queued").order_by(Job.created_at, Job.id).limit(1)
                ).first()
                if job is None:
                    return None
                claimed = session.execute(
                    update(Job)
                    .where(Job.id == job.id, Job.status == "queued")
                    .values(
                        status="running",
                        started_at=time.time(),
                        attempts=Job.attempts + 1,
                        step=0,
                        total=0,
                        claimed_by=worker,
                        version=Job.version + 1,
                    )
                ).rowcount
            if claimed:
                return self.get(job.id)

    def set_progress(self, job_id: str, step: int, total: int, phase: str) -> bool:
        """Store the progress of a running job; returns whether a cancel was asked for."""
        with self._session() as session, session.begin():
            session.execute(
                update(Job)
                .where(Job.id == job_id, Job.status == "running")
                .values(step=step, total=total, phase=phase, version=Job.version + 1)
            )
            return bool(session.scalar(select(Job.cancel_requested).where(Job.id == job_id)))

    def finish(
        self, job_id: str, status: str, error: str | None = None, files: dict[str, str] | None = None
    ) -> None:
        with self._session() as session, session.begin():
            session.execute(
                update(Job)
                .where(Job.id == job_id)
                .values(
                    status=status,
                    error=error,
                    files=json.dumps(files) if files is not None else None,
                    finished_at=time.time(),
                    version=Job.version + 1,
                )
            )

    def cancel(self, job_id: str) -> Job | None:
        """Cancel a queued job at once; ask a running one to stop at its next step. ``None``: no such job."""
        with self._session() as session, session.begin():
            session.execute(
                update(Job)
                .where(Job.id == job_id, Job.status == "queued")
                .values(
                    status="cancelled",
                    cancel_requested=True,
                    finished_at=time.time(),
                    version=Job.version + 1,
                )
            )
            session.execute(
                update(Job)
                .where(Job.id == job_id, Job.status == "running", Job.cancel_requested.is_(False))
                .values(cancel_requested=True, version=Job.version + 1)
            )
        return self.get(job_id)

    def recover(self, worker: str = "") -> list[str]:
        """After a restart of ``worker``: its jobs found ``running`` are re-queued once, then failed.

        Only the jobs this worker claimed (or claimed by no name): another server's worker on the same
        database is running its own. Returns the ids.
        """
        with self._session() as session, session.begin():
            mine = (Job.claimed_by == worker) | Job.claimed_by.is_(None)
            running = list(session.scalars(select(Job).where(Job.status == "running", mine)))
            for job in running:
                job.version += 1
                if job.cancel_requested:
                    job.status, job.finished_at = "cancelled", time.time()
                    job.error = "cancelled; the server stopped while the job was running"
                elif job.attempts >= MAX_ATTEMPTS:
                    job.status, job.finished_at = "failed", time.time()
                    job.error = (
                        f"the server stopped while this job was running, {job.attempts} times; "
                        "not re-queued again (submit it anew if the input is right)"
                    )
                else:
                    job.status, job.step, job.total, job.phase = "queued", 0, 0, None
                    job.note = "re-queued once: the server stopped while this job was running"
            return [job.id for job in running]

    # -- deleting and retention ------------------------------------------------------------------

    def delete(self, job_id: str) -> Job | None:
        """Remove a job's row unless it is running (a queued one leaves the queue, never to run).

        Returns the removed job (its request names its input files), or ``None``: no such job, or it
        is running (one conditional DELETE, so a worker claiming it at the same moment wins or loses
        whole). The caller removes the files (:func:`flowstudio.serve.retention.remove_job_files`).
        """
        with self._session() as session, session.begin():
            job = session.get(Job, job_id)
            if job is None or job.status == "running":
                return None
            removed = session.execute(
                delete(Job).where(Job.id == job_id, Job.status != "running"),
                execution_options={"synchronize_session": False},
            ).rowcount
            session.expunge(job)
        return job if removed else None

    def expired(self, before: float, limit: int = 500) -> list[Job]:
        """Finished jobs (succeeded, failed, cancelled) that ended before ``before`` and still have files."""
        with self._session() as session:
            return list(
                session.scalars(
                    select(Job)
                    .where(Job.status.in_(FINAL), Job.finished_at < before, Job.purged_at.is_(None))
                    .order_by(Job.finished_at)
                    .limit(limit)
                )
            )

    def mark_purged(self, job_id: str, note: str) -> None:
        """Record that retention removed a finished job's files (the row stays: status, timings, key)."""
        with self._session() as session, session.begin():
            session.execute(
                update(Job)
                .where(Job.id == job_id, Job.purged_at.is_(None))
                .values(purged_at=time.time(), files=None, note=note, version=Job.version + 1)
            )

    def requests_with_files(self) -> list[dict[str, Any]]:
        """The requests of the jobs whose files are kept (not purged): retention keeps what they name."""
        with self._session() as session:
            rows = session.scalars(select(Job.request).where(Job.purged_at.is_(None)))
            return [json.loads(row) for row in rows]
