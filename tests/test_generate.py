"""Generation: samplers against hand computations, endings, batches, originality, the command."""

from __future__ import annotations

import json
import math
import random
import re

import pytest
import torch

from authorgen.checkpoint import load_run
from authorgen.config import ModelConfig, SampleConfig, TokenizerConfig, TrainConfig
from authorgen.corpus import Split, TextSlice
from authorgen.errors import DataError, Unsupported, UsageError, api_name
from authorgen.models import build_model
from authorgen.originality import Index, build_index
from authorgen.penalties import NgramMemory, NoRepeatNgram, RepetitionPenalty
from authorgen.sample import Generation
from authorgen.samplers import Sampler, Temperature, TopK, TopP, draw
from authorgen.stages import NEG_INF
from authorgen.stops import StopPolicy
from authorgen.tokenizer import train_tokenizer
from authorgen.tokenizer.char import CharTokenizer
from authorgen.train import train
from helpers import data_file, run_cli, tiny_model


def _probs(logits, **config) -> list[float]:
    scores = torch.tensor([logits], dtype=torch.float64)  # a batch of one
    return Sampler(SampleConfig(**config)).distribution(scores)[0].tolist()


def _softmax(values: list[float]) -> list[float]:
    exps = [math.exp(v) if v != -math.inf else 0.0 for v in values]
    return [e / sum(exps) for e in exps]


# --- the samplers, by hand ----------------------------------------------------------------


def test_temperature_top_k_and_top_p_give_the_hand_computed_distributions():
    assert _probs([1.0, 2.0, 3.0], temperature=0.5) == pytest.approx(_softmax([2.0, 4.0, 6.0]))
    assert _probs([1.0, 3.0, 2.0, 0.0], temperature=1.0, top_k=2) == pytest.approx(
        _softmax([-math.inf, 3.0, 2.0, -math.inf])
    )
    assert _probs([1.0, 2.0, 2.0, 0.0], temperature=1.0, top_k=1) == pytest.approx(
        [0, 0.5, 0.5, 0]  # ties with the k-th stay
    )
    logits = [math.log(p) for p in (0.5, 0.3, 0.15, 0.05)]
    # 0.5 + 0.3 passes 0.79: the third token is not needed
    assert _probs(logits, temperature=1.0, top_p=0.79) == pytest.approx([0.625, 0.375, 0, 0])
    assert _probs(logits, temperature=1.0, top_p=0.81) == pytest.approx(
        [0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0]
    )
    assert _probs(logits, temperature=1.0, top_p=0.4) == pytest.approx([1, 0, 0, 0])


def test_temperature_comes_before_top_p():
    logits = [2.0, 1.0, 0.0]  # at T=1: 0.665, 0.245, 0.090; at T=0.5: 0.867, 0.117, 0.016
    assert _probs(logits, temperature=1.0, top_p=0.7) == pytest.approx(
        _softmax([2.0, 1.0, -math.inf])
    )
    assert _probs(logits, temperature=0.5, top_p=0.7) == pytest.approx([1, 0, 0])


def test_repetition_penalty_divides_positive_and_multiplies_negative_logits():
    logits = torch.tensor([[2.0, -1.0, 0.5, 3.0], [2.0, -1.0, 0.5, 3.0]], dtype=torch.float64)
    out = RepetitionPenalty(2.0)(logits, [[0, 1, 0], [2, 3, 2, 3]])
    assert out[0].tolist() == [1.0, -2.0, 0.5, 3.0]
    assert out[1].tolist() == [2.0, -1.0, 0.25, 1.5]  # each sample its own history
    assert RepetitionPenalty(2.0, window=1)(logits[:1], [[0, 1]])[0].tolist() == [
        2.0, -2.0, 0.5, 3.0
    ]  # fmt: skip
    assert logits[0].tolist() == [2.0, -1.0, 0.5, 3.0]  # the input is not changed


