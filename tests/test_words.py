"""Known words: the training text's words, invented_words by hand, and --known-words in
generation (char and subword; English, French and Polish), alone and with the other rules."""

from __future__ import annotations

import json
import random

import pytest
import torch

import authorgen.sample as sample_module
from authorgen.config import ModelConfig, SampleConfig, TokenizerConfig
from authorgen.corpus import Split
from authorgen.errors import DataError
from authorgen.known_words import OPEN, ROOT, KnownWords, Vocabulary, token_texts
from authorgen.models import build_model
from authorgen.originality import WORKS, Index, build_index
from authorgen.sample import Generation
from authorgen.tokenizer import train_tokenizer
from authorgen.tokenizer.char import CharTokenizer
from authorgen.words import WORD_RE, WORDS, fold, invented, read_words, words_in
from texts import ENGLISH, FRENCH, POLISH

KNOWN = frozenset({"the", "cat", "don't", "aujourd'hui", "zdrowie", "ab"})


# --- the words and the share, by hand --------------------------------------------------------


def test_invented_words_by_hand():
    text = "The CAT don’t sat; Zdrowie 42 ab_cd aujourd'hui xyz'"
    # words: The CAT don’t sat Zdrowie ab cd aujourd'hui xyz  -> sat, cd, xyz are not known
    report = invented(text, KNOWN)
    assert report["words"] == 9 and report["invented"] == 3
    assert report["invented_words"] == round(3 / 9, 4)
    assert report["invented_examples"] == ["sat", "cd", "xyz"]
    # a word begun by the prompt is judged whole; one cut at the end is not judged
    assert invented("t sat", KNOWN, before="the ca") == {
        "invented_words": 0.5, "words": 2, "invented": 1, "invented_examples": ["sat"],
    }  # fmt: skip
    assert invented("the ca", KNOWN, cut=True)["words"] == 1
    assert invented("the ca", KNOWN)["invented"] == 1
    assert invented("42 -- !", KNOWN)["invented_words"] is None


def test_words_cut_by_chunks_are_read_whole():
    text = POLISH + FRENCH + "l'été d’hiver rock'n'roll"
    whole = list(words_in([text]))
    rng = random.Random(0)
    cuts = sorted(rng.sample(range(1, len(text)), 60))
    chunks = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    assert list(words_in(chunks)) == whole
    # every apostrophe position as a cut
    for at in (i for i, ch in enumerate(text) if ch in "'’"):
        assert list(words_in([text[:at], text[at:]])) == whole
        assert list(words_in([text[: at + 1], text[at + 1 :]])) == whole
    assert "aujourd'hui" in whole and "d'hiver" in whole and "rock'n'roll" in whole
    assert "źrebię" in whole and "łatek" in whole  # folded: Łatek


def test_the_index_keeps_the_training_words_not_the_held_out_ones(tmp_path):
    split = Split.from_texts("the cat sat on the mat", "a dog barked", "test")
    build_index(tmp_path / "ix", split.sources())
    assert read_words(tmp_path / "ix" / WORDS) == {"the", "cat", "sat", "on", "mat"}
    index = Index(tmp_path / "ix")
    assert index.report("the dog sat")["invented_words"] == round(1 / 3, 4)
    # an index made before words.txt: made from all but the last part, and kept
    (tmp_path / "ix" / WORDS).unlink()
    works = json.loads((tmp_path / "ix" / WORKS).read_text())
    assert [w.get("heldout") for w in works] == [None, True]
    (tmp_path / "ix" / WORKS).write_text(
        json.dumps([{k: v for k, v in w.items() if k != "heldout"} for w in works])
    )
    assert Index(tmp_path / "ix").vocabulary().words == {"the", "cat", "sat", "on", "mat"}
    assert read_words(tmp_path / "ix" / WORDS) == {"the", "cat", "sat", "on", "mat"}


# --- the rule's states -------------------------------------------------------------------------


