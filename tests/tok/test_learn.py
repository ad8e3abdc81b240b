"""Merge training split over worker processes learns exactly what one process learns, and the
pinned workers it runs on keep their state, answer in order and report failures."""

from __future__ import annotations

import os
import signal
import warnings
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tok.learn
from tok.bpe import GPT4_PATTERN, Tokenizer
from tok.counting import count_chunks
from tok.learn import _n_shards, train_merges
from tok.parallel import Pinned, Workers

TINY = Path(__file__).resolve().parents[2] / "data" / "tiny.txt"
WORDS = ["the", "cat", "sat", "on", "mat", "héllo", "漢字", "🙂", "42", "it's", "aaaa", "a", "ab"]
corpora = st.lists(st.sampled_from(WORDS), min_size=1, max_size=120).map(" ".join)


@pytest.fixture
def always_shard(monkeypatch: pytest.MonkeyPatch) -> None:
    """Split even a handful of chunks over workers (the default waits for big tables)."""
    monkeypatch.setattr(tok.learn, "MIN_SHARD_CHUNKS", 1)


def merges_quietly(chunks: dict[str, int], n: int, workers: int) -> list[str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # small texts run out of pairs
        return train_merges(chunks, n, workers=workers)


@pytest.mark.parametrize("workers", [2, 3])
# the fixture only sets a constant, the same for every example
@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=corpora, n=st.integers(1, 60))
def test_sharded_merges_equal_one_process(always_shard: None, workers: int, text: str, n: int):
    chunks = count_chunks([text], GPT4_PATTERN)
    assert merges_quietly(chunks, n, workers) == merges_quietly(chunks, n, 1)


def test_sharded_training_gives_the_same_tokenizer_file(always_shard: None) -> None:
    text = TINY.read_text(encoding="utf-8")
    want = Tokenizer.train(text, 700, special_tokens=["<|endoftext|>"]).to_json()
    for workers in (2, 3):
        got = Tokenizer.train_pieces([text], 700, special_tokens=["<|endoftext|>"], workers=workers)
        assert got.to_json() == want


def test_sharded_training_warns_when_pairs_run_out(always_shard: None) -> None:
    with pytest.warns(UserWarning, match="stopped after 2 of 50 merges"):
        assert train_merges({"ab": 3, "abc": 2, "x": 9}, 50, workers=2) == ["ab", "\u0100c"]


def test_small_tables_stay_in_this_process() -> None:
    assert _n_shards(4, tok.learn.MIN_SHARD_CHUNKS - 1) == 1
    assert _n_shards(4, 3 * tok.learn.MIN_SHARD_CHUNKS) == 3
    with Workers(2) as pool:
        assert _n_shards(pool, 10 * tok.learn.MIN_SHARD_CHUNKS) == 2


# ---- pinned workers -----------------------------------------------------------------------------


class Counter:
    def __init__(self, start: int) -> None:
        if start < 0:
            raise ValueError("negative start")
        self.value = start

    def add(self, k: int) -> tuple[int, int]:
        self.value += k
        return self.value, os.getpid()

    def fail(self) -> None:
        raise KeyError("no such thing")

    def die(self) -> None:
        os.kill(os.getpid(), signal.SIGKILL)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_pinned_keeps_state_and_answers_in_shard_order(n: int) -> None:
    with Pinned(Counter, [(10 * k,) for k in range(n)]) as shards:
        shards.call("add", 1)
        got = shards.call("add", 2)
    assert [v for v, _ in got] == [10 * k + 3 for k in range(n)]
    pids = [pid for _, pid in got]
    assert pids[0] == os.getpid() and len(set(pids)) == n  # the first shard is ours


def test_pinned_reports_a_failing_call_and_goes_on() -> None:
    with Pinned(Counter, [(0,), (5,), (7,)]) as shards:
        with pytest.raises(KeyError, match="no such thing"):  # the first shard is ours
            shards.call("fail")
        assert [v for v, _ in shards.call("add", 1)] == [1, 6, 8]


class FailsAway(Counter):
    def fail(self) -> None:
        if self.value:
            raise KeyError("not here")


def test_pinned_reports_a_failure_in_a_worker_process() -> None:
    with Pinned(FailsAway, [(0,), (5,)]) as shards:
        with pytest.raises(RuntimeError, match="in a worker process: KeyError: 'not here'"):
            shards.call("fail")
        assert [v for v, _ in shards.call("add", 1)] == [1, 6]


def test_pinned_reports_a_shard_that_could_not_be_built() -> None:
    shards = Pinned(Counter, [(0,), (-1,)])
    with shards, pytest.raises(RuntimeError, match="ValueError: negative start"):
        shards.call("add", 1)


class DiesAway(Counter):
    def die(self) -> None:
        if self.value:
            super().die()


def test_pinned_reports_a_shard_that_died() -> None:
    shards = Pinned(DiesAway, [(0,), (1,)])
    with shards, pytest.raises(RuntimeError, match="ended unexpectedly"):
        shards.call("die")


def test_pinned_leaves_no_process_behind() -> None:
    with Pinned(Counter, [(0,), (1,), (2,)]) as shards:
        procs = [proc for proc, _ in shards._hosts]
        assert len(procs) == 2 and all(p.is_alive() for p in procs)
    assert not any(p.is_alive() for p in procs)


def test_pinned_takes_the_hosts_workers_forked_early_and_each_serves_once() -> None:
    with Workers(3, hosts=True) as pool:
        early = {proc.pid for proc, _ in pool._hosts}
        assert len(early) == 2
        with Pinned(Counter, [(0,), (1,)], pool) as shards:
            (_, first), (_, second) = shards.call("add", 1)
            assert first == os.getpid() and second in early
        assert len(pool._hosts) == 1  # one host left; the used one has ended
        with Pinned(Counter, [(0,), (1,), (2,)], pool) as shards:  # one left, one forked now
            pids = [pid for _, pid in shards.call("add", 1)]
            assert pids[1] in early and pids[2] not in early | {os.getpid()}
        assert not pool._hosts
    with Workers(2, hosts=True) as pool:
        procs = [proc for proc, _ in pool._hosts]
    assert procs and not any(p.is_alive() for p in procs)  # unused hosts end with the workers
    with Workers(2) as pool:
        assert not pool._hosts  # a plain map needs none