def test_no_repeat_ngram_bans_what_would_complete_a_seen_ngram():
    memory = NgramMemory(3, [1, 2, 3, 1, 2])
    assert memory.banned() == [3]  # 1 2 3 was seen
    memory.add(4)
    assert memory.banned() == []  # nothing followed 2 4
    memory = NgramMemory(2, [5, 6, 5, 7, 5])
    assert memory.banned() == [6, 7]
    assert NgramMemory(1, [4, 2, 4]).banned() == [2, 4]  # unigrams: no token twice
    # as a sampler: a batch, each sample with its own n-grams, kept between steps
    sampler, scores = NoRepeatNgram(2), torch.zeros(2, 8, dtype=torch.float64)
    history = [[5, 6, 5], [1, 2, 3]]
    out = sampler(scores, history)
    assert torch.isinf(out[0]).nonzero().flatten().tolist() == [6]  # 5 6 was seen
    assert torch.isfinite(out[1]).all()  # 3 came only last
    history[1].append(1)  # the next step: 1 2 was seen, so 2 after 1 is banned
    assert torch.isinf(sampler(scores, history)[1]).nonzero().flatten().tolist() == [2]


def test_filters_keep_at_least_one_token():
    logits = torch.tensor([[0.0, 0.0, 5.0]], dtype=torch.float64)
    assert torch.isfinite(TopP(1e-9)(logits, ())).tolist() == [[False, False, True]]
    assert torch.isfinite(TopK(1)(logits, ())).tolist() == [[False, False, True]]
    # a ban that would leave a sample nothing is lifted for that step
    assert torch.isfinite(NoRepeatNgram(1)(logits[:, :1], [[0]])).all()


def test_filters_work_row_by_row():
    logits = torch.tensor([[3.0, 2.0, 1.0], [1.0, 2.0, 3.0]], dtype=torch.float64)
    first_only = [[True, False, False], [False, False, True]]  # each row its own likeliest
    assert torch.isfinite(TopK(1)(logits, ())).tolist() == first_only
    assert torch.isfinite(TopP(0.5)(logits, ())).tolist() == first_only


def test_draws_follow_the_distribution_and_never_take_an_impossible_token():
    probs = torch.tensor([[0.1, 0.0, 0.2, 0.7]], dtype=torch.float64)
    generator = torch.Generator().manual_seed(0)
    counts = [0, 0, 0, 0]
    for _ in range(20_000):
        counts[int(draw(probs, [generator]))] += 1
    assert counts[1] == 0
    for got, p in zip(counts, probs[0].tolist(), strict=True):
        assert abs(got / 20_000 - p) < 0.015


def test_each_row_draws_from_its_own_generator():
    probs = torch.full((3, 50), 1 / 50, dtype=torch.float64)
    seeds = [torch.Generator().manual_seed(s) for s in (1, 2, 1)]
    together = draw(probs, seeds).tolist()
    alone = [int(draw(probs[:1], [torch.Generator().manual_seed(s)])) for s in (1, 2, 1)]
    assert together == alone and together[0] == together[2]


def test_greedy_takes_the_likeliest_and_cold_sampling_nearly_always_does():
    logits = torch.tensor([[0.0, 3.0, 1.0]], dtype=torch.float64)
    assert Sampler(SampleConfig(temperature=0.0)).choose(logits, [None]).tolist() == [1]
    gen = torch.Generator().manual_seed(0)
    warm = Sampler(SampleConfig(temperature=1.0))
    draws = torch.cat([warm.choose(logits, [gen]) for _ in range(4000)])
    freq = torch.bincount(draws, minlength=3).double() / 4000
    assert torch.allclose(freq, torch.softmax(logits[0], -1), atol=0.03)
    cold = Sampler(SampleConfig(temperature=0.1))
    assert all(int(cold.choose(logits, [gen])) == 1 for _ in range(200))


@pytest.mark.parametrize(
    ("options", "flag"),
    [
        ({"top_k": 0}, "--top-k"),
        ({"top_p": 0.0}, "--top-p"),
        ({"top_p": 1.5}, "--top-p"),
        ({"top_p": float("nan")}, "--top-p"),
        ({"temperature": float("inf")}, "--temperature"),
        ({"repetition_penalty": 0.0}, "--repetition-penalty"),
        ({"repetition_window": 0}, "--repetition-window"),
        ({"no_repeat_ngram": -1}, "--no-repeat-ngram"),
        ({"stop": ("",)}, "--stop"),
        ({"until": "chapter"}, "--until"),
        ({"max_copy": 0}, "--max-copy"),
        ({"length": -5}, "--length"),
    ],
)
def test_bad_sampler_values_are_refused_with_the_option_named(options, flag):
    with pytest.raises(UsageError, match=re.escape(flag)):
        SampleConfig(**options)