def _after(vocabulary: Vocabulary, text: str, state=ROOT):
    for ch in text:
        state = vocabulary.step(state, ch)
        if state is None:
            return None
    return state


def test_the_rule_letter_by_letter():
    v = Vocabulary(frozenset({"the", "then", "don't", "don", "l'été", "cat"}))
    assert _after(v, "The ") == ROOT
    assert _after(v, "th") == ("th", False)
    assert _after(v, "th ") is None  # "th" is no word: it may not end
    assert _after(v, "thx") is None
    assert _after(v, "THEN, don't.") == ROOT
    assert _after(v, "Don’t") == ("don't", True)
    assert _after(v, "don'") == ("don'", True)  # inside "don't", or "don" and a quote
    assert _after(v, "don' ") == ROOT
    assert _after(v, "don'x") is None
    assert _after(v, "cat'") == OPEN  # "cat" then a closing quote: only an end may follow
    assert _after(v, "cat's") is None
    assert _after(v, "cat''") == ROOT
    assert _after(v, "l'Été") == ("l'été", True)
    assert _after(v, "'the'") == OPEN and _after(v, "'the' ") == ROOT  # a quoted word
    assert _after(v, "42the_cat") == ("cat", True)  # digits and _ stand between words
    # text written whatever the rule (a prompt): an unknown word may still end
    assert v.read(ROOT, "Zarquon") == OPEN
    assert v.read(ROOT, "Zarquon is th") == ("th", False)


def _tokenizers():
    text = POLISH + FRENCH + ENGLISH
    return {
        "char": CharTokenizer.train(text),
        "bpe": train_tokenizer(TokenizerConfig("bpe", vocab_size=500), [text]),
        "unigram": train_tokenizer(TokenizerConfig("unigram", vocab_size=500), [text]),
    }


@pytest.fixture(scope="module")
def tokenizers():
    return _tokenizers()


@pytest.mark.parametrize("kind", ["char", "bpe", "unigram"])
def test_each_states_tokens_are_those_whose_every_character_is_allowed(tokenizers, kind):
    tok = tokenizers[kind]
    words = frozenset(fold(w) for w in words_in([POLISH + FRENCH]))
    vocabulary = Vocabulary(words)
    rule = KnownWords(vocabulary, tok)
    texts = token_texts(tok)
    assert any(t is None for t in texts) == (kind != "char")  # byte pieces
    rng = random.Random(1)
    states = [ROOT, OPEN, ("l'", False), ("aujourd'", False)]
    states += [(w[: rng.randint(1, len(w))], None) for w in rng.sample(sorted(words), 40)]
    states = [(w, w in words if end is None else end) for w, end in states]
    two_byte = [bytes([lead, b]).decode() for lead in range(0xC2, 0xE0) for b in range(0x80, 0xC0)]
    for state in states:
        mask, live = rule.banned(state, torch.device("cpu"))
        banned = mask.tolist()
        goes_on = {i for i, t in enumerate(texts) if t is None and tok.piece_bytes[i][0] < 0xC0}
        others = [b for i, b in enumerate(banned) if i not in {*tok.special_ids, *goes_on}]
        assert live == (not all(others))
        for i, text in enumerate(texts):
            byte = tok.piece_bytes[i][0] if text is None else None
            if byte is None:
                expected = _after(vocabulary, text, state) is None
            elif byte < 0xC0:  # goes on with a character: decided once one is begun
                expected = False
            elif byte < 0xE0:  # begins a 2-byte character: allowed if one of them is
                expected = all(
                    _after(vocabulary, c, state) is None for c in two_byte if c.encode()[0] == byte
                )
            else:
                continue
            assert banned[i] == expected, (state, text, byte)


# --- generation under the rule ---------------------------------------------------------------


