"""minifcn's copy threads: blocks that cover the work once, the same bits for every thread
count (im2col, col2im and whole convolutions), errors that wait for every block, and the
thread-count setting, validated and read from the environment."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minifcn
from minifcn.functional import conv as F
from minifcn.functional import parallel
from minifcn.functional.im2col import col2im, im2col
from minifcn.testing import strict_cupy
from minifcn.testing.strategies import conv_configs, seeds


@pytest.fixture
def threads():
    """Set minifcn's thread count for one test and split even tiny jobs (no byte minimum),
    so that the threaded path runs on test-sized arrays; both restored afterwards."""
    previous = minifcn.get_num_threads()
    minimum = parallel.MIN_BYTES_PER_THREAD
    parallel.MIN_BYTES_PER_THREAD = 1

    def set_to(count: int) -> None:
        minifcn.set_num_threads(count)

    yield set_to
    parallel.MIN_BYTES_PER_THREAD = minimum
    minifcn.set_num_threads(previous)


@pytest.mark.parametrize("count_threads", [1, 2, 3, 8])
@pytest.mark.parametrize("count", [1, 2, 5, 16])
def test_blocks_cover_every_item_exactly_once(threads, count_threads, count):
    threads(count_threads)
    seen, names = [], set()
    lock = threading.Lock()

    def work(start, stop):
        with lock:
            seen.append((start, stop))
            names.add(threading.current_thread().name)

    parallel.for_blocks(np, count, 10**9, work)
    covered = sorted(i for start, stop in seen for i in range(start, stop))
    assert covered == list(range(count))
    assert all(start < stop for start, stop in seen)  # no empty blocks
    assert len(seen) == min(count_threads, count)
    # the caller copies a block itself; the others go to the pool's threads
    assert "MainThread" in names
    assert (len(names) > 1) == (len(seen) > 1)


def test_small_jobs_stay_on_the_calling_thread():
    previous = minifcn.set_num_threads(4)
    try:
        calls = []
        parallel.for_blocks(np, 64, parallel.MIN_BYTES_PER_THREAD * 2 - 1,
                            lambda start, stop: calls.append((start, stop)))
        assert calls == [(0, 64)]  # under two threads' worth of bytes: one block
    finally:
        minifcn.set_num_threads(previous)


def test_other_array_modules_run_one_block_on_the_calling_thread(threads):
    threads(4)
    calls = []
    parallel.for_blocks(strict_cupy, 16, 10**9,
                        lambda start, stop: calls.append((start, stop,
                                                          threading.current_thread())))
    assert calls == [(0, 16, threading.current_thread())]


def test_an_error_in_a_block_is_raised_after_every_block_finished(threads):
    threads(3)
    finished = []

    def work(start, stop):
        if start == 0:
            raise ValueError("block 0 failed")
        threading.Event().wait(0.05)  # the other blocks are still copying when 0 fails
        finished.append(start)

    with pytest.raises(ValueError, match="block 0 failed"):
        parallel.for_blocks(np, 3, 10**9, work)
    assert sorted(finished) == [1, 2]

    def failing_worker(start, stop):
        if start == 2:
            raise RuntimeError("block 2 failed")

    with pytest.raises(RuntimeError, match="block 2 failed"):
        parallel.for_blocks(np, 3, 10**9, failing_worker)


@given(config=conv_configs(), seed=seeds)
def test_im2col_and_col2im_give_the_same_bits_on_any_thread_count(threads, config, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(config.input_shape)
    geometry = (config.kernel_size, config.stride, config.padding, config.dilation)
    results = []
    for count in (1, 3):
        threads(count)
        cols = im2col(x, *geometry)
        back = col2im(np.arange(cols.size, dtype=float).reshape(cols.shape) % 7, x.shape,
                      *geometry)
        results.append((cols.copy(), np.array(back)))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])


@pytest.mark.parametrize("transposed", [False, True])
def test_a_convolution_gives_the_same_bits_on_any_thread_count(threads, transposed, rng):
    x = rng.standard_normal((3, 6, 9, 10)).astype(np.float32)
    weight = rng.standard_normal((6, 5, 3, 3) if transposed else (5, 6, 3, 3))
    weight = weight.astype(np.float32)
    forward = F.conv_transpose2d_forward if transposed else F.conv2d_forward
    backward = F.conv_transpose2d_backward if transposed else F.conv2d_backward
    results = []
    for count in (1, 2):
        threads(count)
        y, cache = forward(x, weight, None, 2, 1)
        dy = np.linspace(-1, 1, y.size, dtype=np.float32).reshape(y.shape)
        results.append((y.copy(), *backward(dy, cache)[:2]))
    for single, several in zip(*results, strict=True):
        np.testing.assert_array_equal(single, several)


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True, None])
def test_a_bad_thread_count_is_refused(bad):
    with pytest.raises(ValueError, match=r"set_num_threads: threads must be an int >= 1, got"):
        minifcn.set_num_threads(bad)


def test_the_setting_returns_the_previous_count():
    previous = minifcn.set_num_threads(3)
    try:
        assert minifcn.get_num_threads() == 3
        assert minifcn.set_num_threads(1) == 3
    finally:
        minifcn.set_num_threads(previous)


@pytest.mark.parametrize("value,expected", [(None, 1), ("", 1), ("3", 3), (" 2 ", 2)])
def test_the_default_is_one_thread_unless_the_environment_says(monkeypatch, value, expected):
    monkeypatch.delenv("MINIFCN_NUM_THREADS", raising=False)
    if value is not None:
        monkeypatch.setenv("MINIFCN_NUM_THREADS", value)
    assert parallel._default_threads() == expected


@pytest.mark.parametrize("value", ["0", "two", "-1", "1.5"])
def test_a_bad_thread_variable_is_refused(monkeypatch, value):
    monkeypatch.setenv("MINIFCN_NUM_THREADS", value)
    with pytest.raises(ValueError, match=rf"MINIFCN_NUM_THREADS must be an int >= 1, got "
                                         rf"'{value}'"):
        parallel._default_threads()


@given(count=st.integers(0, 200), parts=st.integers(1, 50))
def test_even_slices_cover_the_range_in_near_equal_consecutive_parts(count, parts):
    slices = parallel.even_slices(count, parts)
    assert len(slices) == parts
    assert slices[0].start == 0 and slices[-1].stop == count
    assert all(a.stop == b.start for a, b in zip(slices[:-1], slices[1:], strict=True))
    sizes = [s.stop - s.start for s in slices]
    assert max(sizes) - min(sizes) <= 1
