"""The command itself: help, exit codes documented, torch kept out of what does not need it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from helpers import data_file, run_cli


def test_help_lists_commands_and_exit_codes(tmp_path):
    result = run_cli("--help", home=tmp_path)
    assert result.returncode == 0
    for word in ("fetch", "train", "generate", "Exit codes", "130 interrupted"):
        assert word in result.stdout


def test_version(tmp_path):
    from authorgen import __version__

    assert run_cli("--version", home=tmp_path).stdout == f"authorgen {__version__}\n"


def test_usage_errors_exit_2_without_traceback(tmp_path):
    result = run_cli("train", home=tmp_path)
    assert result.returncode == 2 and "give the corpus to train on" in result.stderr
    assert "Traceback" not in result.stderr


def test_help_fetch_and_corpora_do_not_import_torch(tmp_path):
    book = data_file("pg11-alices-adventures-in-wonderland.txt")
    code = (
        "import sys\n"
        "from authorgen.cli import app\n"
        "for args in (['--help'], ['fetch', sys.argv[1], '--name', 'a', '--corpora-dir',"
        " sys.argv[2], '-q'], ['corpora', '--corpora-dir', sys.argv[2]],"
        " ['corpora', 'show', 'a', '--corpora-dir', sys.argv[2]]):\n"
        "    try:\n"
        "        app(args)\n"
        "    except SystemExit as exc:\n"
        "        assert exc.code in (0, None), exc.code\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(book), str(tmp_path)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "a" / "corpus.json").is_file()


def test_corpora_with_none_yet_says_how_to_make_one(tmp_path):
    listing = run_cli("corpora", home=tmp_path)
    assert listing.returncode == 0 and listing.stdout == ""
    assert 'authorgen fetch "Jane Austen"' in listing.stderr
    assert run_cli("corpora", "--json", home=tmp_path).stdout == "[]\n"
    missing = run_cli("corpora", "show", "nobody", home=tmp_path)
    assert missing.returncode == 4 and "no corpus named 'nobody'" in missing.stderr


@pytest.mark.parametrize(
    "option", [("--lr", "0"), ("--dropout", "2"), ("--layers", "0"), ("--model", "cnn")]
)
def test_train_refuses_a_bad_option_before_torch_loads_or_a_corpus_is_read(tmp_path, option):
    code = (
        "import sys\nfrom authorgen.cli import main\n"
        f"sys.argv = ['authorgen', 'train', 'no-such-corpus', *{list(option)!r}]\n"
        "try:\n    main()\nexcept SystemExit as exc:\n    print(exc.code, 'torch' in sys.modules)\n"
    )
    env = {**os.environ, "AUTHORGEN_HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    # exit 2, not 4 for the missing corpus: the option was checked first, without torch
    assert out.stdout.split() == ["2", "False"], out.stderr
    assert option[0] in out.stderr
