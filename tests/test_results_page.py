"""The shipped results page and reports link only files that are in the repository, and the page
regenerates (``benchmarks/results_page.py``) with every link resolving."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
LINK = re.compile(r"\]\(([^)#\s]+)\)")


def _links(markdown: Path) -> list[Path]:
    return [(markdown.parent / target).resolve() for target in LINK.findall(markdown.read_text())
            if "://" not in target]


def _tracked() -> set[Path]:
    listed = subprocess.run(["git", "ls-files", "benchmarks/results"], cwd=ROOT, capture_output=True, text=True)
    return {(ROOT / line).resolve() for line in listed.stdout.splitlines()} if listed.returncode == 0 else set()


def test_every_shipped_report_links_files_in_the_repository():
    tracked = _tracked()
    pages = sorted(RESULTS.rglob("*.md"))
    assert RESULTS / "README.md" in pages
    for page in pages:
        for target in _links(page):
            assert target.is_file(), f"{page.relative_to(ROOT)} links {target} which does not exist"
            assert not tracked or target in tracked, f"{page.relative_to(ROOT)} links untracked {target}"


def test_the_page_regenerates_with_every_link_resolving(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "results_page.py"), "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    page = tmp_path / "README.md"
    links = _links(page) + _links(tmp_path / "code_sweep_default" / "report.md")
    assert len(links) >= 10 and all(target.is_file() for target in links)
    shipped = (RESULTS / "README.md").read_text()
    for line in page.read_text().splitlines():
        if line.startswith("| ") and "](" not in line:  # table rows read the stored tables: same as shipped
            assert line in shipped
