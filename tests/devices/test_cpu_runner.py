"""CpuRunner (the interpreter), BaseRunner (feed validation, lifecycle) and evaluate_node errors."""

from __future__ import annotations

import numpy as np
import pytest

from devices.cpu import CpuRunner, evaluate_node, get_blas_threads, set_blas_threads
from devices.runner import BaseRunner
from partitioner.errors import ExecutionError, InputError
from partitioner.ir import Graph, Node


def relu_chain(length: int, shape: tuple[int, ...] = (1, 8, 64, 64)) -> Graph:
    g = Graph("chain")
    t = g.add_input("x", shape, "float32")
    for i in range(length):
        t = g.add_node("Relu", [t], 1, name=f"relu{i}").outputs[0]
    g.mark_output(t)
    return g


def two_input_graph() -> Graph:
    g = Graph("two")
    a = g.add_input("a", ("batch", 3), "float32")
    b = g.add_input("b", ("batch", 3), "float32")
    s = g.add_node("Add", [a, b], 1, name="add").outputs[0]
    w = g.add_constant("w", np.full((3, 2), 0.5, np.float32))
    y = g.add_node("MatMul", [s, w], 1, name="mm").outputs[0]
    g.mark_output(y)
    return g


def test_runs_and_matches_numpy() -> None:
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.ones((2, 3), np.float32)
    with CpuRunner(two_input_graph()) as runner:
        out = runner.infer({"a": a, "b": b})
    np.testing.assert_allclose(out["mm_out0"], (a + b) @ np.full((3, 2), 0.5, np.float32))
    assert runner.last_inference_time is not None and runner.last_inference_time >= 0


def test_intermediates_are_freed() -> None:
    graph = relu_chain(12)
    x = np.random.default_rng(0).standard_normal((1, 8, 64, 64)).astype(np.float32)
    with CpuRunner(graph) as runner:
        out = runner.infer({"x": x})
    np.testing.assert_array_equal(out["relu11_out0"], np.maximum(x, 0))
    # the input plus at most two live activations at any moment, never the whole chain
    assert x.nbytes * 2 <= runner.peak_bytes <= x.nbytes * 3


def test_capture_all_and_by_name() -> None:
    x = np.ones((1, 2, 3, 3), np.float32)
    with CpuRunner(relu_chain(4, (1, 2, 3, 3)), capture=True) as runner:
        runner.infer({"x": x})
    assert sorted(runner.captured) == [f"relu{i}_out0" for i in range(4)]
    with CpuRunner(relu_chain(4, (1, 2, 3, 3)), capture={"relu1_out0"}) as runner:
        runner.infer({"x": x})
    assert list(runner.captured) == ["relu1_out0"]


@pytest.mark.parametrize(
    ("feeds", "message"),
    [
        ({"a": np.ones((2, 3), np.float32)}, "missing input 'b' (batch, 3) float32"),
        (
            {"a": np.ones((2, 3), np.float32), "b": np.ones((2, 3), np.float32),
             "c": np.ones(1)},
            "unexpected input 'c'",
        ),
        (
            {"a": np.ones((2, 3), np.float64), "b": np.ones((2, 3), np.float32)},
            "input 'a': got (2, 3) float64, expected (batch, 3) float32",
        ),
        (
            {"a": np.ones((2, 3, 1), np.float32), "b": np.ones((2, 3), np.float32)},
            "input 'a': got (2, 3, 1) float32 (rank 3), expected (batch, 3) float32 (rank 2)",
        ),
        (
            {"a": np.ones((2, 4), np.float32), "b": np.ones((2, 3), np.float32)},
            "input 'a': got (2, 4) float32, expected (batch, 3) float32 (dimension 1 must be 3)",
        ),
        (
            {"a": np.ones((2, 3), np.float32), "b": np.ones((5, 3), np.float32)},
            "symbolic dimension 'batch' is already 2 from input 'a'",
        ),
    ],
    ids=["missing", "unexpected", "dtype", "rank", "dim", "symbolic-mismatch"],
)  # fmt: skip
def test_feed_validation(feeds: dict[str, np.ndarray], message: str) -> None:
    with CpuRunner(two_input_graph()) as runner, pytest.raises(InputError) as err:
        runner.infer(feeds)
    assert message in str(err.value)


def test_symbolic_batch_accepts_any_consistent_size() -> None:
    with CpuRunner(two_input_graph()) as runner:
        for batch in (1, 5):
            feeds = {n: np.ones((batch, 3), np.float32) for n in ("a", "b")}
            assert runner.infer(feeds)["mm_out0"].shape == (batch, 2)


def test_lifecycle() -> None:
    runner = CpuRunner(two_input_graph())
    feeds = {n: np.ones((1, 3), np.float32) for n in ("a", "b")}
    with pytest.raises(ExecutionError, match="is not active"):
        runner.infer(feeds)
    runner.activate()
    runner.activate()  # idempotent
    assert runner.is_active
    runner.infer(feeds)
    runner.deactivate()
    runner.deactivate()
    assert not runner.is_active


def test_subclass_overrides_only_the_hooks() -> None:
    class Doubler(BaseRunner):
        def infer_impl(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            return {"y": feeds["x"] * 2}

    g = Graph("g")
    g.add_input("x", (2,), "float32")
    with Doubler(g) as runner:
        np.testing.assert_array_equal(runner.infer({"x": np.ones(2, np.float32)})["y"], [2, 2])
        with pytest.raises(InputError, match="input 'x'"):
            runner.infer({"x": np.ones(3, np.float32)})


def test_layer_failure_names_layer_and_op() -> None:
    g = Graph("bad")
    x = g.add_input("x", (1, 3, 8, 8), "float32")
    w = g.add_constant("w", np.ones((4, 5, 3, 3), np.float32))  # 5 input channels, x has 3
    g.mark_output(g.add_node("Conv", [x, w], 1, name="conv3").outputs[0])
    with CpuRunner(g) as runner, pytest.raises(ExecutionError, match=r"layer 'conv3' \(Conv\): "):
        runner.infer({"x": np.ones((1, 3, 8, 8), np.float32)})


def test_blas_thread_count_is_scoped_to_inference() -> None:
    before = get_blas_threads()
    if before is None:
        pytest.skip("numpy does not use OpenBLAS here")
    seen: list[int | None] = []

    class Spy(CpuRunner):
        def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            seen.append(get_blas_threads())
            return super()._run(feeds)

    with Spy(relu_chain(1, (2, 2)), threads=1) as runner:
        runner.infer({"x": np.ones((2, 2), np.float32)})
    assert seen == [1]
    assert get_blas_threads() == before
    with pytest.raises(ValueError):
        set_blas_threads(0)


def test_evaluate_node_unknown_op() -> None:
    with pytest.raises(ExecutionError, match=r"layer 'n' \(NoSuchOp\): .*no implementation"):
        evaluate_node(Node("n", "NoSuchOp"), [np.ones(1)])


def test_evaluate_node_for_constant_folding() -> None:
    node = Node("shape_of", "Shape", {"start": 1})
    np.testing.assert_array_equal(evaluate_node(node, [np.ones((2, 3, 4))])[0], [3, 4])
