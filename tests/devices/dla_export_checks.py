"""The checks of a plan's board-side DLA exports (devices/dla_export.py), shared by the zoo tests
(tests/devices/test_dla_export.py) and the conformance models (tests/conformance/dla_exports.py,
run by test_conformance.py): for TensorRT 10's and 11's style, every DLA segment's files are

- valid ONNX (``onnx.checker``, full check) at the generation's opset;
- TensorRT 10: plain FP32, FP16 (+ INT8) builder flags, and for INT8 a calibration cache whose
  scales are the plan's, bit for bit;
- TensorRT 11: strongly typed (every tensor's type determined by inference; FP32 only at the
  network's I/O Casts and Resize's scales), no precision flags, Q/DQ scales equal to the plan's
  loadable's INT8 scales (as FP16, the network's type);
- numerically the emulator's segment on ONNX Runtime: TensorRT 11's file as it is, TensorRT 10's
  with its cache applied the way TensorRT applies it (FP32 Q/DQ at the tensors it quantises).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, numpy_helper

from devices.dla_export import (
    TRT10,
    TRT11,
    SegmentExport,
    export_plan,
    int8_scales,
    network_scale,
    quantize_dequantize,
)
from devices.plan import Plan
from dla_sim.calibration import parse_cache
from dla_sim.compiler import compile_loadable
from dla_sim.execute import run_loadable
from dla_sim.loadable import Loadable
from tests.models import max_rel_error

# ONNX Runtime vs the emulator, per output. FP16: max |a - b| / max |b|; both sides compute in
# FP16 but round at different points (measured <= 4.9e-3 on the zoo: mobilenetv2). INT8: the two
# sides quantise the same tensors with the same scales, but round ties differently (half to even vs
# half away) and accumulate in different float orders, so a value next to a rounding boundary
# flips one INT8 step now and then and the flips add up over tens of layers (tests/devices/
# test_gpu_int8.py says the same of the GPU's INT8). Measured on the zoo (2-input calibration,
# tests/devices/test_dla_export.py -s): cosine >= 0.9955 on every segment, max rel error up to
# 0.186 (mobilenetv2, 17 inverted-residual blocks: a few elements; its 99th percentile is 0.07);
# on transformers' DETR one element of a segment is 0.3 off at cosine 0.99987. Plain FP32 is
# 0.966 (cosine) / 0.44 away from the emulator on mobilenetv2, so the cosine tells a quantised
# export from an unquantised one; the max is reported, not bounded. Bound: cosine >= 0.99 (the
# GPU INT8 tests' accuracy bound).
FP16_MAX_REL = 1e-2
INT8_COSINE = 0.99


@dataclass
class Checked:
    segment: str
    generation: str
    precision: str
    error: float  # max rel error against the emulator
    cosine: float
    qdq_pairs: int


def check_plan(plan: Plan, seed: int = 0) -> list[Checked]:
    """Every check above for every DLA segment of ``plan``; an AssertionError names the
    segment, the generation and what is wrong."""
    records = {r["name"]: r for r in plan.header["segments"]}
    scales = plan.header.get("calibration") or {}
    done: list[Checked] = []
    emulated: dict[str, tuple[dict, dict]] = {}  # segment -> (feeds, emulator outputs)
    for generation in (TRT10, TRT11):
        exports = export_plan(plan, generation)
        assert exports, "the plan has no DLA segment"
        for ex in exports:
            rec = records[ex.segment]
            loadable = Loadable.from_bytes(bytes(plan.blob(rec["loadable"]).data), ex.segment)
            where = f"{ex.segment} ({generation.name}, {ex.precision})"
            onnx.checker.check_model(ex.model, full_check=True)
            assert ex.model.opset_import[0].version == generation.opset, where
            if generation.strongly_typed:
                model = ex.model
                _check_strongly_typed(model, where)
                assert not {"FP16", "INT8"} & set(ex.builder["flags"]), where
                expected = int8_scales(loadable) if ex.precision == "int8" else {}
                outputs = {o.name for o in model.graph.output}
                expected = {t: s for t, s in expected.items() if t not in outputs}
                assert set(ex.qdq) == set(expected), where
                for tensor, scale in expected.items():
                    carried = _initializer(model, f"{tensor}/qdq/scale")
                    want = network_scale(scale, np.float16)
                    assert carried == want, f"{where}: {tensor} Q/DQ scale"
                    if tensor in scales and _own_scale(loadable, tensor, scales):
                        assert ex.qdq[tensor] == scales[tensor], f"{where}: {tensor}"
            else:
                model = _applied_cache(ex, plan, rec, loadable, where)
            if ex.segment not in emulated:
                feeds = _feeds(plan.segment_graph(plan.record.segment(ex.segment)), seed)
                emulated[ex.segment] = feeds, run_loadable(loadable, feeds)
            error, cosine = _compare(model, *emulated[ex.segment])
            if ex.precision == "fp16":
                assert error <= FP16_MAX_REL, f"{where}: max rel error {error:.3g} vs emulator"
            else:
                assert cosine >= INT8_COSINE, (
                    f"{where}: vs emulator cosine {cosine:.5f}, max rel error {error:.3g}"
                )
            pairs = sum(n.op_type == "QuantizeLinear" for n in model.graph.node)
            done.append(Checked(ex.segment, generation.name, ex.precision, error, cosine, pairs))
    return done


def _check_strongly_typed(model: onnx.ModelProto, where: str) -> None:
    g = model.graph
    types = {vi.name: vi.type.tensor_type.elem_type for vi in [*g.value_info, *g.output]}
    types.update({t.name: t.data_type for t in g.initializer})
    boundary = {o.name for o in g.output}
    for node in g.node:
        for out in node.output:
            elem = types.get(out, TensorProto.UNDEFINED)
            assert elem != TensorProto.UNDEFINED, f"{where}: {node.op_type} '{out}' has no type"
            if node.op_type == "QuantizeLinear":
                assert elem == TensorProto.INT8, f"{where}: '{out}' is not INT8"
            elif elem == TensorProto.FLOAT and out not in boundary:
                assert node.op_type == "Constant", f"{where}: '{out}' ({node.op_type}) is FP32"
    for inp in g.input:
        for node in g.node:
            if inp.name in node.input:
                assert node.op_type == "Cast", f"{where}: input '{inp.name}' read uncast"


def _initializer(model: onnx.ModelProto, name: str) -> np.ndarray:
    return next(numpy_helper.to_array(t) for t in model.graph.initializer if t.name == name)


def _own_scale(loadable: Loadable, tensor: str, scales: dict[str, float]) -> bool:
    """Whether the loadable keeps the tensor's own calibrated scale (a data-movement layer's
    output takes its input's instead)."""
    return loadable.tensors[tensor].scale == scales[tensor]


