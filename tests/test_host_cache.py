"""The host cache behind ember._C.empty: large arrays reuse freed blocks, small ones are NumPy's
own; views keep a block alive; the limit and clearing; bad shapes and sizes."""

import gc

import numpy as np
import pytest
from concurrency import run_threads

import ember
from ember import _C

BIG = (64, 32, 30, 30)  # 7.4 MB of float32


def address_of(a):
    # an int: a.ctypes would hold a reference to a (and pytest keeps assertion operands)
    return a.__array_interface__["data"][0]


@pytest.fixture(autouse=True)
def fresh_cache():
    ember.set_host_cache_limit(1 << 30)
    gc.collect()  # arrays in other tests' garbage cycles go back to the cache now, not during a test
    ember.empty_host_cache()
    yield
    ember.set_host_cache_limit(1 << 30)


def test_shapes_dtypes_and_layout():
    for shape, dtype in [(BIG, np.float32), ((3, 5), np.float64), ((1 << 17,), np.int64), ((0, 7), np.float32),
                         ((), np.float32), ([4, 1 << 16], "float32")]:
        a = _C.empty(shape, dtype)
        assert a.shape == tuple(shape) and a.dtype == np.dtype(dtype)
        assert a.flags.c_contiguous and a.flags.writeable
        if a.nbytes >= _C.host_cache_min_bytes:
            assert address_of(a) % 64 == 0
        a[...] = 7
        assert (a == 7).all()


def test_freed_blocks_are_handed_out_again():
    a = _C.empty(BIG, np.float32)
    address = address_of(a)
    del a
    info = ember.host_cache_info()
    assert info["cached_blocks"] == 1 and info["cached_bytes"] >= 4 * np.prod(BIG)
    b = _C.empty(BIG, np.float32)
    assert address_of(b) == address
    assert ember.host_cache_info()["cached_blocks"] == 0
    c = _C.empty((64, 32, 30, 31), np.float32)  # the same size class, but b holds the block
    assert address_of(c) != address
    del b
    hits = ember.host_cache_info()["hits"]
    d = _C.empty((64, 32, 30, 31), np.float32)
    assert address_of(d) == address and ember.host_cache_info()["hits"] == hits + 1


def test_a_view_keeps_the_block_alive():
    a = _C.empty(BIG, np.float32)
    a[...] = 3.0
    view = a[5:, ::2]
    del a
    gc.collect()
    assert ember.host_cache_info()["cached_blocks"] == 0  # not returned while the view lives
    other = _C.empty(BIG, np.float32)  # must not receive the view's memory
    other[...] = -1.0
    assert (view == 3.0).all()
    del view
    assert ember.host_cache_info()["cached_blocks"] == 1


def test_small_arrays_are_numpys_own():
    before = ember.host_cache_info()
    a = _C.empty((16, 16), np.float32)
    assert a.flags.owndata
    del a
    after = ember.host_cache_info()
    assert (after["hits"], after["misses"], after["cached_blocks"]) == (before["hits"], before["misses"], 0)


def test_limit_and_clear():
    arrays = [_C.empty(BIG, np.float32) for _ in range(3)]
    block = ember.host_cache_info()
    del arrays
    cached = ember.host_cache_info()["cached_bytes"]
    assert ember.host_cache_info()["cached_blocks"] == 3 and block["cached_blocks"] == 0
    ember.set_host_cache_limit(cached // 2)
    info = ember.host_cache_info()
    assert info["cached_bytes"] <= cached // 2 and info["limit_bytes"] == cached // 2
    ember.empty_host_cache()
    assert ember.host_cache_info()["cached_bytes"] == 0
    ember.set_host_cache_limit(0)  # off: freed blocks go straight back to the system
    _C.empty(BIG, np.float32)
    assert ember.host_cache_info()["cached_blocks"] == 0


def test_threads_allocate_and_free_concurrently():
    def work(seed):
        for i in range(50):
            a = _C.empty(((1 << 16) + 1024 * (i % 3),), np.float32)
            a[...] = seed
            assert (a == seed).all()

    run_threads(work, 4)


def test_bad_input():
    with pytest.raises(ValueError, match="negative dimensions are not allowed"):
        _C.empty((3, -1), np.float32)
    with pytest.raises(ValueError, match="array is too big"):
        _C.empty((1 << 40, 1 << 40), np.float32)
    with pytest.raises(MemoryError, match="Unable to allocate"):
        _C.empty((1 << 50,), np.float32)
    with pytest.raises(TypeError):
        _C.empty((3,), "not a dtype")
    with pytest.raises(ValueError, match="limit must be >= 0"):
        _C.host_cache_set_limit(-1)
    with pytest.raises(TypeError, match="nbytes must be an int"):
        ember.set_host_cache_limit(1.5)