def test_each_sampler_checks_its_own_setting():
    logits = torch.zeros(1, 4, dtype=torch.float64)
    for call in (
        lambda: RepetitionPenalty(0.0),
        lambda: RepetitionPenalty(float("nan")),
        lambda: RepetitionPenalty(1.2, window=0),
        lambda: NgramMemory(0),
        lambda: NoRepeatNgram(0),
        lambda: Temperature(0.0),
        lambda: Temperature(float("inf")),
        lambda: TopK(0),
        lambda: TopP(0.0),
        lambda: TopP(float("nan")),
        lambda: draw(torch.zeros(1, 4, dtype=torch.float64), [None]),
        lambda: draw(torch.tensor([[0.5, -0.1, 0.6]], dtype=torch.float64), [None]),
    ):
        with pytest.raises(ValueError):
            call()
    assert Sampler(SampleConfig(temperature=1.0)).distribution(logits)[0].tolist() == [0.25] * 4
    assert float("-inf") == NEG_INF


# --- where a sample ends ----------------------------------------------------------------------


def _end(text: str, seed: int = 0, **config) -> tuple[str, str, str]:
    """Feed `text` in random pieces; return what was released, the sample's text, the reason."""
    stop = StopPolicy(SampleConfig(**config))
    rng = random.Random(seed)
    released, at = "", 0
    while at < len(text) and not stop.done:
        step = rng.randint(1, 4)
        released += stop.feed(text[at : at + step])
        at += step
    if not stop.done:
        released += stop.close("eof")
    return released, stop.text[: stop.end], stop.reason


@pytest.mark.parametrize("seed", range(5))
def test_stop_strings_end_before_themselves_whatever_the_pieces(seed):
    text = "It was a dark night.\n\nThe END came. More text follows here."
    released, final, reason = _end(text, seed, length=200, stop=("END", "\n\n"))
    assert released == final == "It was a dark night." and reason == "stop"
    released, final, reason = _end(text, seed, length=200, stop=("END",))
    assert released == final == "It was a dark night.\n\nThe " and reason == "stop"


@pytest.mark.parametrize("seed", range(5))
def test_until_sentence_finishes_the_sentence_past_the_length(seed):
    text = 'She met Mr. Darcy at ten. "Is it you?" he asked. Then they left'
    released, final, reason = _end(text, seed, length=12, until="sentence")
    assert released == final == "She met Mr. Darcy at ten." and reason == "sentence"
    released, final, _ = _end(text, seed, length=30, until="sentence")
    assert released == final == 'She met Mr. Darcy at ten. "Is it you?"'
    french = "Il dit\u202f: «\u00a0Oui.\u00a0» Puis il partit. Elle resta\u202f?"
    released, final, _ = _end(french, seed, length=8, until="sentence")
    assert released == final == "Il dit\u202f: «\u00a0Oui.\u00a0»"
    released, final, _ = _end("M. Bovary dort. Emma lit.", seed, length=1, until="sentence")
    assert released == final == "M. Bovary dort."
    # no end in sight: stops at the limit, length + 1,000
    released, final, reason = _end("word " * 400, seed, length=20, until="sentence")
    assert len(released) == len(final) == 1020 and reason == "length"


@pytest.mark.parametrize("seed", range(5))
def test_until_paragraph_and_plain_length(seed):
    text = "One line\nand another.\n\nA new paragraph\n \nand a third."
    released, final, reason = _end(text, seed, length=5, until="paragraph")
    assert released == final == "One line\nand another." and reason == "paragraph"
    released, final, _ = _end(text, seed, length=25, until="paragraph")
    assert released == final == "One line\nand another.\n\nA new paragraph"
    released, final, reason = _end(text, seed, length=11)
    assert released == final == "One line\nan" and reason == "length"