def _setup(tmp_path, kind: str, train_text: str, index_text: str | None = None, model="lstm"):
    """A random model over a tokenizer of `train_text`, and an index of `index_text`."""
    tok = (
        CharTokenizer.train(train_text)
        if kind == "char"
        else train_tokenizer(TokenizerConfig(kind, vocab_size=400), [train_text])
    )
    split = Split.from_texts(index_text or train_text, "", "test")
    build_index(tmp_path / f"ix-{kind}", split.sources())
    torch.manual_seed(0)
    size = {"heads": 2, "context": 16, "mlp_dim": 32} if model == "transformer" else {"hidden": 32}
    config = ModelConfig(model=model, vocab_size=tok.vocab_size, embedding_dim=16, layers=1, **size)
    return build_model(config).eval(), tok, Index(tmp_path / f"ix-{kind}")


def _samples(model, tok, index, prompt, seeds, **options):
    config = SampleConfig(**{"temperature": 1.0, "length": 300, **options})
    return [s for _, _, s in Generation(model, tok, prompt, config, seeds, "cpu", index) if s]


def _unknown(sample, prompt: str, known) -> list[str]:
    report = invented(sample.text, known, prompt, cut=sample.stopped != "stop")
    return report["invented_examples"] if report["invented"] else []


# the rule is checked after the draw (a refused token makes it draw again from the banned
# scores) unless top-k or top-p is set, when the ban comes first: both ways are tried
@pytest.mark.parametrize(
    ("kind", "language", "model", "shaping"),
    [
        ("char", "en", "lstm", {}),
        ("char", "fr", "transformer", {"top_k": 20}),
        ("char", "pl", "gru", {}),
        ("bpe", "en", "lstm", {"top_p": 0.95}),
        ("bpe", "fr", "lstm", {}),
        ("bpe", "pl", "transformer", {"top_k": 50}),
        ("char", "en", "transformer", {"min_p": 0.02, "dry": 1.0, "dry_allowed": 6}),
        ("bpe", "en", "lstm", {"typical_p": 0.95, "eta": 0.01}),
    ],
)
def test_known_words_spell_only_training_words(tmp_path, kind, language, model, shaping):
    text = {"en": ENGLISH, "fr": FRENCH, "pl": POLISH}[language]
    model, tok, index = _setup(tmp_path, kind, text, model=model)
    known = index.vocabulary().words
    prompt = text[:30]
    free = _samples(model, tok, index, prompt, range(4), known_words=False, **shaping)
    assert sum(s.originality["invented"] for s in free) > 10  # a random model makes words up
    ruled = _samples(model, tok, index, prompt, range(12), known_words=True, **shaping)
    for s in ruled:
        assert s.known_words and s.stopped == "length"
        assert s.originality["words"] > 10
        assert _unknown(s, prompt, known) == [], s.text


def test_a_planted_tiny_vocabulary_gives_only_its_words(tmp_path):
    alphabet = "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ.,;'\n"
    corpus = "the cat saw a dog. a dog saw the cat; the bird sang.\n"
    model, tok, index = _setup(tmp_path, "char", alphabet + corpus, corpus * 3)
    samples = _samples(model, tok, index, "", range(6), known_words=True, length=400)
    words = {  # every word but one cut off by the end of its sample
        fold(m.group()) for s in samples for m in WORD_RE.finditer(s.text) if s.text[m.end() :]
    }
    assert words and words <= {"the", "cat", "saw", "a", "dog", "bird", "sang"}
    assert len(words) >= 4


def test_letters_written_in_bytes_are_held_to_the_rule_too(tmp_path):
    # pieces learnt from English: Polish letters (ł, ż, ę...) can only be written as UTF-8 bytes
    model, tok, index = _setup(tmp_path, "bpe", ENGLISH, POLISH)
    known = index.vocabulary().words
    samples = _samples(model, tok, index, "", range(10), known_words=True, length=400)
    assert all(s.stopped == "length" for s in samples)
    assert all(_unknown(s, "", known) == [] for s in samples)
    written = "".join(s.text for s in samples)
    assert len({ch for ch in written if ch in "ąćęłńóśźżĄĆĘŁŃÓŚŹŻ"}) >= 3


