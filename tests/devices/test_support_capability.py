"""Capability objects per target (the partitioner's view) and the capability report."""

from __future__ import annotations

import numpy as np
import pytest

from devices.capability import (
    CpuCapability,
    DlaCapability,
    GpuCapability,
    capabilities_for,
)
from partitioner.errors import ConfigError
from partitioner.ir import Graph
from partitioner.shape_inference import infer_shapes
from targets.catalog import list_targets, load_target


def small_net() -> Graph:
    """conv -> relu -> two deconvs with padding (leave the DLA) -> hardswish -> concat."""
    g = Graph("net")
    x = g.add_input("x", (1, 8, 16, 16))
    w = g.add_constant("w", np.zeros((8, 8, 3, 3), np.float32))
    wt = g.add_constant("wt", np.zeros((8, 8, 3, 3), np.float32))
    conv = g.add_node("Conv", [x, w], 1, {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1],
                      "strides": [1, 1], "dilations": [1, 1], "group": 1}, name="c1")  # fmt: skip
    relu = g.add_node("Relu", [conv.outputs[0]], 1, name="r1")
    ups = []
    for name in ("up3", "up4"):
        up = g.add_node("ConvTranspose", [relu.outputs[0], wt], 1,
                        {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "strides": [1, 1],
                         "dilations": [1, 1], "group": 1}, name=name)  # fmt: skip
        ups.append(up.outputs[0])
    hs = g.add_node("HardSwish", [ups[0]], 1, name="hs")
    cat = g.add_node("Concat", [hs.outputs[0], ups[1]], 1, {"axis": 1}, name="cat")
    g.mark_output(cat.outputs[0])
    infer_shapes(g)
    return g


@pytest.mark.parametrize("name", list_targets())
def test_capabilities_for_every_board(name: str):
    t = load_target(name)
    caps = capabilities_for(t)
    assert caps["gpu"].kind == "gpu" and caps["cpu"].kind == "cpu"
    assert ("dla" in caps) == (t.dla is not None)
    g = small_net()
    for cap in caps.values():
        assert cap.kind in ("gpu", "dla", "cpu")
        for node in g:
            verdict = cap.supports(node, g, "fp16")
            if verdict.ok:
                assert cap.cost(node, g, "fp16") >= 0.0


def test_dla_core_is_checked():
    t = load_target("orin-nx-8gb")  # one DLA core
    assert DlaCapability(t, 0).device == "dla0"
    with pytest.raises(ConfigError, match=r"has 1 DLA core\(s\): dla_core 1 does not exist"):
        DlaCapability(t, 1)
    assert capabilities_for(load_target("orin-agx-64gb"), dla_core=1)["dla"].device == "dla1"  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="has no DLA"):
        DlaCapability(load_target("orin-nano-8gb"))


def test_host_without_gpu_gets_cpu_only():
    t = load_target("host")
    caps = capabilities_for(t)
    if t.gpu is None:
        assert set(caps) == {"cpu"}
        with pytest.raises(ConfigError, match="has no GPU"):
            GpuCapability(t)


def test_dla_verdicts_use_the_targets_tensorrt():
    g = Graph("t")
    a, b = g.add_input("a", (1, 4, 8, 8)), g.add_input("b", (1, 4, 8, 8))
    div = g.add_node("Div", [a, b], 1, name="d")
    g.mark_output(div.outputs[0])
    infer_shapes(g)
    assert DlaCapability(load_target("orin-agx-64gb")).supports(div, g, "fp16").ok
    xavier = DlaCapability(load_target("xavier-agx")).supports(div, g, "fp16")
    assert not xavier.ok and xavier.reason == (
        "Div 'd': Div needs TensorRT >= 8.6.12 on DLA (target has 8.5.2)"
    )


def test_cpu_capability_runs_fp32():
    t = load_target("orin-agx-64gb")
    cpu = CpuCapability(t)
    g = small_net()
    verdict = cpu.supports(g.node("hs"), g, "int8")
    assert verdict.ok and "runs in FP32 on the CPU" in verdict.reason
    assert cpu.cost(g.node("c1"), g, "fp32") > 0


