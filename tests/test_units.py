"""Small pure pieces: configs, names, atomic writes, splits, batches, the loss, the schedule."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest
import torch

from authorgen.config import ModelConfig, SampleConfig, TrainConfig, parse_duration
from authorgen.corpus import Corpus, read_chunks, split_corpus, split_text
from authorgen.data import IGNORE, eval_streams, random_windows
from authorgen.errors import DataError, UsageError
from authorgen.files import atomic_write, atomic_write_text, check_name, slugify
from authorgen.losses import validation_loss
from authorgen.models import build_model
from authorgen.optim import learning_rate
from authorgen.tokenizer import UNK_TEXT, CharTokenizer


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90),
        ("90s", 90),
        ("5m", 300),
        ("1h30m", 5400),
        ("1.5h", 5400),
        ("2m 30s", 150),
    ],
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "5x", "0s", "m5", "-5m", "inf"])
def test_parse_duration_rejects(text):
    with pytest.raises(UsageError, match="--time"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("cls", "kwargs", "option"),
    [
        (ModelConfig, {"hidden": 0}, "--hidden"),
        (ModelConfig, {"dropout": float("nan")}, "--dropout"),
        (ModelConfig, {"model": "gpt"}, "--model"),
        (TrainConfig, {"steps": 10, "lr": float("inf")}, "--lr"),
        (TrainConfig, {"steps": -1}, "--steps"),
        (TrainConfig, {}, "--steps N or --time"),
        (TrainConfig, {"steps": 1, "device": "tpu"}, "--device"),
        (SampleConfig, {"temperature": -0.1}, "--temperature"),
        (SampleConfig, {"n": 0}, "-n"),
    ],
)
def test_configs_say_which_option_is_wrong(cls, kwargs, option):
    with pytest.raises(UsageError, match=option):
        cls(**kwargs)


def test_config_round_trip():
    config = TrainConfig(steps=5, lr=1e-3)
    assert TrainConfig.from_dict(config.to_dict()) == config


def test_slugify_and_names():
    assert slugify("Żeromski, Stefan") == "zeromski-stefan"
    assert slugify("Łódź — Émile Zola!") == "lodz-emile-zola"
    assert slugify("★") == ""
    assert check_name("jane-austen_2.0", "corpus") == "jane-austen_2.0"
    for bad in ("", "../x", "a/b", ".hidden", "a..b", "a\\b"):
        with pytest.raises(UsageError):
            check_name(bad, "corpus")


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "f.txt"
    atomic_write_text(path, "old")

    def failing(tmp):
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic_write(path, failing)
    assert path.read_text() == "old"
    assert list(tmp_path.iterdir()) == [path]


def test_two_threads_writing_one_file_at_once_each_write_whole(tmp_path):
    path = tmp_path / "f.txt"
    both_written = threading.Barrier(2, timeout=10)
    failures = []

    def write(text):
        def slow(tmp):
            tmp.write_text(text)
            both_written.wait()  # each has written its temporary file before either moves it

        try:
            atomic_write(path, slow)
        except Exception as exc:
            failures.append(exc)

    threads = [threading.Thread(target=write, args=(t,)) for t in ("first " * 100, "second")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert path.read_text() in ("first " * 100, "second")
    assert list(tmp_path.iterdir()) == [path]


def test_random_windows_targets_are_inputs_shifted():
    ids = np.arange(100, dtype=np.uint16)
    x, y = random_windows(ids, 8, 10, torch.Generator().manual_seed(0))
    assert x.dtype == torch.int64
    assert x.shape == y.shape == (8, 10)
    assert torch.equal(y[:, :-1], x[:, 1:]) and torch.equal(y, x + 1)


@pytest.mark.parametrize(("n", "streams", "context"), [(101, 4, 7), (50, 64, 8), (2, 3, 5)])
def test_eval_streams_predict_every_token_once(n, streams, context):
    ids = np.arange(n, dtype=np.uint32)
    seen = []
    chunks = list(eval_streams(ids, streams, context))
    rows = len(chunks[0][1])
    for r in range(rows):
        for x, y in chunks:
            keep = y[r] != IGNORE
            assert torch.equal(y[r][keep], x[r][keep] + 1)  # target follows its input
            seen.extend(y[r][keep].tolist())
    assert seen == list(range(1, n))


def test_validation_loss_of_a_uniform_model_is_log_vocab_per_char():
    config = ModelConfig(vocab_size=10, hidden=8, embedding_dim=4, layers=1)
    model = build_model(config)
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.zero_()
    ids = np.random.default_rng(0).integers(0, 10, 500)
    # 499 predicted tokens; counted as 998 characters (as if every token were 2 characters)
    assert validation_loss(model, ids, 499, "cpu") == pytest.approx(math.log(10))
    assert validation_loss(model, ids, 998, "cpu") == pytest.approx(math.log(10) / 2)


@pytest.mark.parametrize("model", ["lstm", "transformer"])
def test_validation_in_groups_of_streams_gives_the_numbers_of_one_batch(model, monkeypatch):
    """A large vocabulary's validation feeds its streams in groups (`EVAL_LOGITS_BYTES`): the
    loss and each token's probability, in the text's order, are those of one batch."""
    import authorgen.losses as losses

    torch.manual_seed(0)
    sizes = {"heads": 2, "context": 16} if model == "transformer" else {"hidden": 16}
    config = ModelConfig(model=model, vocab_size=40, embedding_dim=16, layers=2, **sizes)
    net = build_model(config).eval()
    ids = np.random.default_rng(0).integers(0, 40, 700)
    whole_p = losses.token_probabilities(net, ids, torch.device("cpu"), n_streams=8)
    whole = losses.total_nll(net, ids, torch.device("cpu"), n_streams=8)
    # 3 streams' logits at most in each pass: groups of 3, 3 and 2
    monkeypatch.setattr(losses, "EVAL_LOGITS_BYTES", 3 * 4 * net.eval_chunk * 40)
    kept = []
    grouped = losses.total_nll(net, ids, torch.device("cpu"), n_streams=8, probabilities=kept)
    grouped_p = losses.token_probabilities(net, ids, torch.device("cpu"), n_streams=8)
    assert grouped[1] == whole[1] == 699 and grouped[0] == pytest.approx(whole[0], rel=1e-6)
    assert np.allclose(grouped_p, whole_p, rtol=1e-5) and len(grouped_p) == 699
    assert np.allclose(losses.in_order(kept, ids), whole_p, rtol=1e-5)
    assert not np.allclose(grouped_p[1:], grouped_p[:-1])  # not all the same number


def test_learning_rate_warms_up_then_decays_to_the_floor():
    config = TrainConfig(steps=100, lr=1.0, warmup_steps=10, min_lr_ratio=0.1)
    assert learning_rate(config, 0, 0.0) == pytest.approx(0.1)
    assert learning_rate(config, 9, 0.09) < 1.0
    assert learning_rate(config, 50, 0.5) == pytest.approx(0.55)
    assert learning_rate(config, 100, 1.0) == pytest.approx(0.1)


def test_split_holds_out_the_smallest_work(tmp_path):
    corpus = Corpus.open_or_new(tmp_path, "c")
    corpus.add_work(b"a long work\n" * 50, source="local", title="long")
    corpus.add_work(b"short one\n", source="local", title="short")
    split = split_corpus(corpus)
    assert "".join(read_chunks(split.val)) == "short one\n"
    assert "".join(read_chunks(split.train)) == "a long work\n" * 50
    assert split.fingerprint != split_corpus(corpus, holdout=corpus.works[0]["id"]).fingerprint
    with pytest.raises(DataError, match="--holdout"):
        split_corpus(corpus, "nope")
    single = split_text("0123456789" * 10)
    assert single.train == ["0123456789" * 9] and single.val == ["0123456789"]


def test_single_work_split_reads_the_file_in_chunks(tmp_path):
    corpus = Corpus.open_or_new(tmp_path, "c")
    text = "".join(f"żółw {i} idzie\n" for i in range(300))
    corpus.add_work(text.encode(), source="local", title="one")
    split = split_corpus(corpus)
    cut = int(len(text) * 0.9)
    assert "".join(read_chunks(split.train, chunk_chars=7)) == text[:cut]
    assert "".join(read_chunks(split.val, chunk_chars=7)) == text[cut:]


def test_add_work_keeps_existing_unless_forced(tmp_path):
    corpus = Corpus.open_or_new(tmp_path, "c")
    record, written = corpus.add_work(b"text\n", source="local", work_id="w")
    assert written
    again, written = corpus.add_work(b"other\n", source="local", work_id="w")
    assert not written and again["sha256_clean"] == record["sha256_clean"]
    _, written = corpus.add_work(b"other\n", source="local", work_id="w", force=True)
    assert written and Corpus.open(tmp_path, "c").read(corpus.find("w")) == "other\n"


def test_generate_normalises_the_prompt_and_never_emits_unk():
    from authorgen.sample import generate

    tok = CharTokenizer.train("café au lait\n")
    model = build_model(ModelConfig(vocab_size=tok.vocab_size, hidden=8, embedding_dim=4, layers=1))
    with torch.no_grad():
        model.head.bias[tok.unk_id] = 50.0  # the model all but insists on <unk>
    text = "".join(generate(model, tok, "cafe\u0301", SampleConfig(length=40), seed=0))
    assert len(text) == 40 and UNK_TEXT not in text
    assert set(text) <= set("café au lait\n")


def test_atomic_write_gives_files_the_umask_permissions(tmp_path):
    import os
    import stat

    from safetensors.torch import save_file

    path = tmp_path / "w.safetensors"
    atomic_write(path, lambda tmp: save_file({"w": torch.zeros(2)}, str(tmp)))
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_a_model_built_to_train_gets_random_weights_while_another_thread_loads_one():
    from authorgen.models import _no_random_init  # what build_model does while it loads

    config = ModelConfig(vocab_size=20, hidden=8, embedding_dim=4, layers=1)
    torch.manual_seed(0)
    expected = build_model(config).state_dict()
    loading, built = threading.Event(), threading.Event()

    def load():
        with _no_random_init():
            loading.set()
            assert built.wait(10)  # still building its model when the other one is built

    loader = threading.Thread(target=load)
    loader.start()
    assert loading.wait(10)
    torch.manual_seed(0)
    fresh = build_model(config).state_dict()
    built.set()
    loader.join()
    assert all(torch.equal(fresh[k], expected[k]) for k in expected)