def _applied_cache(
    ex: SegmentExport, plan: Plan, rec: dict, loadable: Loadable, where: str
) -> onnx.ModelProto:
    """TensorRT 10's files: check them, and return the model as TensorRT runs it."""
    g = ex.model.graph
    floats = [vi for vi in [*g.input, *g.output, *g.value_info]
              if vi.type.tensor_type.elem_type != TensorProto.FLOAT]  # fmt: skip
    assert not floats, f"{where}: {floats[0].name} is not FP32 in the plain export"
    precision_flags = [f for f in ex.builder["flags"] if f in ("FP16", "INT8")]
    assert precision_flags == (["FP16", "INT8"] if ex.precision == "int8" else ["FP16"]), where
    if ex.precision == "fp16":
        assert ex.cache is None, where
        return ex.model
    assert ex.cache is not None, f"{where}: no calibration cache"
    header, cached = parse_cache(ex.cache, where)
    assert header == "TRT-100300-EntropyCalibration2", f"{where}: header {header}"
    scales = plan.header["calibration"]
    graph = plan.segment_graph(plan.record.segment(rec["name"]))
    mine = {t: scales[t] for t in graph.tensors if t in scales}
    assert cached == mine, f"{where}: cache scales differ from the plan's"
    # TensorRT quantises the tensors the DLA stores as INT8, with the cache's scales
    applied = compile_loadable(graph, "int8", loadable.dla_version, cached, ex.segment)
    assert int8_scales(applied) == int8_scales(loadable), where
    return quantize_dequantize(ex.model, int8_scales(applied), np.float32)[0]


def _feeds(graph, seed: int) -> dict[str, np.ndarray]:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    return {t.name: rng.uniform(-1, 1, t.static_shape()).astype(np.float32) for t in graph.inputs}


def _compare(
    model: onnx.ModelProto, feeds: dict[str, np.ndarray], want: dict[str, np.ndarray]
) -> tuple[float, float]:
    """(max rel error, smallest cosine) of ONNX Runtime's outputs against ``want``."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = 2
    options.log_severity_level = 3  # FP16 nodes without a CPU kernel run through inserted Casts
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    names = [o.name for o in session.get_outputs()]
    got = dict(zip(names, session.run(names, feeds)))
    error = max(max_rel_error(got[k], want[k]) for k in want)
    return error, min(_cosine(got[k], want[k]) for k in want)


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    x, y = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    norms = float(np.linalg.norm(x) * np.linalg.norm(y))
    return float(x @ y) / norms if norms > 0 else float(np.array_equal(x, y))