def _reshape_to_2d() -> Graph:
    g = Graph("t")
    x = g.add_input("x", (1, 16, 4, 4))
    shape = g.add_constant("s", np.array([1, 256], np.int64))
    r = g.add_node("Reshape", [x, shape], 1, name="flat")
    g.mark_output(r.outputs[0])
    infer_shapes(g)
    return g


def test_unconfirmed_rules_are_flagged_in_the_reason():
    g = _reshape_to_2d()
    verdict = DlaCapability(load_target("orin-agx-64gb")).supports(g.node("flat"), g, "fp16")
    assert verdict.reason == (
        "Reshape 'flat': Reshape to a 2-D tensor (DLA shuffles 4-D tensors only) [unconfirmed rule]"
    )


def test_user_support_table_overrides_an_unconfirmed_rule(tmp_path):
    from devices.support import TABLES_DIR

    text = (TABLES_DIR / "dla2.yaml").read_text(encoding="utf-8")
    relaxed = text.replace(
        "      - {check: shuffle, rank: 4, split_next_to: [Slice, Concat, Split]}\n", ""
    )
    assert relaxed != text
    path = tmp_path / "my_dla2.yaml"
    path.write_text(relaxed, encoding="utf-8")
    g = _reshape_to_2d()
    caps = capabilities_for(load_target("orin-agx-64gb"), dla_table_path=path)
    assert caps["dla"].supports(g.node("flat"), g, "fp16").ok
    with pytest.raises(ConfigError, match="a gpu table cannot describe a DLA"):
        capabilities_for(load_target("orin-agx-64gb"), dla_table_path=TABLES_DIR / "gpu.yaml")


def test_strict_inclusive_avg_pool_option(tmp_path):
    from devices.support import TABLES_DIR

    g = Graph("t")
    x = g.add_input("x", (1, 4, 8, 8))
    attrs = {
        "kernel_shape": [2, 2],
        "strides": [2, 2],
        "pads": [0, 0, 0, 0],
        "count_include_pad": 0,
    }
    pool = g.add_node("AveragePool", [x], 1, attrs, name="ap")
    g.mark_output(pool.outputs[0])
    infer_shapes(g)
    xavier = load_target("xavier-agx")
    assert DlaCapability(xavier).supports(pool, g, "fp16").ok
    text = (TABLES_DIR / "dla1.yaml").read_text(encoding="utf-8")
    strict = text.replace("only_when_padded: true", "only_when_padded: false")
    path = tmp_path / "strict.yaml"
    path.write_text(strict, encoding="utf-8")
    verdict = capabilities_for(xavier, dla_table_path=path)["dla"].supports(pool, g, "fp16")
    assert verdict.reason == (
        "AveragePool 'ap': average pool with count_include_pad=0 not supported on DLA "
        "(inclusive padding only)"
    )


def _chain(batches: list[int], channels: int = 8, hw: int = 8) -> Graph:
    """Relu layers on inputs of the given batch sizes, each followed by a Relu."""
    g = Graph("t")
    for i, b in enumerate(batches):
        x = g.add_input(f"x{i}", (b, channels, hw, hw))
        a = g.add_node("Relu", [x], 1, name=f"a{i}")
        r = g.add_node("Relu", [a.outputs[0]], 1, name=f"b{i}")
        g.mark_output(r.outputs[0])
    infer_shapes(g)
    return g


def test_segment_limits_from_the_table():
    dla = DlaCapability(load_target("orin-agx-64gb"))
    assert dla.max_loadables == 16
    g = _chain([1, 1])
    assert dla.segment_problems(g, ["a0", "b0", "a1", "b1"]) == []
    mixed = _chain([1, 2])
    assert dla.segment_problems(mixed, ["a0", "b0", "a1", "b1"]) == [
        "layers with batch sizes 1, 2: the DLA needs one batch size per loadable"
    ]


