"""Issue 29: `train CORPUS --from RUN`: a base's weights and tokenizer, new characters as new
rows, `--steps 0`, exact resume, lineage, and refusals."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from authorgen.base import LR_SCALE, WARMUP_STEPS, Base
from authorgen.config import TokenizerConfig, TrainOptions
from authorgen.errors import Interrupted
from authorgen.tokenizer import load_tokenizer
from authorgen.train import resume, train_corpus
from helpers import StopAt, data_file, run_cli, run_in_process
from serving import Server

TINY = {
    "model": "lstm", "layers": 2, "hidden": 24, "embedding_dim": 8, "dropout": 0.1,
    "context": 16, "batch_size": 4, "lr": 1e-2, "device": "cpu", "eval_every": 10,
}  # fmt: skip


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    """A home with an English library (Shakespeare and Twain), a tiny base trained on it, and
    Flaubert in French, whose accented letters the base never saw."""
    home = tmp_path_factory.mktemp("home")
    for name, files in {
        "library": ["tinyshakespeare.txt", "pg76-adventures-of-huckleberry-finn.txt"],
        "flaubert": ["pg14155-madame-bovary.txt"],
        "twain": ["pg76-adventures-of-huckleberry-finn.txt"],
    }.items():
        for file in files:
            done = run_cli("fetch", str(data_file(file)), "--name", name, "-q", home=home)
            assert done.returncode == 0, done.stderr
    train_corpus(
        home / "corpora", home / "checkpoints", "library", TrainOptions(**TINY, steps=30),
        run_name="base",
    )  # fmt: skip
    return home


def _dirs(home):
    return home / "corpora", home / "checkpoints"


def _tune(home, corpus, name, **options):
    corpora, checkpoints = _dirs(home)
    settings = TrainOptions(**{"device": "cpu", "eval_every": 10, **options})
    return train_corpus(corpora, checkpoints, corpus, settings, run_name=name, base="base")


def test_the_base_is_copied_exactly_and_new_characters_get_rows_at_the_mean(library):
    result = _tune(library, "flaubert", "flaubert-as-is", steps=0)
    base_dir = library / "checkpoints" / "base"
    old, new = load_tokenizer(base_dir), load_tokenizer(result.run_dir)
    added = sorted(set(new.chars) - set(old.chars))
    assert {"é", "à", "è"} <= set(added) and set(old.chars) <= set(new.chars)
    before = load_file(str(base_dir / "model.safetensors"))
    after = load_file(str(result.run_dir / "model.safetensors"))
    assert before.keys() == after.keys()
    rows = [new.index[c] for c in old.chars] + [new.unk_id]  # each base token's new id
    fresh = [new.index[c] for c in added]
    vocab_shaped = set()
    for name, tensor in before.items():
        if tensor.shape == after[name].shape:
            assert torch.equal(tensor, after[name]), name
            continue
        vocab_shaped.add(name)
        assert torch.equal(after[name][rows], tensor), name  # old rows untouched
        for i in fresh:
            assert torch.equal(after[name][i], tensor.mean(dim=0)), name
    assert vocab_shaped == {"embedding.weight", "head.weight", "head.bias"}
    config = json.loads((result.run_dir / "config.json").read_text())
    base_config = json.loads((base_dir / "config.json").read_text())
    lineage = config["base"]
    assert lineage["name"] == "base" and lineage["corpus"] == "library"
    assert lineage["corpus_sha256"] == base_config["data"]["corpus_sha256"]
    assert lineage["val_loss"] == base_config["best"]["val_loss"]
    assert lineage["added_tokens"] == len(added) and lineage["added_chars"] == "".join(added)
    assert config["model"] == {**base_config["model"], "vocab_size": new.vocab_size}
    assert config["result"]["steps"] == 0 and config["status"] == "finished"


def test_steps_0_evaluates_exactly_the_base(library):
    # the base's own corpus and split: the run as it is scores what the base scored
    result = _tune(library, "library", "library-as-is", steps=0)
    base = json.loads((library / "checkpoints" / "base" / "config.json").read_text())
    assert result.best_val_loss == base["best"]["val_loss"]
    assert (
        load_tokenizer(result.run_dir).chars
        == load_tokenizer(library / "checkpoints" / "base").chars
    )


def test_a_fine_tune_plans_as_one_and_learns(library):
    result = _tune(library, "twain", "twain-tuned", steps=20)
    config = json.loads((result.run_dir / "config.json").read_text())
    base = json.loads((library / "checkpoints" / "base" / "config.json").read_text())
    assert config["train"]["lr"] == pytest.approx(base["train"]["lr"] * LR_SCALE)
    assert config["train"]["warmup_steps"] == WARMUP_STEPS
    assert config["train"]["context"] == base["train"]["context"]
    assert any(line.startswith("fine-tuning base") for line in config["data"]["plan"])
    as_is = _tune(library, "twain", "twain-as-is", steps=0)
    assert result.best_val_loss < as_is.best_val_loss


def test_a_fine_tune_interrupted_resumes_bit_for_bit(library):
    corpora, checkpoints = _dirs(library)
    settings = TrainOptions(**{**TINY, "steps": 25})
    whole = train_corpus(corpora, checkpoints, "flaubert", settings, run_name="whole", base="base")
    with pytest.raises(Interrupted):
        train_corpus(
            corpora, checkpoints, "flaubert", settings, run_name="cut", base="base",
            callback=StopAt(12),
        )  # fmt: skip
    resume(corpora, checkpoints, "cut")
    # killed before its first state: the resume starts from the base again, as the run did
    with pytest.raises(Interrupted):
        train_corpus(
            corpora, checkpoints, "flaubert", settings, run_name="early", base="base",
            callback=StopAt(3),
        )  # fmt: skip
    shutil.rmtree(checkpoints / "early" / "last")
    resume(corpora, checkpoints, "early")
    for run in ("cut", "early"):
        for file in ("model.safetensors", "last/model.safetensors"):
            a, b = load_file(str(whole.run_dir / file)), load_file(str(checkpoints / run / file))
            assert all(torch.equal(a[k], b[k]) for k in a), (run, file)
        assert json.loads((checkpoints / run / "config.json").read_text())["base"]["name"] == "base"


def test_resume_refuses_a_base_whose_weights_changed(library):
    corpora, checkpoints = _dirs(library)
    shutil.copytree(checkpoints / "base", checkpoints / "base2")
    with pytest.raises(Interrupted):
        train_corpus(
            corpora, checkpoints, "twain", TrainOptions(**{**TINY, "steps": 9}),
            run_name="orphan", base="base2", callback=StopAt(2),
        )  # fmt: skip
    shutil.rmtree(checkpoints / "orphan" / "last")
    weights = checkpoints / "base2" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\0")
    done = run_in_process("train", "--resume", "orphan", home=library)
    assert done.returncode == 4 and done.stderr.count("\n") == 1
    assert "other weights than when this run began" in done.stderr


def test_lineage_shows_in_runs_and_the_api(library):
    _tune(library, "twain", "twain-lineage", steps=0)
    done = run_in_process("runs", "--json", home=library)
    rows = {r["run"]: r for r in json.loads(done.stdout)}
    assert rows["twain-lineage"]["base"]["name"] == "base"
    assert rows["base"]["base"] is None
    table = run_in_process("runs", home=library, env={"COLUMNS": "250"})
    assert "twain (from base)" in table.stdout + table.stderr
    with Server(library) as server:
        models = {m["id"]: m for m in server.get("/v1/models").json()["data"]}
    assert models["twain-lineage"]["base"] == {
        "name": "base",
        "corpus": "library",
        "val_bpc": rows["twain-lineage"]["base"]["val_bpc"],
        "added_tokens": 0,
    }
    assert models["base"]["base"] is None


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["--from", "nosuch"], 4, "no run named 'nosuch'"),
        (["--from", "base", "--layers", "3"], 2, "--layers 3 contradicts the base base (2)"),
        (["--from", "base", "--model", "gru"], 2, "--model gru contradicts the base base (lstm)"),
        (["--from", "base", "--tokenizer", "word"], 2, "the tokenizer comes from the base"),
        (["--from", "base", "--preset", "tiny"], 2, "--preset sizes a new model"),
        (["--steps", "0"], 2, "--steps 0 trains nothing"),
    ],
    ids=["missing", "layers", "model", "tokenizer", "preset", "steps-0-alone"],
)
def test_bad_input_is_one_line_and_leaves_no_run(library, args, code, message):
    before = sorted(p.name for p in (library / "checkpoints").iterdir())
    done = run_in_process("train", "twain", "--name", "refused", *args, home=library)
    assert done.returncode == code, done.stderr
    assert message in done.stderr and done.stderr.count("\n") == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert sorted(p.name for p in (library / "checkpoints").iterdir()) == before


def test_a_damaged_base_and_a_word_base_are_refused(library):
    corpora, checkpoints = _dirs(library)
    shutil.copytree(checkpoints / "base", checkpoints / "broken")
    (checkpoints / "broken" / "model.safetensors").write_bytes(b"not weights")
    done = run_in_process("train", "twain", "--from", "broken", home=library)
    assert done.returncode == 4 and done.stderr.count("\n") == 1, done.stderr
    assert "cannot load" in done.stderr
    train_corpus(
        corpora, checkpoints, "twain",
        TrainOptions(**{**TINY, "steps": 2, "context": 8}), run_name="words",
        tokenizer_config=TokenizerConfig(kind="word", vocab_size=200),
    )  # fmt: skip
    done = run_in_process("train", "twain", "--from", "words", home=library)
    assert done.returncode == 2 and "reads words" in done.stderr, done.stderr
    assert not (checkpoints / "twain-from-words").exists()


def test_base_describes_what_it_adds(library):
    base = Base.open("base", library / "checkpoints")
    tokenizer = type(base.tokenizer)(sorted([*base.tokenizer.chars, "\u0153"]))
    assert "plus 1 character it lacked ('\u0153')" in base.describe(tokenizer)


def test_a_library_gathers_authors_ebooks_and_files_with_their_provenance(mirror, home):
    at = ("--name", "library", "--delay", "0", "--mirror", mirror, "-q")
    for source in (
        ["Lewis Carroll", "--limit", "1"],
        ["--id", "1342"],
        [str(data_file("tinyshakespeare.txt"))],
    ):
        done = run_cli("fetch", *source, *at, home=home)
        assert done.returncode == 0, done.stderr
    works = json.loads((home / "corpora" / "library" / "corpus.json").read_text())["works"]
    assert [w["authors"] for w in works][:2] == [["Lewis Carroll"], ["Jane Austen"]]
    assert [w["source"] for w in works] == ["gutenberg", "gutenberg", "local"]
    assert all(w["sha256_raw"] and w["url"] for w in works)


def test_generate_reports_copies_from_the_base_corpus_when_asked(library):
    _tune(library, "twain", "twain-against", steps=0)
    args = ("generate", "twain-against", "--length", "200", "--seed", "3", "--against-base")
    plain = run_in_process(*args, home=library)
    assert plain.returncode == 0, plain.stderr
    assert "against the base's corpus (library): longest copy" in plain.stderr
    row = json.loads(run_in_process(*args, "--json", home=library).stdout)
    # the base read Twain too: its corpus holds at least the copies the run's own corpus finds
    assert row["base_originality"]["longest_copy_chars"] >= row["originality"]["longest_copy_chars"]
    refused = run_in_process("generate", "base", "--against-base", home=library)
    assert refused.returncode == 2 and "was not fine-tuned from a base" in refused.stderr
    assert refused.stderr.count("\n") == 1


def test_compare_puts_the_fine_tune_and_the_base_beside_scratch(library):
    done = run_in_process(
        "compare", "twain", "--models", "lstm", "--from", "base", "--steps", "6",
        "--samples", "0", "--json", home=library,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = {r["run"]: r for r in json.loads(done.stdout)}
    assert set(rows) == {
        "twain-compare-lstm-char",
        "twain-compare-base-tuned",
        "twain-compare-base-as-is",
    }
    assert rows["twain-compare-base-as-is"]["steps"] == 0
    assert rows["twain-compare-base-tuned"]["steps"] == 6
    assert rows["twain-compare-base-tuned"]["base"] == "base"
    assert rows["twain-compare-lstm-char"]["base"] is None
    tuned = json.loads(
        (library / "checkpoints" / "twain-compare-base-tuned" / "config.json").read_text()
    )
    assert tuned["base"]["name"] == "base"
    assert (library / "checkpoints" / "twain-compare.png").stat().st_size > 0


def test_a_subword_transformer_base_keeps_its_tokenizer_and_spells_new_letters(library):
    corpora, checkpoints = _dirs(library)
    tiny = {
        "model": "transformer", "layers": 2, "heads": 2, "embedding_dim": 16, "context": 24,
        "batch_size": 4, "lr": 3e-3, "device": "cpu", "steps": 10, "eval_every": 10,
    }  # fmt: skip
    train_corpus(
        corpora, checkpoints, "library", TrainOptions(**tiny), run_name="gpt-base",
        tokenizer_config=TokenizerConfig(kind="bpe", vocab_size=320),
    )  # fmt: skip
    tuned = train_corpus(
        corpora, checkpoints, "flaubert", TrainOptions(steps=0, device="cpu"),
        run_name="gpt-flaubert", base="gpt-base",
    )  # fmt: skip
    base_dir = checkpoints / "gpt-base"
    before = load_file(str(base_dir / "model.safetensors"))
    after = load_file(str(tuned.run_dir / "model.safetensors"))
    assert all(torch.equal(before[k], after[k]) for k in before) and before.keys() == after.keys()
    for file in ("tokenizer.json", "tokenizer.model"):
        assert (base_dir / file).read_bytes() == (tuned.run_dir / file).read_bytes()
    config = json.loads((tuned.run_dir / "config.json").read_text())
    assert config["base"]["added_tokens"] == 0 and config["tokenizer"]["kind"] == "bpe"
    # letters the base never read are spelled in bytes, in a prompt and in what is written
    done = run_in_process(
        "generate", "gpt-flaubert", "--prompt", "Emma était", "--length", "40", "-n", "2",
        "--seed", "1", home=library,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Emma était") and done.stdout.count("\n%\n") == 1


def test_a_char_fine_tune_takes_prompts_with_the_new_letters(library):
    _tune(library, "flaubert", "flaubert-prompt", steps=0)
    done = run_in_process(
        "generate", "flaubert-prompt", "--prompt", "Emma était", "--length", "60", "--seed", "2",
        home=library,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Emma était")
    refused = run_in_process("generate", "base", "--prompt", "Emma était", home=library)
    assert refused.returncode == 4 and "never saw in training: 'é'" in refused.stderr


def test_a_bf16_base_from_another_cpu_is_fine_tuned_in_what_this_cpu_has(library, monkeypatch):
    import authorgen.base

    base = Base.open("base", library / "checkpoints")
    base.config = {**base.config, "precision": "bf16", "device": "cpu"}
    options = TrainOptions(steps=1)
    monkeypatch.setattr(authorgen.base, "cpu_has_bf16", lambda: True)
    assert base.plan(options, "cpu").train.precision == "bf16"
    monkeypatch.setattr(authorgen.base, "cpu_has_bf16", lambda: False)
    assert base.plan(options, "cpu").train.precision == "auto"
    assert base.plan(TrainOptions(steps=1, precision="fp32"), "cpu").train.precision == "fp32"
    assert base.plan(options, "cuda").train.precision == "auto"  # another kind of device
