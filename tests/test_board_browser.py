"""The board in a real browser: Debian's chromium, driven by Playwright, against a real
``flowstudio board serve`` process on a free loopback port.

It submits an archive through the /submit form, follows the submission until the server has scored
it, finds it on the leaderboard, then votes in the arena and sees the ratings page count the votes.
Chromium missing is a FAILURE, as in tests/test_studio_browser.py; ``FLOWSTUDIO_SKIP_BROWSER=1``
skips on purpose. ``FLOWSTUDIO_BOARD_SCREENSHOTS=docs/images`` writes the guide's screenshots.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.board_fixtures import bench_run, outputs_zip, tiny_set
from tests.test_studio_browser import _chromium, _free_port, _need

SHOTS_ENV = "FLOWSTUDIO_BOARD_SCREENSHOTS"
TOKEN = "browser-submitter-0123456789"
RATER = "browser-rater-0123456789ab"
START_TIMEOUT = 120.0


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


@pytest.fixture
def board_server(tmp_path: Path) -> Any:
    """A seeded board (identity, ground-truth) served by `flowstudio board serve` in a subprocess."""
    executable = _chromium()
    sync_api = _need("playwright.sync_api")
    from flowstudio.board.seed import seed_results
    from flowstudio.board.store import BoardStore

    testset = tiny_set(tmp_path / "set")
    store = BoardStore(tmp_path / "board.sqlite")
    store.sync_cases(testset)
    for method in ("identity", "ground-truth"):
        seed_results(store, testset, bench_run(testset, method, tmp_path / "runs" / method))
    store.close()
    (tmp_path / "tokens").write_text(f"alice {TOKEN}\n")
    (tmp_path / "raters").write_text(f"rita {RATER}\n")
    port = _free_port()
    command = [sys.executable, "-c", "from flowstudio.cli import app; app()", "board", "serve"]
    command += ["--testset", str(testset.path), "--db", str(tmp_path / "board.sqlite"), "--port", str(port)]
    command += ["--tokens", str(tmp_path / "tokens"), "--rater-tokens", str(tmp_path / "raters")]
    log = (tmp_path / "server.log").open("w")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
    base = f"http://127.0.0.1:{port}"

    def log_tail() -> str:
        return (tmp_path / "server.log").read_text(errors="replace")[-3000:]

    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if process.poll() is not None:
            pytest.fail(f"flowstudio board serve exited with {process.returncode}:\n{log_tail()}")
        try:
            if _get(f"{base}/healthz")["worker_alive"]:
                break
        except OSError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"flowstudio board serve not ready after {START_TIMEOUT} s:\n{log_tail()}")
        time.sleep(0.3)
    try:
        yield base, testset, executable, sync_api, log_tail
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def test_submit_score_show_vote_rate_in_chromium(board_server: Any, tmp_path: Path) -> None:
    base, testset, executable, sync_api, log_tail = board_server
    shots = os.environ.get(SHOTS_ENV)
    archive = tmp_path / "outputs.zip"
    archive.write_bytes(outputs_zip(testset, tmp_path / "clips", pick="target"))
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
        )
        page = browser.new_page(viewport={"width": 1500, "height": 900})
        try:
            # a refused archive: the problems are named in the page
            page.goto(f"{base}/submit")
            page.fill("input[name=token]", TOKEN)
            page.fill("input[name=method]", "browser-edit")
            bad = tmp_path / "bad.zip"
            bad.write_bytes(b"not a zip at all")
            page.set_input_files("input[name=archive]", str(bad))
            page.click("button[type=submit]")
            page.wait_for_selector("ul.problems li", timeout=30_000)
            assert "not a zip archive" in page.inner_text("ul.problems")

            # a good one: accepted, scored by the server, on the board
            page.set_input_files("input[name=archive]", str(archive))
            page.fill("input[name=settings]", json.dumps({"note": "ground truth through H.264"}))
            page.click("button[type=submit]")
            page.wait_for_selector("#submission-link", timeout=30_000)
            page.click("#submission-link")
            deadline = time.monotonic() + 120
            while page.inner_text("#status").strip() != "scored":
                assert page.inner_text("#status").strip() in ("queued", "scoring"), log_tail()
                assert time.monotonic() < deadline, f"not scored within 120 s\n{log_tail()}"
                time.sleep(0.5)
                page.reload()
            page.goto(f"{base}/board")
            row = page.locator("#leaderboard tbody tr", has_text="browser-edit")
            assert row.count() == 1
            rows = page.locator("#leaderboard tbody tr")
            assert rows.count() == 3
            if shots:
                page.screenshot(path=str(Path(shots) / "board_leaderboard.png"), full_page=True)
            # sorting by a column header: ascending composite puts identity (the no-edit bound) first
            assert "ground-truth" in rows.first.inner_text()
            header = page.locator("#leaderboard th", has_text="composite")
            header.click()
            header.click()
            assert "identity" in rows.first.inner_text()
            if shots:
                page.goto(f"{base}/cases/{testset.cases[1].id}")
                page.wait_for_function("[...document.images].every((i) => i.complete && i.naturalWidth > 0)")
                page.screenshot(path=str(Path(shots) / "board_case.png"), full_page=True)

            # the arena: three votes, then the ratings page counts them
            page.goto(f"{base}/arena")
            page.fill("#token", RATER)
            for _ in range(3):
                page.click("#next")
                page.wait_for_function(
                    "(() => { const i = document.getElementById('right');"
                    " return !document.getElementById('ballot').hidden"
                    " && i.complete && i.naturalWidth > 0; })()",
                    timeout=30_000,
                )
                if shots and _ == 0:
                    page.screenshot(path=str(Path(shots) / "board_arena.png"), full_page=True)
                page.click("#choices button[data-vote=left]")
                page.wait_for_function(
                    "document.getElementById('message').textContent.startsWith('recorded')", timeout=30_000
                )
            # one Likert rating of a single edit
            page.goto(f"{base}/rate")
            page.fill("#token", RATER)
            page.click("#next")
            page.wait_for_function(
                "(() => { const i = document.getElementById('output');"
                " return !document.getElementById('rating').hidden && i.complete && i.naturalWidth > 0; })()",
                timeout=30_000,
            )
            for name, value in (("edit_accuracy", 4), ("preservation", 5), ("temporal", 3), ("overall", 4)):
                page.check(f"input[name={name}][value='{value}']")
            page.click("#rating button[type=submit]")
            page.wait_for_function(
                "document.getElementById('message').textContent.startsWith('recorded')", timeout=30_000
            )
            likert = _get(f"{base}/api/ratings")["likert"]
            assert likert["ratings"] == 1
            (rated,) = likert["methods"]
            assert rated["overall"]["mean"] == 4 and rated["temporal"]["mean"] == 3

            page.goto(f"{base}/ratings")
            # some ballots may be attention checks (10% by default): they are counted apart
            counted = _get(f"{base}/api/ratings")
            assert counted["votes"] + counted["checks"] == 3
            if counted["votes"]:
                votes = sum(int(c) for c in page.locator("#ratings td.votes").all_inner_texts())
                assert votes == 2 * counted["votes"], "each vote counts for both methods of its pair"
            if shots:
                page.screenshot(path=str(Path(shots) / "board_ratings.png"), full_page=True)
        finally:
            browser.close()
