"""Every tokenizer through training and generation: the loss in nats per character, Polish text,
word vectors, the command line and its errors."""

from __future__ import annotations

import gzip
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from authorgen.checkpoint import load_run
from authorgen.config import ModelConfig, SampleConfig, TokenizerConfig, TrainConfig
from authorgen.corpus import Split
from authorgen.errors import DataError, UsageError
from authorgen.sample import generate
from authorgen.tokenizer import WordTokenizer
from authorgen.train import train
from authorgen.vectors import read_word_vectors, vector_dim
from helpers import run_cli
from texts import ENGLISH, FRENCH, POLISH

TINY_MODEL = ModelConfig(hidden=32, embedding_dim=16, layers=1)


def tiny_train(split: Split, run_dir, tokenizer: TokenizerConfig, steps: int = 3, **train):
    config = TrainConfig(
        steps=steps, eval_every=steps, batch_size=4, context=16, lr=1e-2, device="cpu", **train
    )
    return train_run(split, config, run_dir, tokenizer)


def train_run(split, config, run_dir, tokenizer):
    run_dir.mkdir()
    return train(split, TINY_MODEL, config, run_dir, tokenizer_config=tokenizer)


def hand_nll(model, ids: list[int], streams: int = 64) -> float:
    """The summed NLL of ids[1:], the text cut into `streams` rows run each from a zero state
    (as validation does), computed token by token with log-softmax."""
    n = len(ids) - 1
    streams = min(streams, n)
    length = -(-n // streams)
    total = 0.0
    with torch.no_grad():
        for r in range(streams):
            row = ids[r * length : min((r + 1) * length, n) + 1]
            if len(row) < 2:
                continue
            logits, _ = model(torch.tensor([row[:-1]]))
            logp = F.log_softmax(logits[0].double(), dim=-1)
            total -= sum(logp[t, row[t + 1]].item() for t in range(len(row) - 1))
    return total


@pytest.mark.parametrize(
    ("kind", "first_token"),
    [("char", "A"), ("word", "Alpha"), ("bpe", None)],
)
def test_val_loss_is_nats_per_character_of_the_original_text(tmp_path, kind, first_token):
    train_text = (ENGLISH + FRENCH) * 6
    val_text = "Alpha and omega, said the old man; the boats came back at noon.\n" * 3 + "Z@#"
    split = Split.from_texts(train_text, val_text, "hand split")
    vocab = {"char": None, "word": 300, "bpe": 320}[kind]
    result = tiny_train(split, tmp_path / "run", TokenizerConfig(kind, vocab_size=vocab))
    run = load_run(result.run_dir, last=True)
    rows = [json.loads(x) for x in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 3
    ids = run.tokenizer.encode(val_text)
    if first_token is None:  # a subword: whatever the first piece spells
        first_token = run.tokenizer.decode(ids[:1])
    assert val_text.startswith(first_token)
    chars = len(val_text) - len(first_token)  # every character after the first token
    expected = hand_nll(run.model, ids) / chars
    assert rows[-1]["val_loss"] == pytest.approx(expected, rel=1e-5)
    assert rows[-1]["val_bpc"] == pytest.approx(expected / math.log(2), rel=1e-5)
    config = json.loads((result.run_dir / "config.json").read_text())
    assert config["data"]["val_tokens"] == len(ids)
    assert config["tokenizer"]["tokens_per_char"] == pytest.approx(
        len(run.tokenizer.encode(train_text)) / len(train_text), rel=1e-4
    )
    if kind == "char":  # "Z", "@" and "#" only in the validation text: <unk>, paid for
        assert config["data"]["val_unk_tokens"] == 3


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["char", "word", "bpe", "unigram"])
def test_every_tokenizer_writes_polish_with_its_letters_intact(tmp_path, kind):
    text = POLISH * 12
    cut = int(len(text) * 0.9)
    split = Split.from_texts(text[:cut], text[cut:], "polish")
    vocab = {"char": None, "word": 2000, "bpe": 400, "unigram": 400}[kind]
    config = TrainConfig(steps=150, eval_every=150, batch_size=8, context=32, lr=1e-2, device="cpu")
    result = train_run(split, config, tmp_path / "run", TokenizerConfig(kind, vocab_size=vocab))
    run = load_run(result.run_dir)
    out = "".join(generate(run.model, run.tokenizer, "", SampleConfig(temperature=0.7), seed=3))
    assert len(out) >= 500
    assert "\ufffd" not in out  # no broken bytes, no <unk>
    assert set(out) <= set(text)  # nothing but the book's own characters
    assert set(out) & set("ąćęłńóśźżĄĆĘŁŃÓŚŹŻ")  # and its Polish letters among them


# --- word vectors -------------------------------------------------------------------------------


def glove_file(path, vectors: dict[str, list[float]], header: bool = False):
    lines = [f"{len(vectors)} {len(next(iter(vectors.values())))}"] if header else []
    lines += [" ".join([word, *map(str, vec)]) for word, vec in vectors.items()]
    data = "\n".join(lines) + "\n"
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(data.encode()))
    else:
        path.write_text(data, encoding="utf-8")
    return path