# --- generation -------------------------------------------------------------------------------

TEXT = "the cat sat on the mat. a dog ran in the fog!\n" * 3


def _tiny(model: str) -> tuple[torch.nn.Module, CharTokenizer]:
    return tiny_model(model, TEXT)


@pytest.mark.parametrize("kind", ["lstm", "transformer"])
def test_reading_a_prompt_computes_the_output_layer_for_its_last_position_only(kind, monkeypatch):
    model, tok = _tiny(kind)
    idx = torch.tensor([tok.encode("the cat sat on the mat")])  # longer than the context too
    heads = []  # the inputs of the output layer (the embedding's weights, tied, or the head)
    linear = torch.nn.functional.linear
    outputs = [model.embedding.weight] + (
        [model.head.weight] if getattr(model, "head", None) is not None else []
    )

    def spy(x, weight, *args, **kwargs):
        if any(weight is w for w in outputs):
            heads.append(tuple(x.shape))
        return linear(x, weight, *args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "linear", spy)
    with torch.no_grad():
        scores, _ = model.prefill(idx)
        read, heads[:] = list(heads), []
        whole, _ = model(idx)
    assert {shape[:2] for shape in read} == {(1, 1)}  # the last position of each piece read
    assert sum(shape[1] for shape in heads) == idx.shape[1]  # the whole pass: every position
    torch.testing.assert_close(scores, whole[:, -1])


def _texts(model, tok, config, seeds, prompt="the "):
    return [s.text for _, _, s in Generation(model, tok, prompt, config, seeds) if s]


@pytest.mark.parametrize("kind", ["lstm", "gru", "transformer"])
def test_a_batch_of_samples_equals_each_sample_alone(kind):
    model, tok = _tiny(kind)
    config = SampleConfig(
        temperature=1.3, length=120, top_k=10, top_p=0.95, repetition_penalty=1.2,
        no_repeat_ngram=6, n=4,
    )  # fmt: skip
    together = _texts(model, tok, config, [7, 8, 9, 10])
    alone = [_texts(model, tok, config, [seed])[0] for seed in (7, 8, 9, 10)]
    assert together == alone
    assert len(set(together)) == 4 and all(len(t) == 120 for t in together)
    assert _texts(model, tok, config, [8]) == alone[1:2]  # the same seed, the same text


def test_generation_leaves_the_callers_model_in_the_mode_it_was_in():
    model, tok = _tiny("lstm")
    config = SampleConfig(temperature=1.0, length=20, n=2)
    for training in (True, False):
        model.train(training)
        assert len(_texts(model, tok, config, [1, 2])) == 2
        assert model.training is training
    model.train()
    generation = iter(Generation(model, tok, "the ", config, [3]))
    next(generation)
    assert not model.training  # dropout is off while it writes
    generation.close()  # a reader that stops early (Ctrl-C, a closed pipe) restores it too
    assert model.training


def test_samples_with_different_ends_finish_apart_in_one_batch():
    model, tok = _tiny("lstm")
    config = SampleConfig(temperature=1.5, length=30, until="sentence", stop=("x",))
    events = list(Generation(model, tok, "the ", config, range(6)))
    samples = [s for _, _, s in events if s]
    assert sorted(s.seed for s in samples) == list(range(6))
    for s in samples:
        streamed = "".join(t for i, t, _ in events if i == s.seed and t)
        assert streamed == s.text and "x" not in s.text
        assert s.stopped in {"sentence", "stop", "length"}
        if s.stopped == "sentence":
            assert s.text[-1] in ".!?" and len(s.text) >= 30


def test_no_repeat_ngram_output_has_no_repeated_ngram():
    model, tok = _tiny("lstm")
    config = SampleConfig(temperature=0.0, length=80, no_repeat_ngram=4)
    ids = tok.encode("the " + _texts(model, tok, config, [0])[0])
    grams = [tuple(ids[i : i + 4]) for i in range(len(ids) - 3)]
    assert len(grams) == len(set(grams))
    greedy = tok.encode("the " + _texts(model, tok, SampleConfig(temperature=0, length=80), [0])[0])
    greedy_grams = [tuple(greedy[i : i + 4]) for i in range(len(greedy) - 3)]
    assert len(greedy_grams) > len(set(greedy_grams))  # plain greedy does loop


