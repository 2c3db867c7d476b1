"""``flowstudio board``: the leaderboard web site over the benchmark's results format.

FastAPI + SQLAlchemy (a SQLite file by default, PostgreSQL by URL), server-rendered pages with JSON
twins, archive submissions checked before anything is stored and re-scored on the server by the
benchmark's own scorer. See ``docs/guide_benchmark.md``, "Leaderboard site".

Modules, one job each: ``models`` (tables), ``db`` (engine + migrations), ``store`` (queries),
``aggregate`` (mean / spread per scope), ``seed`` (results files -> board), ``archive`` (checking an
upload), ``submit`` (the upload and withdraw routes), ``worker`` (re-scoring), ``views`` (page data),
``api`` (JSON routes), ``pages`` (HTML routes), ``media`` (filmstrips), ``app`` (the app), ``cli``.
"""