def test_segment_weight_and_intermediate_limits():
    dla = DlaCapability(load_target("xavier-agx"))
    # 8192 x 8192 x 2 x 2 FP16 weights = 512 MiB: at the limit (must be < 512 MB). np.zeros
    # maps untouched pages, so this costs no real memory.
    g = Graph("t")
    x = g.add_input("x", (1, 8192, 1, 1))
    w = g.add_constant("w", np.zeros((8192, 8192, 2, 2), np.float16))
    conv = g.add_node("Conv", [x, w], 1, {"kernel_shape": [2, 2], "pads": [1, 1, 0, 0]}, name="big")
    g.mark_output(conv.outputs[0])
    infer_shapes(g)
    assert dla.segment_problems(g, ["big"]) == [
        "weights 512 MiB >= DLA limit 512 MiB per loadable; split the segment"
    ]
    assert dla.segment_problems(g, ["big"], "int8") == []
    # A 16 x 8192 x 64 x 64 FP16 tensor between two layers of the segment = 1 GiB.
    big = _chain([16], channels=8192, hw=64)
    problems = dla.segment_problems(big, ["a0", "b0"])
    assert problems == [
        "intermediate tensors 1024 MiB >= DLA limit 1024 MiB per loadable; split the segment"
    ]


# ----- the GPU: its table and its lowering answer together -----------------------------------


def test_the_gpu_table_lists_exactly_the_ops_the_lowering_has_handlers_for():
    from devices.support import gpu_table
    from gpu_kernels.lowering import lowered_ops

    assert set(gpu_table().ops) == set(lowered_ops())


def _softmax(axis: int, dims: tuple[object, ...] = (1, 8, 4, 4)) -> Graph:
    g = Graph("g")
    x = g.add_input("x", dims)
    g.mark_output(g.add_node("Softmax", [x], 1, {"axis": axis}, name="sm").outputs[0])
    infer_shapes(g)
    return g


def _resize(mode: str) -> Graph:
    g = Graph("g")
    x = g.add_input("x", (1, 8, 4, 4))
    scales = g.add_constant("scales", np.array([1, 1, 2, 2], np.float32))
    node = g.add_node("Resize", [x, None, scales], 1, {"mode": mode}, name="rs")
    g.mark_output(node.outputs[0])
    infer_shapes(g)
    return g


@pytest.mark.parametrize("board", ["orin-agx-64gb", "xavier-nx"])
def test_gpu_refuses_what_its_lowering_refuses_for_the_targets_arch(board: str):
    """The table lists Resize; the lowering takes nearest / linear only, and placement hears
    it."""
    from gpu_kernels.compile import arch_number
    from gpu_kernels.lowering import supports

    target = load_target(board)
    assert target.gpu is not None
    gpu = GpuCapability(target)
    for mode, ok in (("nearest", True), ("cubic", False)):
        g = _resize(mode)
        node = g.nodes[0]
        lowered = supports(node, arch_number(target.gpu.arch), "fp16")
        verdict = gpu.supports(node, g, "fp16")
        assert verdict.ok is lowered.ok is ok
        if not ok:
            assert verdict.reason.startswith("Resize 'rs': ")
            assert "cubic" in verdict.reason


def test_a_dynamic_layer_is_judged_at_the_twins_concrete_shapes():
    target = load_target("orin-agx-64gb")
    dynamic, twin = _softmax(-1, ("b", 8, 4, 4)), _softmax(-1)
    verdict = GpuCapability(target).supports(dynamic.nodes[0], dynamic, "fp16")
    assert not verdict.ok and "--dim NAME=N" in verdict.reason and "profile" in verdict.reason
    verdict = GpuCapability(target, shapes=twin).supports(dynamic.nodes[0], dynamic, "fp16")
    assert verdict.ok, verdict.reason


def test_a_crnn_lstm_stays_on_the_gpu_and_a_clipped_one_is_refused_with_the_reason():
    """paddle2onnx's CRNN head (bidirectional LSTM, constant W / R / B) is no longer dropped
    to the CPU between GPU segments; what the lowering refuses, placement hears."""
    from tests.devices.gpu_cases import build, graph_of, recurrent_case

    gpu = GpuCapability(load_target("orin-agx-64gb"))
    for attrs, ok in (({}, True), ({"clip": 5.0}, False)):
        g = graph_of(build(recurrent_case("lstm", "LSTM", 40, 1, 48, 24, "bidirectional",
                                          **attrs)))
        node = next(n for n in g.nodes if n.op == "LSTM")
        verdict = gpu.supports(node, g, "fp16")
        assert verdict.ok is ok, verdict.reason
        if not ok:
            assert "clip unsupported" in verdict.reason