@pytest.mark.parametrize("shaping", [{}, {"top_p": 0.9}, {"min_p": 0.05, "dry": 1.0}])
def test_the_rule_holds_across_batches_and_each_sample_is_as_it_is_alone(
    tmp_path, monkeypatch, shaping
):
    monkeypatch.setattr(sample_module, "BATCH", 3)
    model, tok, index = _setup(tmp_path, "char", FRENCH)
    known = index.vocabulary().words
    options = {"known_words": True, "length": 150, **shaping}
    together = _samples(model, tok, index, "La ", range(7), **options)
    assert len(together) == 7
    for seed, s in enumerate(together):
        assert _unknown(s, "La ", known) == []
        alone = _samples(model, tok, index, "La ", [seed], **options)[0]
        assert alone.text == s.text


def test_the_rule_with_stop_and_until(tmp_path):
    model, tok, index = _setup(tmp_path, "char", ENGLISH)
    known = index.vocabulary().words
    stopped = _samples(model, tok, index, "The ", range(6), known_words=True, stop=(",", "."))
    until = _samples(model, tok, index, "The ", range(6), known_words=True, until="sentence")
    assert {s.stopped for s in stopped} == {"stop"} and {s.stopped for s in until} >= {"sentence"}
    for s in stopped:
        assert not {",", "."} & set(s.text) and _unknown(s, "The ", known) == []
    assert sum(s.originality["words"] for s in stopped) >= 6
    for s in until:
        assert _unknown(s, "The ", known) == []


@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_the_rule_with_max_copy_keeps_both(tmp_path, kind):
    text = ENGLISH * 2
    model, tok, index = _setup(tmp_path, kind, text)
    known = index.vocabulary().words
    samples = _samples(model, tok, index, "The ", range(6), known_words=True, max_copy=12)
    for s in samples:
        assert s.stopped in {"length", "max_copy", "known_words"}
        assert index.report(s.text)["longest_copy_chars"] <= 12
        assert _unknown(s, "The ", known) == []


@pytest.mark.parametrize("shaping", [{}, {"top_k": 3}])
def test_a_sample_with_no_allowed_token_ends_and_says_why(tmp_path, shaping):
    # the tokenizer has no "z", and the only word with "ab" is "abz": after "ab" nothing is allowed
    model, tok, index = _setup(tmp_path, "char", "ab ba a b.\n", "abz ba a b.\n")
    samples = _samples(model, tok, index, "a", range(3), known_words=True, length=200, **shaping)
    assert any(s.stopped == "known_words" for s in samples)
    for s in samples:
        if s.stopped == "known_words":
            assert ("a" + s.text).endswith("ab")
    free = _samples(model, tok, index, "a", range(3), known_words=False, length=200)
    assert all(s.stopped == "length" for s in free)


def test_known_words_without_an_index_is_refused_and_a_word_model_needs_none(tmp_path):
    model, tok, _ = _setup(tmp_path, "char", ENGLISH)
    with pytest.raises(DataError, match="--known-words needs the run's originality index"):
        Generation(model, tok, "The", SampleConfig(known_words=True), [0])
    # by default, and with --any-words, a run without an index generates as before
    for rule in (None, False):
        assert _samples(model, tok, None, "The", [0], known_words=rule)[0].known_words is False
    word_tok = train_tokenizer(TokenizerConfig("word", vocab_size=60), [ENGLISH])
    torch.manual_seed(0)
    word_model = build_model(ModelConfig(vocab_size=word_tok.vocab_size, hidden=16, layers=1))
    samples = _samples(word_model.eval(), word_tok, None, "The", [0], known_words=True)
    assert samples[0].known_words is False and samples[0].text
