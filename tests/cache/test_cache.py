"""Cache integrity: atomic writes, concurrent writers, killed writers, bounds."""

import os
import signal
import subprocess
import sys
import time

import numpy as np

from cnnfeatures.cache import ActivationCache, make_key

WRITER = """
import sys, numpy as np
from cnnfeatures.cache import ActivationCache, make_key
cache = ActivationCache(sys.argv[1])
for i in range(int(sys.argv[2])):
    cache.put(make_key("img", i), np.full(20000, i, np.float32))
"""


def _all_entries_whole(directory):
    files = list(directory.glob("*/*.npy"))
    for path in files:
        value = np.load(path, allow_pickle=False)
        assert value.shape == (20000,) and np.all(value == value[0])
    return files


def test_two_processes_fill_the_same_cache(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), "150"])
             for _ in range(2)]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    assert len(_all_entries_whole(tmp_path)) == 150
    cache = ActivationCache(tmp_path)
    np.testing.assert_array_equal(cache.get(make_key("img", 7)), np.full(20000, 7, np.float32))


def test_killed_writer_leaves_no_corrupt_entry(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), "100000"])
    deadline = time.time() + 60
    while time.time() < deadline and len(list(tmp_path.glob("*/*.npy"))) < 50:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    files = _all_entries_whole(tmp_path)  # every visible entry loads whole
    assert len(files) >= 50
    cache = ActivationCache(tmp_path)
    cache.prune(max_bytes=10**12)  # sweeps a half-written temporary file, if any
    assert not list(tmp_path.glob("*/*.tmp"))


def test_a_damaged_entry_is_a_miss(tmp_path):
    cache = ActivationCache(tmp_path, max_memory_bytes=10_000)  # its own memory tier
    key = make_key("x")
    cache.put(key, np.ones(3, np.float32))
    path = next(tmp_path.glob("*/*.npy"))
    path.write_bytes(b"garbage")
    assert ActivationCache(tmp_path, max_memory_bytes=10_000).get(key) is None


def test_memory_bound_and_disk_prune(tmp_path):
    # Each entry costs what it takes: 400 bytes of data, the array object, the key and the
    # LRU's node (729 bytes here), so 1500 bytes hold two.
    cache = ActivationCache(tmp_path, max_memory_bytes=1500)
    for i in range(10):
        cache.put(make_key(i), np.zeros(100, np.float32))  # 400 bytes each
    info = cache.info()
    assert info.memory_entries == 2 and info.memory_bytes <= 1500
    assert info.disk_entries == 10
    removed = cache.prune(max_bytes=5 * 528)  # .npy of 100 float32 = 528 bytes
    assert removed == 5 and cache.info().disk_entries == 5
    cache.clear()
    assert cache.info().disk_entries == 0 and cache.info().memory_entries == 0
