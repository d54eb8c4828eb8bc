"""Tokenizers: round trips (hypothesis), <unk>, spacing and case of words, incremental decoding,
and token ids streamed to disk and reused."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from authorgen.config import TokenizerConfig
from authorgen.corpus import split_text
from authorgen.data import encode_split, encode_to_file, prepare_tokenizer
from authorgen.errors import DataError, UsageError
from authorgen.tokenizer import (
    UNK_TEXT,
    CharTokenizer,
    SentencePieceTokenizer,
    WordTokenizer,
    load_tokenizer,
    train_tokenizer,
)
from texts import ALL, ENGLISH, FRENCH, POLISH

SLOW = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Text as users' books have it: Polish and French letters, punctuation, newlines, runs of spaces
# and indentation.
LETTERS = (
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZąćęłńóśźżĄĆĘŁŃÓŚŹŻàâçéèêëîïôûùüÿœæÀÉÈÇÔ"
)
PROSE_CHARS = LETTERS + "0123456789 \n\n  .,;:!?'’\"«»—-()_…"
prose = st.text(alphabet=PROSE_CHARS, max_size=300)


@pytest.fixture(scope="module")
def pieces() -> dict[str, SentencePieceTokenizer]:
    """bpe and unigram sentencepiece models trained on the test texts."""
    text = ALL * 3
    return {
        kind: train_tokenizer(TokenizerConfig(kind, vocab_size=400), [text])
        for kind in ("bpe", "unigram")
    }


@pytest.fixture(scope="module")
def words() -> WordTokenizer:
    return WordTokenizer.train([ALL], vocab_size=10_000)


# --- char ---------------------------------------------------------------------------------------


def test_char_round_trip_unk_prompt_and_save(tmp_path):
    tok = CharTokenizer.train(["zażółć gęślą\n", "jaźń"])
    text = "gęś\nza"
    assert tok.decode(tok.encode(text)) == text
    assert tok.encode("Q") == [tok.unk_id] and tok.decode([tok.unk_id]) == UNK_TEXT
    with pytest.raises(DataError, match="'Q'"):
        tok.encode_prompt("Qa")
    tok.save(tmp_path)
    again = load_tokenizer(tmp_path)
    assert again.chars == tok.chars and again.fingerprint() == tok.fingerprint()


@given(st.text(max_size=200), st.text(max_size=200))
def test_char_fast_encoding_equals_the_plain_one(vocab_text, text):
    tok = CharTokenizer.train([vocab_text + "a"])
    assert tok.encode_array(text).tolist() == tok.encode(text)
    known = "".join(c for c in text if c in tok.index)
    assert tok.decode(tok.encode(known)) == known


# --- sentencepiece ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["bpe", "unigram"])
@SLOW
@given(text=st.one_of(st.text(max_size=200), prose))
def test_subwords_round_trip_any_text_exactly(pieces, kind, text):
    tok = pieces[kind]
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert tok.unk_id not in ids  # byte fallback: nothing is unknown


@pytest.mark.parametrize("kind", ["bpe", "unigram"])
def test_subwords_keep_whitespace_verse_and_the_meta_symbol(pieces, kind):
    tok = pieces[kind]
    for text in ["\n\n    The wind\n      is cold  \n", "a\u2581b \u2581", "\r\n\t\x00", ""]:
        assert tok.decode(tok.encode(text)) == text
    assert tok.encode("\n") == [tok.sp.piece_to_id("\n")]  # the newline is one piece
    assert len(tok.encode(POLISH)) < 0.8 * len(POLISH)  # subwords, not characters


@pytest.mark.parametrize("kind", ["bpe", "unigram"])
def test_subword_decoder_never_prints_half_a_character(pieces, kind):
    tok = pieces[kind]
    text = "Żółw 𝔘 😀 ĳ"  # letters outside the vocabulary go as UTF-8 bytes
    ids = tok.encode(text)
    assert any(i in tok.byte_ids for i in ids)
    decoder = tok.decoder()
    out = [decoder.push(i) for i in ids]
    assert "".join(out) + decoder.flush() == text
    assert all(UNK_TEXT not in piece for piece in out)
    assert "" in out  # a byte that does not finish its character prints nothing yet


@pytest.mark.parametrize("kind", ["bpe", "unigram"])
def test_subword_decoder_bans_bytes_that_would_break_utf8(pieces, kind):
    tok = pieces[kind]
    decoder = tok.decoder()
    lead = tok.sp.piece_to_id("<0xC5>")
    continuation = tok.sp.piece_to_id("<0x82>")
    assert continuation in decoder.banned()  # a continuation byte cannot start a character
    assert decoder.push(lead) == ""
    banned = set(decoder.banned())
    assert continuation not in banned and tok.sp.piece_to_id("a") in banned
    assert decoder.push(continuation) == "ł"
    assert continuation in decoder.banned()
    assert decoder.push(tok.sp.piece_to_id("<0x0A>")) == "\n"  # an ASCII byte is whole
    assert continuation in decoder.banned()
    assert decoder.push(tok.sp.piece_to_id("<0xED>")) == ""
    surrogate = tok.sp.piece_to_id("<0xA0>")  # ED A0 would begin a UTF-16 surrogate
    assert surrogate in decoder.banned() and continuation not in decoder.banned()


@pytest.mark.parametrize("kind", ["bpe", "unigram"])
@SLOW
@given(seed=st.integers(0, 2**32 - 1))
def test_ids_drawn_outside_the_banned_ones_always_decode_to_valid_text(pieces, kind, seed):
    tok = pieces[kind]
    rng = np.random.default_rng(seed)
    decoder, out = tok.decoder(), []
    byte_ids = sorted(tok.byte_ids)
    for _ in range(60):
        allowed = sorted(set(byte_ids) - set(decoder.banned()))
        if rng.random() < 0.2 and not decoder.needed:
            banned = set(decoder.banned()) | set(tok.special_ids)  # as the sampler bans
            allowed = [i for i in range(tok.vocab_size) if i not in banned]
        out.append(decoder.push(int(rng.choice(allowed))))
    while decoder.needed:  # finish the character begun
        out.append(decoder.push(min(set(byte_ids) - set(decoder.banned()))))
    assert "\ufffd" not in "".join(out) + decoder.flush()


def test_subword_vocabulary_too_large_says_how_large_it_can_be():
    with pytest.raises(UsageError, match=r"--vocab-size 5000 is too large.*at most \d+"):
        train_tokenizer(TokenizerConfig("unigram", vocab_size=5000), [FRENCH])


def test_subword_tokenizer_saves_and_loads(pieces, tmp_path):
    pieces["bpe"].save(tmp_path)
    again = load_tokenizer(tmp_path)
    assert again.kind == "bpe" and again.encode(POLISH) == pieces["bpe"].encode(POLISH)
    (tmp_path / "tokenizer.model").write_bytes(b"not a model")
    with pytest.raises(DataError, match="damaged"):
        load_tokenizer(tmp_path)


# --- word ---------------------------------------------------------------------------------------


def test_word_vocabulary_keeps_the_most_frequent_and_the_rest_is_unk():
    text = "the cat sat on the mat . the cat ran .\n" * 3 + "zebra"
    tok = WordTokenizer.train([text], vocab_size=4)  # <unk> + the 3 most frequent
    assert tok.tokens == ["<unk>", "the", ".", "cat"]
    assert tok.encode("the zebra sat") == [1, 0, 0]
    assert tok.unknown("the zebra sat .") == ["sat", "zebra"]
    assert tok.decode([1, 0, 3]) == f"the {UNK_TEXT} cat"


def test_words_decode_as_prose(words):
    for text in [
        '"Well," said the old man, "it is a fine day; isn\'t it?" He looked at the sea '
        "(which was grey, as always) and smiled.",
        "Mr. Brown had 12 boats, and the harbour-master of London had said so twice.",
        "« Il fera beau aujourd'hui », disait-elle à son frère.",
        "— Niech wraca — powiedziała żona.\nŻona spała jeszcze.",
    ]:
        assert words.decode(words.encode(text)) == text


def test_lowercase_words_get_their_capitals_back():
    tok = WordTokenizer.train(
        [ENGLISH * 3 + "\nI think I was in London, and I was glad."], 500, True
    )
    assert "London" not in tok.tokens and "london" in tok.tokens
    ids = tok.encode("the boats come back. and i was glad in london.")
    assert tok.decode(ids) == "The boats come back. And I was glad in London."


@SLOW
@given(text=prose)
def test_word_decoding_reads_back_as_the_same_tokens(text):
    tok = WordTokenizer.train([text + " a"], vocab_size=100_000)
    ids = tok.encode(text)
    assert tok.encode(tok.decode(ids)) == ids
    lower = WordTokenizer.train([text + " a"], vocab_size=100_000, lowercase=True)
    ids = lower.encode(text)
    assert lower.encode(lower.decode(ids)) == ids


@SLOW
@given(text=prose, cut=st.integers(0, 300))
def test_word_decoder_continues_a_prompt_as_the_whole_text_would(words, text, cut):
    ids = words.encode(text)
    k = min(cut, len(ids))
    prompt = words.decode(ids[:k])
    decoder = words.decoder(prompt)
    assert prompt + "".join(decoder.push(i) for i in ids[k:]) == words.decode(ids)


# --- token ids on disk --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["char", "word", "bpe", "unigram"])
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(sizes=st.lists(st.integers(1, 400), min_size=1, max_size=30))
def test_ids_streamed_in_chunks_equal_the_whole_text_encoded(pieces, words, tmp_path, kind, sizes):
    tok = {"char": CharTokenizer.train([ALL]), "word": words, **pieces}[kind]
    text = ALL
    chunks, at = [], 0
    for size in sizes * (len(text) // sum(sizes) + 1):
        chunks.append(text[at : at + size])
        at += size
    path = tmp_path / f"{kind}.bin"
    counts = encode_to_file(tok, chunks, path, np.uint16)
    ids = np.fromfile(path, dtype=np.uint16).tolist()
    assert ids == tok.encode(text)
    assert counts["tokens"] == len(ids) and counts["chars"] == len(text)


def test_token_ids_are_cached_and_reused(tmp_path):
    split = split_text(ALL * 4)
    config = TokenizerConfig("bpe", vocab_size=400)
    tok, reused = prepare_tokenizer(split, config, tmp_path)
    assert not reused
    first = encode_split(split, tok, tmp_path)
    assert not first.reused and first.train.ids.dtype == np.uint16
    assert isinstance(first.train.ids, np.memmap)
    assert first.train.ids.tolist() == tok.encode(split.train[0])
    stamp = (first.folder / "train.bin").stat().st_mtime_ns

    tok2, reused = prepare_tokenizer(split, config, tmp_path)
    assert reused and tok2.fingerprint() == tok.fingerprint()
    again = encode_split(split, tok2, tmp_path)
    assert again.reused and again.folder == first.folder
    assert (first.folder / "train.bin").stat().st_mtime_ns == stamp

    other = encode_split(split_text(ALL * 5), tok, tmp_path)  # other text: another entry
    assert not other.reused and other.folder != first.folder

    with open(first.folder / "train.bin", "r+b") as f:  # damaged: encoded again
        f.truncate(10)
    fixed = encode_split(split, tok, tmp_path)
    assert not fixed.reused and fixed.train.ids.tolist() == tok.encode(split.train[0])


def test_vocabularies_past_65536_use_uint32(tmp_path):
    def word(i: int) -> str:
        return "".join("abcdefghij"[int(d)] for d in str(i))

    split = split_text(" ".join(word(i) for i in range(80_000)))
    tok, _ = prepare_tokenizer(split, TokenizerConfig("word", vocab_size=80_000), tmp_path)
    assert tok.vocab_size > 1 << 16
    encoded = encode_split(split, tok, tmp_path)
    assert encoded.train.ids.dtype == np.uint32
    assert encoded.train.ids[-1] == tok.index[re.findall(r"\w+", split.train[0])[-1]]