# --- originality --------------------------------------------------------------------------


def test_a_planted_copy_is_found_with_its_span_and_its_work(tmp_path):
    a = data_file("pg1400-great-expectations.txt")
    b = data_file("pg98-a-tale-of-two-cities.txt")
    build_index(
        tmp_path / "index",
        [
            ({"id": "1400", "title": "Great Expectations"}, TextSlice(a)),
            ({"id": "98", "title": "A Tale of Two Cities"}, TextSlice(b)),
        ],
    )
    index = Index(tmp_path / "index")
    book = b.read_text(encoding="utf-8")
    at = book.index("It was the best of times")
    passage = book[at : at + 150]
    sample = "⁂" * 30 + passage + "⁂" * 20
    report = index.report(sample)
    assert report["longest_copy_chars"] == 150
    copy = report["copy"]
    assert (copy["start"], copy["stop"], copy["text"]) == (30, 180, passage)
    assert copy["work"] == "98" and copy["title"] == "A Tale of Two Cities"
    assert book[copy["offset"] : copy["offset"] + 150] == passage
    assert index.report("⁂" * 10)["copy"] is None


def test_matches_never_span_two_works_and_8grams_are_counted_by_hand(tmp_path):
    build_index(
        tmp_path / "ix",
        [
            ({"id": "a", "title": "A"}, "one two three four"),
            ({"id": "b", "title": "B"}, "five six"),
        ],
    )
    index = Index(tmp_path / "ix")
    assert index.contains("three four") and not index.contains("four\x00five")
    assert index.report("four five")["longest_copy_chars"] == 4  # "four" or "five", no more
    words = "w1 w2 w3 w4 w5 w6 w7 w8 w9 w10"
    build_index(tmp_path / "iy", [({"id": "c", "title": "C"}, "x w1 w2 w3 w4 w5 w6 w7 w8 y")])
    index = Index(tmp_path / "iy")
    # three 8-grams; only the first (w1..w8) is in the corpus as whole words
    assert index.report(words)["novel_8gram_share"] == pytest.approx(2 / 3, abs=1e-4)
    # inside a longer word it does not count: "aw1" ... is not "w1"
    build_index(tmp_path / "iz", [({"id": "d", "title": "D"}, "aw1 w2 w3 w4 w5 w6 w7 w8")])
    assert Index(tmp_path / "iz").report("w1 w2 w3 w4 w5 w6 w7 w8")["novel_8gram_share"] == 1.0
    assert index.report("too few words")["novel_8gram_share"] is None


def _memorised_text() -> str:
    rng = random.Random(0)
    words = re.findall(r"\w+", "the a house river old green walked slowly towards her quiet garden")
    paragraphs = []
    for _ in range(4):
        sentences = [
            " ".join(rng.choice(words) for _ in range(rng.randint(5, 10))).capitalize() + "."
            for _ in range(5)
        ]
        paragraphs.append(" ".join(sentences))
    return "\n\n".join(paragraphs) + "\n"


@pytest.fixture(scope="module")
def memorised(tmp_path_factory):
    """A small LSTM trained to recite a 900-character text (a few seconds), as a run in the
    checkpoints folder of a fresh AUTHORGEN_HOME."""
    home = tmp_path_factory.mktemp("home")
    text = _memorised_text()
    config = TrainConfig(
        steps=300, context=64, batch_size=8, lr=1e-2, device="cpu", eval_every=300, warmup_steps=10
    )
    run_dir = home / "checkpoints" / "memo"
    model = ModelConfig(hidden=96, embedding_dim=16, layers=1)
    train(Split.from_texts(text, text[:300], "test"), model, config, run_dir)
    return home, run_dir, text


