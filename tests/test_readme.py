"""The README's Python blocks run as written, each in a fresh interpreter with nothing but its own imports.

A block may say `(the README test runs N)` in a comment: the test then runs it with the call on that line
taking N instead of its figure (so `learn(100_000)` takes minutes for a reader and seconds here)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SMALLER = re.compile(r"\((?P<value>[\d_]+)\)(?P<rest>.*\(the README test runs (?P<test>[\d_]+)\))")


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def as_tested(block: str) -> str:
    """The block with each `f(N)  # ... (the README test runs M)` line calling f(M)."""
    return SMALLER.sub(lambda m: f"({m['test']}){m['rest']}", block)


BLOCKS = python_blocks((REPO / "README.md").read_text())


def test_the_readme_has_its_python_blocks_and_the_marker_does_what_it_says():
    assert len(BLOCKS) >= 3
    assert as_tested("m.learn(100_000)  # 9 minutes (the README test runs 64)\n") == (
        "m.learn(64)  # 9 minutes (the README test runs 64)\n"
    )
    assert as_tested("x = f(3)\n") == "x = f(3)\n"


@pytest.mark.parametrize(
    "block",
    [pytest.param(b, marks=[pytest.mark.slow] if "learn(" in b else [], id=b.split("\n")[0][:40]) for b in BLOCKS],
)
def test_readme_python_block_runs_as_written(block, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    result = subprocess.run(
        [sys.executable, "-c", as_tested(block)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]


LINK = re.compile(r"\]\((?P<target>[^)\s]+)\)")


def heading_anchors(text: str) -> set[str]:
    """GitHub's anchors of a Markdown file's headings: lower case, punctuation dropped, spaces as hyphens."""
    headings = re.findall(r"^#+ (.+)$", re.sub(r"^```.*?^```", "", text, flags=re.S | re.M), flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_heading_anchors_follow_githubs_rule():
    assert heading_anchors("# A b\n```bash\n# not a heading\n```\n## No tiles: the `x` net\n") == {
        "a-b",
        "no-tiles-the-x-net",
    }


@pytest.mark.parametrize(
    "page", ["README.md", *sorted(p.relative_to(REPO).as_posix() for p in (REPO / "docs").glob("*.md"))]
)
def test_every_link_leads_somewhere(page):
    """Each relative link of the README and the docs names a file that exists, and each #anchor a heading of it."""
    source = REPO / page
    broken = []
    for match in LINK.finditer(source.read_text()):
        target = match["target"]
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        file = (source.parent / path) if path else source
        if not file.exists():
            broken.append(target)
        elif anchor and file.suffix == ".md" and anchor not in heading_anchors(file.read_text()):
            broken.append(target)
    assert not broken, f"{page}: broken links {broken}"
