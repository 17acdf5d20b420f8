"""Chunking in the embedding model's tokens: sizes, overlap, where chunks end, edge cases."""

from __future__ import annotations

import itertools

import pytest

from switchboard.planner.work import chunking
from switchboard.planner.work.chunking import chunk, count_tokens

VOLCANO = "Volcanoes vent magma from the mantle and build mountains of cooled lava. "
VIOLIN = "The violin has four strings tuned in fifths and is played with a bow. "
TAXES = "Tax law decides which income is taxed and which deductions reduce it. "


def _sentences(count: int) -> str:
    return "".join(
        f"Sentence number {i} tells about item {i} in plain words. " for i in range(count)
    )


def _tokens(text: str) -> list[str]:
    return list(chunking.tokenizer().encode(text, add_special_tokens=False).tokens)


@pytest.mark.parametrize(("limit", "overlap"), [(500, 50), (64, 8), (20, 0), (33, 32)])
def test_every_chunk_fits_the_limit_in_the_models_tokens(limit: int, overlap: int) -> None:
    chunks = chunk(_sentences(200), limit, overlap)

    assert len(chunks) > 1
    for piece in chunks:
        assert piece.tokens <= limit
        assert count_tokens(piece.text) == piece.tokens


def test_each_chunk_repeats_the_end_of_the_one_before() -> None:
    text = _sentences(120)
    chunks = chunk(text, 60, 12)

    for before, after in itertools.pairwise(chunks):
        assert after.start < before.end, "consecutive chunks overlap in the text"
        shared = text[after.start : before.end]
        # At least the asked overlap; more only to start at a word's beginning.
        assert 12 <= count_tokens(shared) <= 12 + 4
        assert before.text.endswith(shared)
        assert after.text.startswith(shared)


def test_without_overlap_the_chunks_cover_the_text_once() -> None:
    text = _sentences(80)
    chunks = chunk(text, 40, 0)

    assert " ".join(c.text for c in chunks).split() == text.split()
    assert sum(c.tokens for c in chunks) == count_tokens(text)


def test_chunks_end_at_paragraphs_then_sentences_rather_than_mid_sentence() -> None:
    paragraphs = [VOLCANO * 3, VIOLIN * 3, TAXES * 3]
    text = "\n\n".join(p.strip() for p in paragraphs)
    limit = count_tokens(paragraphs[0]) + 10  # one paragraph fits; two do not

    chunks = chunk(text, limit, 0)

    assert [c.text for c in chunks] == [p.strip() for p in paragraphs]


def test_a_chunk_ends_after_a_sentence_when_no_paragraph_ends_near_the_limit() -> None:
    chunks = chunk(_sentences(60), 50, 0)

    assert all(c.text.endswith(".") for c in chunks)


def test_text_without_spaces_is_cut_between_word_pieces() -> None:
    word = "antidisestablishmentarianism" * 3  # within the tokenizer's 100-character words
    text = " ".join([word] * 4)

    chunks = chunk(text, 10, 2)

    assert all(c.tokens <= 10 for c in chunks)
    assert chunks[0].text.startswith("antidis")
    assert chunks[-1].text.endswith("ism")


def test_tiny_and_empty_texts() -> None:
    assert chunk("") == []
    assert chunk(" \n\t ") == []
    (only,) = chunk("Hello.")
    assert (only.text, only.tokens) == ("Hello.", 2)
    (padded,) = chunk("  two words \n")
    assert (padded.text, padded.start, padded.end) == ("two words", 2, 11)


def test_counts_use_the_minilm_word_pieces() -> None:
    assert _tokens("Volcanoes erupt") == ["volcanoes", "er", "##upt"]
    assert count_tokens("Volcanoes erupt") == 3


@pytest.mark.parametrize(("limit", "overlap"), [(0, 0), (10, 10), (10, -1)])
def test_overlap_must_be_smaller_than_the_limit(limit: int, overlap: int) -> None:
    with pytest.raises(ValueError, match="overlap"):
        chunk("some text", limit, overlap)
