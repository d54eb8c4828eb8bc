"""The documents are checked like the code: every `authorgen` command line in README.md and
docs/ names a command and options that exist, and every link to a file in the repository leads
to one."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from authorgen.cli import app

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
GROUPS = {"corpora", "runs"}  # commands with subcommands


def command_lines(text: str) -> list[str]:
    """The `authorgen ...` invocations in a page's code blocks, each cut at a pipe, `;`, a
    redirection or a comment."""
    found, in_code = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            in_code = not in_code
            continue
        if not in_code:
            continue
        for part in re.split(r"[|;]|\s#\s|\s>\s", line):
            words = part.strip().removeprefix("$ ").split()
            if "authorgen" in words:
                found.append(" ".join(words[words.index("authorgen") :]))
    return found


def _command_and_options(line: str) -> tuple[list[str], list[str]]:
    words = shlex.split(line)[1:]
    command = words[:1]
    if command and command[0] in GROUPS and len(words) > 1 and words[1] == "show":
        command.append("show")
    options = [w.split("=")[0] for w in words if w.startswith("-") and w not in ("-", "-n")]
    return command, options


def _help(command: list[str]) -> str:
    out = CliRunner().invoke(app, [*command, "--help"], terminal_width=200)
    assert out.exit_code == 0, f"authorgen {' '.join(command)}: {out.output}"
    return out.output


CASES = [(page.name, line) for page in PAGES for line in command_lines(page.read_text())]


def test_the_pages_have_command_lines_to_check():
    assert len(CASES) > 30
    assert command_lines("```bash\n$ echo x | authorgen generate r -n 3 --seed 1 > out\n```") == [
        "authorgen generate r -n 3 --seed 1"
    ]


@pytest.mark.parametrize(("page", "line"), CASES)
def test_each_command_line_names_options_the_command_has(page, line):
    command, options = _command_and_options(line)
    if not command or command[0].startswith("-"):
        assert set(options) <= {"--help", "-h", "--version"}, line
        return
    shown = _help(command)
    for option in options:
        assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", shown), (
            f"{page}: `{line}`: authorgen {' '.join(command)} has no {option}"
        )


def test_a_misspelt_option_is_caught():
    command, options = _command_and_options("authorgen train jane-austen --hiden 5")
    assert "--hiden" not in _help(command) and options == ["--hiden"]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_links_to_files_lead_to_files(page):
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
        if "://" in target:
            continue
        assert (page.parent / target).exists(), f"{page.name} links to missing {target}"
