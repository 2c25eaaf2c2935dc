"""The README's Python blocks run as written, each in a fresh interpreter with nothing but its own imports; its
shell blocks' project commands parse as written; its links lead somewhere.

A block may say `(the README test runs N)` in a comment: the test then runs it with the call on that line
taking N instead of its figure (so `learn(100_000)` takes minutes for a reader and seconds here)."""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import shlex
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


BASH_BLOCKS = re.findall(r"^```bash\n(.*?)^```", (REPO / "README.md").read_text(), flags=re.S | re.M)
NOT_OURS = {"pip", "ruff", ".", "python3 -m venv", "python -m pytest"}
"""Programs of the README's shell blocks that are not this project's commands (set up, lint, test)."""


def shell_commands(block: str) -> list[list[str]]:
    """The commands of a shell block: lines joined at a trailing backslash, comments dropped, split at `&&`;
    variable assignments (`D=...`) left out."""
    commands = []
    for line in block.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        while words:
            cut = words.index("&&") if "&&" in words else len(words)
            command, words = words[:cut], words[cut + 1 :]
            if command and not re.match(r"^[A-Z_]+=", command[0]):
                commands.append(command)
    return commands


class Parsed(Exception):
    """Raised by the patched `CommandLine.parse_args` once a command line has parsed."""


def project_command(words: list[str]):
    """(what to call with the argv, the argv) for one of this project's commands, else None."""
    if words[0] == "torchrun":  # torchrun [its options] -m MODULE ARGS...
        words = ["python", *words[words.index("-m") :]]
    if words[0] == "spokester":
        from spokester_agents.cli import main

        return main, words[1:]
    if words[0] in ("python", "python3") and words[1] == "-m" and f"{words[0]} -m {words[2]}" not in NOT_OURS:
        module = importlib.import_module(words[2])
        if not hasattr(module, "main"):  # a package run by its __main__
            module = importlib.import_module(words[2] + ".__main__")
        return module.main, words[3:]
    if words[0] in ("python", "python3") and words[1].startswith("scripts/"):
        spec = importlib.util.spec_from_file_location("readme_script", REPO / words[1])
        script = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(script)
        return script.main, words[2:]
    return None


def test_shell_commands_are_found():
    commands = shell_commands("D=/x\npython -m a.b --x $D/y \\\n  --z 2  # note\nruff check . && python -m c\n")
    assert commands == [
        ["python", "-m", "a.b", "--x", "$D/y", "--z", "2"],
        ["ruff", "check", "."],
        ["python", "-m", "c"],
    ]


@pytest.mark.parametrize(
    "words", [c for b in BASH_BLOCKS for c in shell_commands(b)], ids=lambda words: " ".join(words)[:60]
)
def test_readme_shell_command_parses(words, monkeypatch, capsys):
    """Each of the project's commands in the README's shell blocks is accepted by its parser as written (what
    it would then do needs GPUs, footage or minutes); the rest are known set-up, lint and test commands."""
    found = project_command(words)
    if found is None:
        assert words[0] in NOT_OURS or " ".join(words[:3]) in NOT_OURS, f"an unknown program: {words}"
        return
    from spokester_env.commandline import CommandLine

    real = CommandLine.parse_args

    def parse_then_stop(self, *args, **kwargs):
        raise Parsed(real(self, *args, **kwargs))

    monkeypatch.setattr(CommandLine, "parse_args", parse_then_stop)
    if "cuda" in words:  # the README's GPU commands, on a host of one GPU as far as their parsers can tell
        torch = pytest.importorskip("torch")
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    main, argv = found
    with pytest.raises(Parsed):
        main(argv)
