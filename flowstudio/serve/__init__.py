"""``flowstudio serve``: a REST job API over :mod:`flowstudio.jobs` (first slice; see docs/guide_serving.md).

:mod:`~flowstudio.serve.store` keeps the jobs in SQLAlchemy (a SQLite file by default);
:mod:`~flowstudio.serve.worker` is the one thread that owns the model and runs queued jobs one after
another; :mod:`~flowstudio.serve.app` is the FastAPI app (``create_app``).
"""
