"""Learning merges from chunk counts, in this process or with the chunks split over workers.

The distinct chunks (latin-1 byte strings) become id-strings (`tok.merges`); each `_Shard` holds
some of them with their counts and an index from every pair to the chunks that hold it. The
parent keeps the count of every pair over all shards and a heap of them; each step it takes a
pair of the highest count (ties: the smallest pair), and every shard rewrites its chunks that
hold it and answers with the pair counts that changed: the pairs lost around each merged
occurrence and the new pairs that hold the new id. The counts, so the merges, are the same
however the chunks are split, so the tokenizer is the same for any number of workers.
"""

from __future__ import annotations

import heapq
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from operator import add

from tok.counting import count_chunks
from tok.parallel import Pinned, Workers

# below this many chunks a shard's work is too small to pay for a process and a round trip per merge
MIN_SHARD_CHUNKS = 50_000


class _Shard:
    """Some distinct chunks as id-strings, their counts, and pair -> the chunks that (once) held it."""

    def __init__(self, words: list[str], freqs: list[int]) -> None:
        self.words, self.freqs = words, freqs
        self.where: defaultdict[str, list[int]] = defaultdict(list)

    def pair_counts(self) -> dict[str, int]:
        """Index every pair and count it, each chunk weighted by its count."""
        counts: dict[str, int] = {}
        where = self.where
        for i, (word, freq) in enumerate(zip(self.words, self.freqs, strict=True)):
            for pair in map(add, word, word[1:]):
                counts[pair] = counts.get(pair, 0) + freq
                where[pair].append(i)
        return counts

    def merge(self, pair: str, new: str) -> tuple[dict[str, int], dict[str, int]]:
        """Replace `pair` by the id `new` in every chunk that holds it: (pairs that lost
        occurrences -> minus how many, the merged pair itself aside; new pairs -> count)."""
        words, freqs, where = self.words, self.freqs, self.where
        gone: dict[str, int] = {}
        born: dict[str, int] = {}  # pairs that contain the new id, all of them new
        same = pair[0] == pair[1]  # "aaa": occurrences may overlap
        for i in dict.fromkeys(where.pop(pair, ())):
            old = words[i]
            word = old.replace(pair, new)
            n = len(word)
            if n == len(old):  # stale index entry
                continue
            words[i] = word
            freq = freqs[i]
            at = word.find(new)
            if n + 1 == len(old) and not same:  # one occurrence: x a b y -> x Z y
                if at:
                    lost = old[at - 1 : at + 1]
                    gone[lost] = gone.get(lost, 0) - freq
                    fresh = word[at - 1 : at + 1]
                    born[fresh] = born.get(fresh, 0) + freq
                    where[fresh].append(i)
                if at + 1 < n:
                    lost = old[at + 1 : at + 3]
                    gone[lost] = gone.get(lost, 0) - freq
                    fresh = word[at : at + 2]
                    born[fresh] = born.get(fresh, 0) + freq
                    where[fresh].append(i)
                continue
            # Several occurrences: walk them, counting each pair position once.
            last_old = last_new = -1
            shift = 0  # the occurrence at `at` in `word` sat at `at + shift` in `old`
            while at >= 0:
                j = at + shift
                for k in (j - 1, j, j + 1):
                    if last_old < k <= len(old) - 2:
                        lost = old[k : k + 2]
                        if lost != pair:
                            gone[lost] = gone.get(lost, 0) - freq
                last_old = j + 1
                for k in (at - 1, at):
                    if last_new < k <= n - 2:
                        fresh = word[k : k + 2]
                        born[fresh] = born.get(fresh, 0) + freq
                        where[fresh].append(i)
                last_new = at
                shift += 1
                at = word.find(new, at + 1)
        return gone, born


def _n_shards(workers: int | Workers, n_chunks: int) -> int:
    n = workers.n if isinstance(workers, Workers) else max(1, workers)
    return max(1, min(n, n_chunks // MIN_SHARD_CHUNKS))


def train_merges(
    chunks: dict[str, int],
    n_merges: int,
    on_merge: Callable[[], object] | None = None,
    workers: int | Workers = 1,
) -> list[str]:
    """Learn up to `n_merges` merges (pairs of id characters) from distinct chunks and counts,
    the chunks split over `workers` processes when there are enough of them."""
    words = [w for w in chunks if len(w) > 1]  # single bytes hold no pair
    freqs = [chunks[w] for w in words]
    n = _n_shards(workers, len(words))
    shard_args = [(words[k::n], freqs[k::n]) for k in range(n)]  # every n-th: balanced work
    del words, freqs
    pool = workers if isinstance(workers, Workers) else None
    with Pinned(_Shard, shard_args, pool) as shards:
        del shard_args
        counts: dict[str, int] = {}
        for part in shards.call("pair_counts"):
            for pair, c in part.items():
                counts[pair] = counts.get(pair, 0) + c
        heap = [(-c, p) for p, c in counts.items()]
        heapq.heapify(heap)
        merges: list[str] = []
        while len(merges) < n_merges:
            while heap:
                neg, pair = heapq.heappop(heap)
                best = counts.get(pair, 0)
                if best == -neg:
                    break
                if best:  # the count fell since this entry was pushed: re-queue it
                    heapq.heappush(heap, (-best, pair))
            else:
                best = 0
            if best < 2:
                warnings.warn(
                    f"training stopped after {len(merges)} of {n_merges} merges: "
                    "no pair of tokens occurs twice",
                    stacklevel=3,
                )
                break
            merges.append(pair)
            del counts[pair]
            answers = shards.call("merge", pair, chr(256 + len(merges) - 1))
            born = answers[0][1]
            for gone, more in answers:
                for lost, minus in gone.items():
                    counts[lost] += minus
                if more is not born:
                    for fresh, c in more.items():
                        born[fresh] = born.get(fresh, 0) + c
            for fresh, c in born.items():
                counts[fresh] = c
                heapq.heappush(heap, (-c, fresh))
            if on_merge is not None:
                on_merge()
    return merges


def learn_merges(
    pieces: Iterable[str],
    n_merges: int,
    pattern: str,
    specials: Sequence[str] = (),
    progress: bool = False,
    workers: int | Workers = 1,
) -> dict[tuple[int, int], int]:
    """Count the chunks of a stream of texts (special-token texts cut out) and learn up to
    `n_merges` merges from them: (left id, right id) -> 256 + rank, in rank order."""
    if not isinstance(workers, Workers):  # one set of workers, forked while we are small
        with Workers(workers, hosts=True) as pool:
            return learn_merges(pieces, n_merges, pattern, specials, progress, pool)
    chunks = count_chunks(pieces, pattern, specials, workers)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n_merges, desc="merges", unit="merge", leave=False)
    try:
        on_merge = bar.update if bar is not None else None
        learned = train_merges(chunks, n_merges, on_merge, workers)
    finally:
        if bar is not None:
            bar.close()
    return {(ord(p[0]), ord(p[1])): 256 + r for r, p in enumerate(learned)}
