"""Every relative link in the README and docs/ points at a file that exists, and every ``#anchor`` at a
heading of that file (GitHub's heading slugs), so that moving a section between guides cannot leave a
dead link behind."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "benchmarks" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"<[^>]+>", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def prose_lines(path: Path) -> list[tuple[int, str]]:
    """The lines outside fenced code blocks, with their numbers."""
    lines, fenced = [], False
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced:
            lines.append((number, line))
    return lines


def anchors(path: Path) -> set[str]:
    """The anchors of ``path``'s headings; a repeated heading gets ``-1``, ``-2``... as on GitHub."""
    seen: dict[str, int] = {}
    found = set()
    for _, line in prose_lines(path):
        match = re.match(r"#{1,6}\s+(.*)", line)
        if match:
            base = slug(match.group(1))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def dead_links(path: Path) -> list[str]:
    dead = []
    for number, line in prose_lines(path):
        for target in LINK.findall(re.sub(r"`[^`]*`", "", line)):  # code spans are not links
            if re.match(r"[a-z][a-z0-9+.-]*:", target):
                continue  # http:, mailto: ...
            file, _, anchor = target.partition("#")
            destination = (path.parent / file).resolve() if file else path
            if not destination.exists():
                dead.append(f"{path.name}:{number}: no file {target}")
            elif anchor and destination.suffix == ".md" and anchor not in anchors(destination):
                dead.append(f"{path.name}:{number}: no heading for {target}")
    return dead


def test_slug_follows_github():
    assert slug("Methods (`--method`)") == "methods---method"
    assert slug("Where fvd_toy comes from, and a video that ignores its structure (2026-12-05)") == (
        "where-fvd_toy-comes-from-and-a-video-that-ignores-its-structure-2026-12-05"
    )


def test_a_dead_link_is_found(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Title\n\n[ok](#title) [gone](#nowhere) [file](missing.md)\n```\n[code](x.md)\n```\n")
    assert dead_links(page) == ["page.md:3: no heading for #nowhere", "page.md:3: no file missing.md"]


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_docs_links_resolve(path):
    assert dead_links(path) == []