@pytest.mark.slow
def test_max_copy_is_never_exceeded(memorised):
    _, run_dir, text = memorised
    run = load_run(run_dir)
    index = run.originality_index()
    greedy = SampleConfig(temperature=0, length=300)
    free = [
        s
        for _, _, s in Generation(run.model, run.tokenizer, text[:40], greedy, [0], "cpu", index)
        if s
    ]
    assert free[0].originality["longest_copy_chars"] > 60  # it recites when it may
    for limit, temperature in [(20, 0.0), (12, 0.7), (40, 1.0)]:
        config = SampleConfig(temperature=temperature, length=300, max_copy=limit)
        samples = [
            s
            for _, _, s in Generation(
                run.model, run.tokenizer, text[:40], config, range(3), "cpu", index
            )
            if s
        ]
        for s in samples:
            assert index.report(s.text)["longest_copy_chars"] <= limit
            assert s.originality["longest_copy_chars"] <= limit
            assert s.stopped in {"length", "max_copy"}
    assert all(s.stopped == "length" for s in samples)


@pytest.mark.slow
def test_max_copy_with_subword_and_word_decoders(tmp_path):
    text = _memorised_text() * 3
    build_index(tmp_path / "ix", [({"id": "t", "title": "T"}, text)])
    index = Index(tmp_path / "ix")
    for kind, vocab in [("bpe", 300), ("word", 40)]:
        tok = train_tokenizer(TokenizerConfig(kind, vocab_size=vocab), [text])
        torch.manual_seed(0)
        model = build_model(
            ModelConfig(vocab_size=tok.vocab_size, hidden=16, embedding_dim=8, layers=1)
        ).eval()
        config = SampleConfig(temperature=1.0, length=200, max_copy=15)
        samples = [
            s for _, _, s in Generation(model, tok, "The", config, [1, 2], "cpu", index) if s
        ]
        for s in samples:
            assert index.report(s.text)["longest_copy_chars"] <= 15


def test_max_copy_without_an_index_is_refused():
    model, tok = _tiny("lstm")
    with pytest.raises(DataError, match="originality index"):
        Generation(model, tok, "the", SampleConfig(max_copy=30), [0])


def test_library_errors_are_worded_by_each_front_end():
    model, tok = _tiny("lstm")
    with pytest.raises(Unsupported) as refused:
        Generation(model, tok, "the", SampleConfig(known_words=True), [0])
    assert "--known-words" in str(refused.value) and "--any-words" in str(refused.value)
    api = refused.value.worded(api_name)
    assert "known_words needs" in api and "known_words: false" in api
    assert "--known-words" not in api and "--any-words" not in api
    with pytest.raises(UsageError) as bad:
        SampleConfig(top_p=2.0)
    assert str(bad.value).startswith("--top-p ") and bad.value.worded(api_name).startswith("top_p ")


# --- the command, in fresh processes ----------------------------------------------------------


@pytest.mark.slow
def test_json_lines_parse_and_plain_samples_split_on_percent_lines(memorised):
    home, _, _ = memorised
    args = ("generate", "memo", "-n", "3", "--seed", "11", "--length", "60", "--prompt", "The")
    as_json = run_cli(*args, "--json", home=home)
    assert as_json.returncode == 0, as_json.stderr
    rows = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert [r["seed"] for r in rows] == [11, 12, 13]
    for row in rows:
        assert {"text", "seed", "temperature", "top_k", "top_p", "chars", "tokens"} <= set(row)
        assert {"elapsed_s", "originality", "stopped", "prompt"} <= set(row)
        assert row["chars"] == len(row["text"]) == 60 and row["prompt"] == "The"
        assert set(row["originality"]) >= {"longest_copy_chars", "copy", "novel_8gram_share"}
    plain = run_cli(*args, home=home)
    assert plain.returncode == 0, plain.stderr
    samples = re.split(r"(?m)^%\n", plain.stdout)
    assert samples == ["The" + r["text"] + "\n" for r in rows]
    assert "seed 11" in plain.stderr and plain.stderr.count("longest copy") == 3


