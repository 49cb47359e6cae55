"""cnnfeatures.memo: the one bounded, clearable, thread-safe memo type."""

import threading
import time

from cnnfeatures.memo import Memo, clear_memos, memo_info, memoized


def test_bound_in_entries_drops_the_least_recently_used():
    memo = Memo("test entries", maxsize=2)
    memo.put("a", 1), memo.put("b", 2)
    assert memo.get("a") == 1  # "b" is now the least recently used
    memo.put("c", 3)
    assert memo.keys() == ["a", "c"] and "b" not in memo
    memo.forget()


def test_bound_in_bytes_and_an_entry_larger_than_the_bound():
    memo = Memo("test bytes", maxsize=10, getsizeof=len)
    memo.put("x", b"12345"), memo.put("y", b"123456")
    assert memo.keys() == ["y"] and memo.currsize == 6
    memo.put("z", b"x" * 11)  # over the whole bound: not kept, nothing else evicted
    assert memo.keys() == ["y"]
    memo.resize(5)
    assert memo.keys() == [] and memo.maxsize == 5
    memo.forget()


def test_resize_keeps_the_most_recent():
    memo = Memo("test resize", maxsize=4)
    for key in "abcd":
        memo.put(key, key)
    memo.get("a")
    memo.resize(2)
    assert sorted(memo.keys()) == ["a", "d"]
    memo.forget()


def test_computed_once_under_concurrent_callers():
    calls = []

    @memoized("test slow square", maxsize=8)
    def square(n):
        calls.append(n)
        time.sleep(0.05)
        return n * n

    threads = [threading.Thread(target=square, args=(3,)) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == [3] and square(3) == 9
    assert memo_info()["test slow square"] == (1, 8)
    clear_memos()
    assert memo_info()["test slow square"] == (0, 8)
    square(3)
    assert calls == [3, 3]  # computed again after clearing
    square.memo.forget()
    assert "test slow square" not in memo_info()


def test_the_library_memos_are_listed_and_bounded():
    import cnnfeatures.backbones  # noqa: F401
    import cnnfeatures.cache

    cnnfeatures.cache.memory_cache()
    info = memo_info()
    for name in ("feature networks", "pretrained weights", "weights file digests"):
        size, bound = info[name]
        assert 0 <= size <= bound