@pytest.mark.parametrize("name", ["vectors.txt", "vectors.txt.gz"])
def test_word_vectors_cover_the_vocabulary_they_match(tmp_path, name):
    tok = WordTokenizer.train(["The cat sat . the cat ran . Żółw"], vocab_size=100)
    # tokens: <unk> the . cat The Żółw ran sat
    path = glove_file(
        tmp_path / name,
        {"the": [1, 2, 3], "cat": [4, 5, 6], "żółw": [7, 8, 9], "dog": [0, 0, 1]},
        header=True,
    )
    assert vector_dim(path) == 3
    ids = np.array(tok.encode("the cat the The sat"), dtype=np.uint16)
    vectors = read_word_vectors(path, tok, ids)
    found = {tok.tokens[i] for i in np.flatnonzero(vectors.found)}
    assert found == {"the", "The", "cat", "Żółw"}  # the cased ones through lowercase
    assert vectors.type_share == pytest.approx(4 / 7)
    assert vectors.token_share == pytest.approx(4 / 5)  # "sat" has no vector
    assert vectors.matrix[tok.index["Żółw"]].tolist() == [7, 8, 9]
    embedding = torch.nn.Embedding(tok.vocab_size, 3)
    vectors.copy_into(embedding)
    assert embedding.weight[tok.index["cat"]].tolist() == [4, 5, 6]


def test_damaged_or_foreign_word_vectors_are_refused(tmp_path):
    tok = WordTokenizer.train(["the cat sat"], vocab_size=100)
    ids = np.array(tok.encode("the cat"), dtype=np.uint16)
    bad = tmp_path / "bad.txt"
    bad.write_text("the 1 2 3\ncat 1 2\n")
    with pytest.raises(DataError, match="line 2"):
        read_word_vectors(bad, tok, ids)
    foreign = glove_file(tmp_path / "fr.txt", {"chat": [1.0, 2.0]})
    with pytest.raises(DataError, match="none of the"):
        read_word_vectors(foreign, tok, ids)
    with pytest.raises(UsageError, match="--tokenizer word"):
        read_word_vectors(foreign, type("T", (), {"kind": "bpe"})(), ids)
    with pytest.raises(DataError, match="no word-vector file"):
        vector_dim(tmp_path / "missing.txt")


# --- the command line ---------------------------------------------------------------------------

TINY = ("--hidden", "32", "--batch-size", "8", "--context", "32", "--device", "cpu")


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """A corpus of the test texts, fetched from a local file."""
    home = tmp_path_factory.mktemp("home")
    source = home / "book.txt"
    source.write_text((ENGLISH + FRENCH) * 20, encoding="utf-8")
    assert run_cli("fetch", str(source), "--name", "book", home=home).returncode == 0
    return home


@pytest.mark.slow
def test_subword_run_trains_generates_and_reuses_the_cached_ids(home):
    args = ("train", "book", "--tokenizer", "bpe", "--vocab-size", "400", *TINY, "--steps", "20")
    first = run_cli(*args, home=home)
    assert first.returncode == 0, first.stderr
    run_dir = home / "checkpoints" / "book-lstm-bpe"
    assert (run_dir / "tokenizer.model").is_file() and (run_dir / "tokenizer.json").is_file()
    config = json.loads((run_dir / "config.json").read_text())
    assert config["tokenizer"]["kind"] == "bpe" and config["tokenizer"]["vocab_size"] == 400
    assert config["tokenizer"]["tokens_per_char"] < 0.7
    assert "made in" in first.stderr and "characters in" in first.stderr

    second = run_cli(*args, "--name", "again", home=home)
    assert second.returncode == 0, second.stderr
    assert second.stderr.count("from the cache") == 2  # the tokenizer and the token ids

    a = run_cli("generate", "book-lstm-bpe", "--length", "300", "--seed", "4", home=home)
    b = run_cli("generate", "again", "--length", "300", "--seed", "4", home=home)
    assert a.returncode == 0, a.stderr
    assert len(a.stdout) >= 300 and "\ufffd" not in a.stdout
    assert a.stdout == b.stdout  # same seed, same data, same tokens: the same text


@pytest.mark.slow
def test_word_run_with_lowercase_and_word_vectors(home, tmp_path):
    vectors = glove_file(
        tmp_path / "glove.txt", {w: [0.1 * i] * 12 for i, w in enumerate(["the", "and", "old"])}
    )
    result = run_cli(
        "train",
        "book",
        "--tokenizer",
        "word",
        "--lowercase",
        "--pretrained-embeddings",
        str(vectors),
        *TINY,
        "--steps",
        "20",
        home=home,
    )
    assert result.returncode == 0, result.stderr
    assert "word vectors glove.txt: 3 of" in result.stderr
    config = json.loads((home / "checkpoints" / "book-lstm-word" / "config.json").read_text())
    assert config["model"]["embedding_dim"] == 12  # fitted to the vectors
    assert config["pretrained_embeddings"]["words_found"] == 3
    assert config["tokenizer"]["lowercase"] is True
    out = run_cli("generate", "book-lstm-word", "--length", "200", "--seed", "1", home=home)
    assert out.returncode == 0, out.stderr
    first_letter = next(c for c in out.stdout if c.isalpha())
    assert first_letter.isupper(), out.stdout[:80]  # a paragraph starts with a capital
    assert "  " not in out.stdout  # words are spaced once
    prompt = run_cli(
        "generate", "book-lstm-word", "--prompt", "The zyzzyva", "--length", "50", home=home
    )
    assert prompt.returncode == 0 and prompt.stdout.startswith("The zyzzyva")
    assert "read as <unk>: zyzzyva" in prompt.stderr
