"""BPE on id-strings: applying merges by rank (learning them is `tok.learn`).

Internally a sequence of ids is a `str` whose characters are the ids (`chr(id)`), so that
C-speed `str.replace` applies a merge to all non-overlapping occurrences, left to right,
exactly as BPE prescribes, and a pair is a two-character string whose ordering is the
(left, right) ordering of ids.
"""

from __future__ import annotations

import heapq
import sys
from array import array
from operator import add

# ids_of and the token caches: an array type of 4-byte unsigned ints and the UTF-32 codec of this machine's byte order
ID_ARRAY = next(code for code in "IL" if array(code).itemsize == 4)
_UTF32 = f"utf-32-{sys.byteorder[0]}e"


def latin1(text: str) -> str:
    """The UTF-8 bytes of `text` as a str of chars 0..255; lone surrogates become U+FFFD."""
    try:
        return text.encode("utf-8").decode("latin-1")
    except UnicodeEncodeError:
        clean = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        return clean.encode("utf-8").decode("latin-1")


def apply_merges(seqs: list[str], rank: dict[str, int], pair_of: list[str]) -> list[str]:
    """Apply the merges by rank to many id-strings at once; returns the merged strings.

    BPE on one sequence applies, again and again, the lowest-ranked merge whose pair is
    present. A merge only creates pairs that contain its new id, and any merge of such a
    pair ranks after it, so the ranks applied only ever increase: BPE is the same as
    going through the merges in rank order and applying each one that is present. Doing
    that for all sequences together, with a heap of the ranks present and an index from
    pair to the sequences that hold it, costs time in proportion to the merges applied.
    """
    seqs = list(seqs)
    where: dict[str, list[int]] = {}  # pair -> the sequences that (may) hold it
    heap: list[int] = []  # the ranks of the pairs in `where`
    for i, seq in enumerate(seqs):
        for pair in filter(rank.__contains__, map(add, seq, seq[1:])):
            holders = where.setdefault(pair, [])
            if not holders:  # a pair new to `where`: its rank joins the heap
                heapq.heappush(heap, rank[pair])
            holders.append(i)
    while heap:
        new_id = heapq.heappop(heap)
        pair, new = pair_of[new_id - 256], chr(new_id)
        holders = where.pop(pair)
        for i in holders if len(holders) == 1 else dict.fromkeys(holders):
            seq = seqs[i]
            if pair not in seq:  # an earlier merge took it
                continue
            seqs[i] = seq = seq.replace(pair, new)
            at = seq.find(new)
            while at >= 0:  # the pairs the new id makes with its neighbours (unrolled: hot loop)
                left, right = seq[at - 1 : at + 1] if at else "", seq[at : at + 2]
                if left in rank:
                    if not (also := where.setdefault(left, [])):
                        heapq.heappush(heap, rank[left])
                    also.append(i)
                if right in rank:
                    if not (also := where.setdefault(right, [])):
                        heapq.heappush(heap, rank[right])
                    also.append(i)
                at = seq.find(new, at + 1)
    return seqs


def ids_of(ids: str) -> list[int]:
    """The ids in a str of chr(id) as a list of ints (via UTF-32 and an array: no per-id Python)."""
    return array(ID_ARRAY, ids.encode(_UTF32, "surrogatepass")).tolist()
