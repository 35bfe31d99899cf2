"""The worker split of big GEMMs and copies gives numpy's results exactly, and stays scoped."""

from __future__ import annotations

import numpy as np
import pytest

from devices.cpu import CpuRunner, get_blas_threads, parallel
from partitioner.ir import Graph

RNG = np.random.default_rng(7)


@pytest.mark.parametrize(
    ("a_shape", "b_shape"),
    [
        ((64, 576), (576, 3136)),  # wide: split along N
        ((2048, 512), (512, 49)),  # tall: split along M
        ((1, 8, 4, 9), (3, 8, 9, 4096)),  # batched over groups, broadcast batch
        ((8, 8), (8, 8)),  # too small to split
    ],
)
@pytest.mark.parametrize("workers", [2, 3])
def test_matmul_split_equals_numpy(
    a_shape: tuple[int, ...], b_shape: tuple[int, ...], workers: int
) -> None:
    a = RNG.standard_normal(a_shape).astype(np.float32)
    b = RNG.standard_normal(b_shape).astype(np.float32)
    with parallel.parallelism(workers):
        assert parallel.workers() == workers
        got = parallel.matmul(a, b)
    np.testing.assert_allclose(got, np.matmul(a, b), rtol=1e-5, atol=1e-4)
    assert parallel.workers() == 1


def test_copy_into_split_equals_numpy() -> None:
    src = RNG.standard_normal((3, 200, 300)).astype(np.float32)[:, ::2, 1::3]
    with parallel.parallelism(2):
        dst = parallel.copy_into(np.empty(src.shape, np.float32), src)
    np.testing.assert_array_equal(dst, src)


def test_worker_failure_propagates() -> None:
    a = np.ones((600, 600), np.float32)
    with parallel.parallelism(2), pytest.raises(ValueError):
        parallel.matmul(a, np.ones((601, 600), np.float32))


def test_runner_threads_give_identical_results() -> None:
    g = Graph("conv")
    x = g.add_input("x", (1, 16, 40, 40), "float32")
    w = g.add_constant("w", RNG.standard_normal((32, 16, 3, 3)).astype(np.float32))
    conv = g.add_node("Conv", [x, w], 1, {"pads": [1, 1, 1, 1]}, name="conv")
    g.mark_output(conv.outputs[0])
    feeds = {"x": RNG.standard_normal((1, 16, 40, 40)).astype(np.float32)}
    before = get_blas_threads()
    with CpuRunner(g, threads=1) as one, CpuRunner(g, threads=2) as two:
        np.testing.assert_allclose(
            two.infer(feeds)["conv_out0"], one.infer(feeds)["conv_out0"], rtol=1e-5, atol=1e-5
        )
    assert get_blas_threads() == before


@pytest.mark.parametrize("shape", [(1, 16, 200, 200), (3, 1000), (7,)])
def test_elementwise_split_equals_plain(shape: tuple[int, ...]) -> None:
    from devices.cpu.elementwise import _sigmoid

    x = RNG.standard_normal(shape).astype(np.float32)
    with parallel.parallelism(2):
        got = parallel.elementwise(_sigmoid, x)
        pairs = parallel.elementwise(np.greater, x, -x)  # dtype follows the function (bool)
    np.testing.assert_array_equal(got, _sigmoid(x))
    np.testing.assert_array_equal(pairs, x > -x)
    assert got.shape == shape and pairs.dtype == np.bool_