@pytest.mark.slow
def test_stop_and_until_from_the_command_line(memorised):
    home, _, text = memorised
    out = run_cli(
        "generate", "memo", "--prompt", text[:30], "--temperature", "0", "--length", "400",
        "--stop", "\\n\\n", "--json", "--no-ngrams", home=home,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    row = json.loads(out.stdout)
    assert row["stopped"] == "stop" and "\n\n" not in row["text"] and row["chars"] < 400
    out = run_cli(
        "generate", "memo", "--prompt", "Old", "--length", "20", "--until", "sentence",
        "--seed", "1", "--no-echo", home=home,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.rstrip("\n")[-1] in ".!?" and len(out.stdout) > 20


def test_more_samples_than_one_batch_come_in_order_and_equal_each_alone(monkeypatch):
    from authorgen import sample

    model, tok = _tiny("gru")
    config = SampleConfig(temperature=1.0, length=40, until="sentence")
    alone = [_texts(model, tok, config, [seed])[0] for seed in range(5)]
    monkeypatch.setattr(sample, "BATCH", 2)
    events = list(Generation(model, tok, "the ", config, range(5)))
    finished = [s for _, _, s in events if s]
    assert [s.text for s in sorted(finished, key=lambda s: s.seed)] == alone
    order = [i for i, _, s in events if s]
    assert {*order[:2]} == {0, 1} and {*order[2:4]} == {2, 3} and order[4] == 4  # by batch


def test_plain_output_keeps_sample_order_whatever_order_they_finish_in(capsys):
    from authorgen.cli.generate import _Plain
    from authorgen.sample import Sample

    def done(i):
        return Sample(text="", seed=i, tokens=0, elapsed_s=0.0, stopped="length")

    out = _Plain("P:")
    out.piece(1, "b1")  # sample 2 writes before sample 1 has begun
    out.piece(0, "a1")
    out.piece(2, "c1\n")
    out.finished(2, done(2))
    out.piece(1, "b2")
    out.piece(0, "a2")
    out.piece(3, "d1")
    out.finished(1, done(1))
    out.finished(0, done(0))
    out.piece(3, "d2")  # now the current sample: after what it wrote while waiting
    out.finished(3, done(3))
    assert capsys.readouterr().out == "P:a1a2\n%\nP:b1b2\n%\nP:c1\n%\nP:d1d2\n"


@pytest.mark.slow
def test_plain_output_streams_before_the_sample_is_done(memorised):
    import os
    import subprocess
    import sys

    home, _, _ = memorised
    env = {**os.environ, "AUTHORGEN_HOME": str(home), "NO_COLOR": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "authorgen", "generate", "memo", "--length", "1000000", "-q"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        first = proc.stdout.read(200)
        assert len(first) == 200 and proc.poll() is None  # text arrives while it is written
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.slow
def test_a_run_without_an_index_generates_without_reports_and_refuses_max_copy(tmp_path):
    text = _memorised_text()
    config = TrainConfig(steps=5, context=16, batch_size=2, device="cpu", index=False)
    run_dir = tmp_path / "checkpoints" / "plain"
    model = ModelConfig(hidden=16, embedding_dim=8, layers=1)
    train(Split.from_texts(text, text[:300], "test"), model, config, run_dir)
    assert not any(run_dir.glob("index*"))
    out = run_cli("generate", "plain", "--length", "30", "--seed", "1", "--json", home=tmp_path)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["originality"] is None
    assert "no originality index" in out.stderr
    refused = run_cli("generate", "plain", "--max-copy", "30", home=tmp_path)
    assert refused.returncode == 4 and refused.stdout == ""
    assert "--max-copy needs the run's originality index" in refused.stderr
    refused = run_cli("generate", "plain", "--known-words", home=tmp_path)
    assert refused.returncode == 4 and refused.stdout == ""
    assert "--known-words needs the run's originality index" in refused.stderr
    assert "Traceback" not in refused.stderr and len(refused.stderr.strip().splitlines()) == 1


# --- generation speed (issue 19): weights read without a random init first; int8 weights ---


def test_a_run_loaded_for_generation_writes_what_its_trained_model_writes(served):
    """The loading path (no random init, the tensors read assigned) changes no draw."""
    run = load_run(served / "checkpoints" / "gpt")
    fresh = build_model(ModelConfig.from_dict(run.config["model"]))
    fresh.load_state_dict(run.model.state_dict())
    config = SampleConfig(temperature=0.9, length=400)

    def text(model):
        return next(s for _, _, s in Generation(model, run.tokenizer, "The", config, [7]) if s).text

    assert text(run.model) == text(fresh)


@pytest.mark.parametrize(("layers", "batch", "start"), [(1, 1, None), (2, 3, "random")])
def test_an_lstms_one_token_step_is_its_fused_layers(layers, batch, start):
    """Generation's LSTM step (plain products, on a CPU without gradients) computes what
    nn.LSTM computes, to float rounding."""
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=30, hidden=48, embedding_dim=16, layers=layers)
    model = build_model(config).eval()
    idx = torch.randint(0, 30, (batch, 1))
    state = None
    if start:
        state = tuple(torch.randn(layers, batch, 48) for _ in range(2))
    fused_out, fused_state = model.rnn(model.embedding(idx), state)
    expected = model.head(fused_out)

    def refuse(*args, **kwargs):
        raise AssertionError("the fused LSTM ran")

    model.rnn.forward = refuse
    with torch.no_grad():
        logits, (h, c) = model(idx, state)
    torch.testing.assert_close(logits, expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(h, fused_state[0], rtol=0, atol=1e-5)
    torch.testing.assert_close(c, fused_state[1], rtol=0, atol=1e-5)


def test_int8_weights_keep_the_models_distribution():
    torch.manual_seed(0)
    config = ModelConfig(
        model="transformer", vocab_size=50, layers=2, heads=2, embedding_dim=64, context=32
    )
    model = build_model(config).eval()
    with torch.no_grad():  # peaked scores, as a trained model's are
        model.embedding.weight.mul_(40)
    x = torch.randint(0, 50, (2, 24))
    with torch.no_grad():
        exact = torch.log_softmax(model(x)[0], -1)
        model.int8_weights()
        for layer in (model.blocks[0].mlp.fc, model.blocks[1].attention.qkv):
            assert layer.weight.dtype == torch.int8
        approx = torch.log_softmax(model(x)[0], -1)
        # one query at a time, through the ring cache, as generation reads it
        _, cache = model.prefill(x[:1, :8])
        batch = model.join(None, cache, 1)
        stepped, batch = model(x[:1, 8:9], batch)
    kl = (exact.exp() * (exact - approx)).sum(-1)
    assert exact.exp().max(-1).values.mean() > 0.5  # the test is not trivially uniform
    assert kl.max() < 0.01 and (exact.argmax(-1) == approx.argmax(-1)).float().mean() > 0.9
    assert torch.allclose(stepped[0, -1], model(x[:1, :9])[0][0, -1], atol=1e-2)


def _plant_int8_speed_up(home, factor: float) -> None:
    """What the machine measured for int8 generation, as the probe keeps it."""
    from authorgen import probe

    key = probe.machine_key(torch.device("cpu"), 0)
    path = home / "cache" / probe.PROBE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({key: {"generation int8 speed-up": factor}}))


@pytest.mark.parametrize(("factor", "weights"), [(0.5, "fp32"), (2.0, "int8")])
def test_auto_precision_uses_int8_where_the_machine_measured_it_faster(served, factor, weights):
    _plant_int8_speed_up(served, factor)
    args = ("generate", "gpt", "--length", "60", "--seed", "3", "--json", "--device", "cpu")
    auto = run_cli(*args, home=served)
    assert auto.returncode == 0, auto.stderr
    assert json.loads(auto.stdout)["precision"] == weights
    told = run_cli(*args, "--precision", weights, home=served)
    assert json.loads(told.stdout)["text"] == json.loads(auto.stdout)["text"]
    # this run is 32 wide: PyTorch's int8 kernel needs multiples of 64, so it keeps fp32 layers
    kept = load_run(served / "checkpoints" / "gpt", weights="int8").model
    assert kept.blocks[0].mlp.fc.weight.dtype == torch.float32
    lstm = run_cli("generate", "lstm", "--length", "20", "--json", home=served)
    assert json.loads(lstm.stdout)["precision"] == "fp32"  # int8 is for transformers
