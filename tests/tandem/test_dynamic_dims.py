"""Dynamic input dims in every form ONNX Runtime accepts (issue 15): ``dim_value`` -1,
``dim_param`` "?" or "", a dim with neither field, a named dim; ``dim_value`` 0 is a fixed 0,
as in ONNX Runtime. They bind from ``--dim`` (by name or INPUT:AXIS), ``--shapes`` and the
arrays of ``--inputs``; shape computations then fold, and a build with unbound dims is refused.

Models are built with onnx.helper, in the forms paddle2onnx and torch.onnx.export write.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto as TP
from onnx import helper, numpy_helper

from devices.io import run_onnxruntime
from devices.plan import read_plan
from partitioner.bindings import resolve_bindings
from partitioner.errors import ShapeError
from partitioner.onnx_import import import_onnx
from tandem.cli import main
from targets.build import load_model, place, resolve_policy, resolve_target

FORMS: list[tuple[str, Any]] = [
    ("dim_value -1", -1),
    ("dim_param ?", "?"),
    ("empty dim_param", ""),
    ("unnamed", None),
    ("named", "height"),
]


def _value_info(name: str, dims: list[Any], elem: int = TP.FLOAT) -> onnx.ValueInfoProto:
    """A tensor value info whose dims are ints (dim_value), strs (dim_param) or None (neither)."""
    vi = helper.make_tensor_value_info(name, elem, [1] * len(dims))
    for d, v in zip(vi.type.tensor_type.shape.dim, dims):
        d.Clear()
        if isinstance(v, int):
            d.dim_value = v
        elif v is not None:
            d.dim_param = v
    return vi


def _model(nodes, inputs, inits=(), out_dims=("?", 2)) -> onnx.ModelProto:  # type: ignore[no-untyped-def]
    g = helper.make_graph(nodes, "m", inputs, [_value_info("y", list(out_dims))], list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def classifier(dims: list[Any]) -> onnx.ModelProto:
    """Conv -> GlobalAveragePool -> Reshape to [N, C] through Shape -> Gather -> Unsqueeze ->
    Concat (what paddle2onnx and torch's view() write) -> MatMul -> Softmax."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w"),
        numpy_helper.from_array(rng.standard_normal((4, 2)).astype(np.float32), "fc"),
        numpy_helper.from_array(np.array(0, np.int64), "zero"),
        numpy_helper.from_array(np.array([0], np.int64), "axes"),
        numpy_helper.from_array(np.array([-1], np.int64), "minus_one"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1],
                         strides=[2, 2]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("GlobalAveragePool", ["r"], ["p"], name="pool"),
        helper.make_node("Shape", ["p"], ["s"], name="shape"),
        helper.make_node("Gather", ["s", "zero"], ["n"], name="gather", axis=0),
        helper.make_node("Unsqueeze", ["n", "axes"], ["n1"], name="unsqueeze"),
        helper.make_node("Concat", ["n1", "minus_one"], ["target"], name="concat", axis=0),
        helper.make_node("Reshape", ["p", "target"], ["flat"], name="reshape"),
        helper.make_node("MatMul", ["flat", "fc"], ["logits"], name="fc"),
        helper.make_node("Softmax", ["logits"], ["y"], name="softmax", axis=1),
    ]  # fmt: skip
    return _model(nodes, [_value_info("x", dims)], inits)


def _save(tmp_path: Path, m: onnx.ModelProto, name: str = "m.onnx") -> str:
    path = tmp_path / name
    onnx.save(m, str(path))
    return str(path)


def _npz(tmp_path: Path, name: str = "in.npz", **arrays: tuple[int, ...]) -> str:
    rng = np.random.default_rng(1)
    path = tmp_path / name
    np.savez(path, **{k: rng.standard_normal(s).astype(np.float32) for k, s in arrays.items()})
    return str(path)


def _error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


# ----- import: every form is a dynamic dim; 0 is not ------------------------------------------
@pytest.mark.parametrize("form", [f[1] for f in FORMS], ids=[f[0] for f in FORMS])
def test_each_form_imports_as_a_symbol_bindable_by_position(form):
    m = classifier([1, 3, form, 32])
    x = import_onnx(m).inputs[0]
    symbol = "height" if form == "height" else "x:2"
    assert x.shape == (1, 3, symbol, 32)
    assert import_onnx(m).outputs[0].shape[1] == 2  # the output's "?" ties nothing together
    assert import_onnx(m, fixed_dims={"x:2": 48}).inputs[0].shape == (1, 3, 48, 32)
    assert import_onnx(m, input_shapes={"x": (1, 3, 40, 32)}).inputs[0].shape == (1, 3, 40, 32)


def test_two_question_marks_are_two_dims_but_one_name_is_one():
    anonymous = import_onnx(classifier([-1, 3, "?", "?"])).inputs[0]
    assert anonymous.shape == ("x:0", 3, "x:2", "x:3")
    named = import_onnx(classifier(["n", 3, "s", "s"])).inputs[0]
    assert import_onnx(classifier(["n", 3, "s", "s"]), fixed_dims={"x:2": 16}).inputs[0].shape == (
        "n",
        3,
        16,
        16,
    )
    assert named.shape == ("n", 3, "s", "s")


def test_dim_value_zero_is_a_fixed_zero_as_in_onnx_runtime(tmp_path, capsys):
    m = _model([helper.make_node("Relu", ["x"], ["y"], name="relu")], [_value_info("x", [1, 0, 5])],
               out_dims=(1, 0, 5))  # fmt: skip
    path = _save(tmp_path, m)
    assert import_onnx(m).inputs[0].shape == (1, 0, 5)
    with pytest.raises(Exception, match="Expected: 0"):
        run_onnxruntime(path, {"x": np.zeros((1, 7, 5), np.float32)})
    assert main(["run", path, "--inputs", _npz(tmp_path, x=(1, 7, 5))]) == 1
    assert "has shape 1x7x5, expected 1x0x5" in _error(capsys)


# ----- binding from arrays: the -1x3x?x? classifier of the issue -------------------------------
def test_minus_one_question_mark_classifier_runs_an_npz_like_onnx_runtime(tmp_path, capsys):
    path = _save(tmp_path, classifier([-1, 3, "?", "?"]))
    npz = _npz(tmp_path, x=(1, 3, 48, 192))
    out = tmp_path / "out.npz"
    assert main(["run", path, "--inputs", npz, "--save-outputs", str(out)]) == 0
    expected = run_onnxruntime(path, dict(np.load(npz)))["y"]
    got = np.load(out)["y"]
    assert got.shape == expected.shape == (1, 2)
    assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max()
    capsys.readouterr()
    for shape in [(1, 3, 48, 192), (2, 3, 32, 96)]:
        assert main(["compare", path, "--inputs", _npz(tmp_path, x=shape)]) == 0


def test_run_on_a_target_binds_the_arrays_before_building(tmp_path, capsys):
    path = _save(tmp_path, classifier([-1, 3, "?", "?"]))
    npz = _npz(tmp_path, x=(1, 3, 48, 192))
    out = tmp_path / "out.npz"
    argv = ["run", path, "--target", "orin-agx-64gb", "--backend", "cpu", "--inputs", npz]
    assert main([*argv, "--save-outputs", str(out)]) == 0
    expected = run_onnxruntime(path, dict(np.load(npz)))["y"]
    assert np.abs(np.load(out)["y"] - expected).max() < 2e-2  # DLA / GPU FP16 numerics


def test_shape_chain_folds_once_shapes_are_bound():
    m = classifier([-1, 3, "?", "?"])
    symbolic = {n.op for n in import_onnx(m).nodes}
    assert {"Shape", "Gather", "Concat"} <= symbolic  # the batch is unknown: nothing to fold
    for bound in (
        load_model(m, input_shapes={"x": (2, 3, 48, 192)}),
        load_model(m, fixed_dims={"x:0": 2, "x:2": 48, "x:3": 192}),
    ):
        ops = [n.op for n in bound.nodes]
        assert not {"Shape", "Gather", "Unsqueeze", "Concat"} & set(ops), ops
        assert all(t.is_static for t in bound.tensors.values())
        assert not [t for t in bound.tensors.values() if t.dtype == "int64" and t.producer]


def test_bound_classifier_places_with_no_int64_boundary_and_lowers_its_gpu_segments(tmp_path):
    path = _save(tmp_path, classifier([-1, 3, "?", "?"]))
    plan = tmp_path / "m.plan"
    assert main(["build", path, "--target", "orin-agx-64gb", "--shapes", "x:1x3x48x320",
                 "-o", str(plan), "--quiet"]) == 0  # fmt: skip
    header = read_plan(str(plan)).header
    assert header["inputs"][0]["shape"] == [1, 3, 48, 320]
    dtypes = {t["name"]: t["dtype"] for t in header["inputs"] + header["outputs"]}
    placement = place(path, resolve_target("orin-agx-64gb"), resolve_policy(None, "fp16"),
                      input_shapes={"x": (1, 3, 48, 320)})  # fmt: skip
    for seg in placement.partition.segments:
        for name in (*seg.inputs, *seg.outputs):
            t = placement.graph.tensors[name]
            assert t.dtype == "float32" and t.is_static, (seg.name, t)
    for rec in header["segments"]:
        error = (rec.get("cuda") or {}).get("error", "")
        assert "non-static" not in error and "not supported on GPU" not in error, error
    assert dtypes["x"] == "float32"


# ----- one value per name, and unbound builds ---------------------------------------------------
def _two_inputs() -> onnx.ModelProto:
    ins = [_value_info("a", ["batch", 4]), _value_info("b", ["batch", 4])]
    return _model([helper.make_node("Add", ["a", "b"], ["y"], name="add")], ins,
                  out_dims=("batch", 4))  # fmt: skip


def test_a_name_bound_twice_must_agree_one_line(tmp_path, capsys):
    path = _save(tmp_path, _two_inputs())
    npz = _npz(tmp_path, a=(1, 4), b=(2, 4))
    assert main(["run", path, "--inputs", npz]) == 1
    err = _error(capsys)
    assert "input 'b' axis 0 ('batch') is 2" in err and "already 1" in err and "'a'" in err
    assert main(["run", path, "--dim", "batch=1", "--shapes", "a:2x4"]) == 1
    err = _error(capsys)
    assert "input 'a' axis 0 ('batch') is 2 from --shapes" in err and "--dim batch=1" in err
    assert main(["run", path, "--inputs", _npz(tmp_path, "ok.npz", a=(3, 4), b=(3, 4))]) == 0


@pytest.mark.parametrize(
    ("dims", "shapes", "message"),
    [
        ({"x:1": 4}, {}, "input 'x' axis 1 is fixed at 3 in the model; --dim x:1=4 gives 4"),
        ({"x:7": 4}, {}, "--dim x:7: input 'x' has rank 4 (?x3x?x?)"),
        ({"hieght": 4}, {}, "no dynamic dim 'hieght' (its dynamic dims are: x:0, x:2, x:3"),
        ({}, {"x": (1, 3, 48)}, "input 'x' has rank 4 (?x3x?x?); --shapes gives 1x3x48"),
        ({}, {"y": (1, 3)}, "--shapes names input 'y', which the model does not have"),
    ],
)
def test_binding_errors_name_the_input_and_the_dim(dims, shapes, message):
    x = import_onnx(classifier([-1, 3, "?", "?"])).inputs
    with pytest.raises(ShapeError) as err:
        resolve_bindings(x, dims, shapes)
    assert message in str(err.value)


@pytest.mark.parametrize("command", ["build", "inspect"])
def test_unbound_build_names_each_dynamic_dim_and_the_flags(tmp_path, capsys, command):
    path = _save(tmp_path, classifier([-1, 3, "?", 320]))
    out = ["-o", str(tmp_path / "m.plan"), "--quiet"] if command == "build" else []
    assert main([command, path, "--target", "orin-agx-64gb", *out]) == 1
    err = _error(capsys)
    for needle in ("input 'x' axis 0 'x:0'", "input 'x' axis 2 'x:2'", "--dim x:0=N --dim x:2=N",
                   "--shapes x:Nx3xNx320", "--min-shapes"):  # fmt: skip
        assert needle in err, err
    assert not (tmp_path / "m.plan").exists()
    assert main([command, path, "--target", "orin-agx-64gb", "--dim", "x:0=1", "--dim",
                 "x:2=48", *out]) == 0  # fmt: skip


def test_a_profile_covers_dynamic_dims(tmp_path):
    path = _save(tmp_path, classifier([-1, 3, "?", 320]))
    assert main(["build", path, "--target", "orin-agx-64gb", "--min-shapes", "x:1x3x32x320",
                 "--opt-shapes", "x:1x3x48x320", "--max-shapes", "x:1x3x64x320", "-o",
                 str(tmp_path / "m.plan"), "--quiet"]) == 0  # fmt: skip


# ----- shape computations left by a profile's range: host values inside the GPU segment ----------
def recognizer() -> onnx.ModelProto:
    """An OCR recognizer's neck as torch's ``x.view(b, c, h * w)`` exports it: Shape -> Gather
    -> Mul -> Unsqueeze -> Concat -> Reshape, then Transpose to a sequence and an FC head."""
    rng = np.random.default_rng(2)
    inits = [
        numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w"),
        numpy_helper.from_array(rng.standard_normal((4, 5)).astype(np.float32), "fc"),
        numpy_helper.from_array(np.array([0], np.int64), "axes"),
        *[numpy_helper.from_array(np.array(i, np.int64), f"i{i}") for i in range(4)],
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1],
                         strides=[2, 2]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("Shape", ["r"], ["s"], name="shape"),
        *[helper.make_node("Gather", ["s", f"i{i}"], [f"d{i}"], name=f"gather{i}", axis=0)
          for i in range(4)],
        helper.make_node("Mul", ["d2", "d3"], ["hw"], name="mul"),
        *[helper.make_node("Unsqueeze", [d, "axes"], [f"{d}_1"], name=f"unsqueeze_{d}")
          for d in ("d0", "d1", "hw")],
        helper.make_node("Concat", ["d0_1", "d1_1", "hw_1"], ["target"], name="concat", axis=0),
        helper.make_node("Reshape", ["r", "target"], ["seq"], name="reshape"),
        helper.make_node("Transpose", ["seq"], ["t"], name="transpose", perm=[0, 2, 1]),
        helper.make_node("MatMul", ["t", "fc"], ["logits"], name="fc"),
        helper.make_node("Softmax", ["logits"], ["y"], name="softmax", axis=2),
    ]  # fmt: skip
    return _model(nodes, [_value_info("x", ["batch", 3, "?", "?"])], inits, ("batch", "?", 5))


def test_profile_range_keeps_shape_computations_inside_one_gpu_segment(tmp_path):
    from devices.gpu_segment import _specialise
    from devices.runtime import PlanRunner
    from partitioner.profiles import OptimizationProfile
    from partitioner.subgraph import extract_subgraph
    from targets.build import build_plan

    path = _save(tmp_path, recognizer())
    profile = OptimizationProfile()
    profile.set_shape("x", (1, 3, 16, 32), (1, 3, 32, 64), (1, 3, 48, 96))
    placement = place(path, resolve_target("orin-agx-64gb"), resolve_policy(None, "fp16"),
                      profiles=[profile])  # fmt: skip
    graph, part = placement.graph, placement.partition
    host = {n.name for n in graph.nodes if n.meta.get("host_shape")}
    assert {"shape", "gather2", "mul", "concat"} <= host
    assert {part.assignments[n].device for n in host} == {"gpu"}
    for seg in part.segments:
        for name in (*seg.inputs, *seg.outputs):
            assert graph.tensors[name].dtype == "float32", (seg.name, name)
    (gpu,) = [s for s in part.segments if s.device == "gpu"]
    assert host <= set(gpu.nodes)
    sub = extract_subgraph(graph, list(gpu.nodes), gpu.name)
    special = _specialise(sub, tuple((1, 3, 32, 64) if t.name == "x" else t.static_shape()
                                     for t in sub.inputs))  # fmt: skip
    assert not {n.op for n in special.nodes} & {"Shape", "Gather", "Concat", "Mul"}
    assert all(t.is_static for t in special.tensors.values())
    with PlanRunner(build_plan(placement), "cpu") as runner:
        for shape in [(1, 3, 16, 32), (1, 3, 48, 96)]:
            x = np.random.default_rng(3).standard_normal(shape).astype(np.float32)
            got, want = runner.infer({"x": x})["y"], run_onnxruntime(path, {"x": x})["y"]
            assert got.shape == want.shape
            assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()


def test_integer_only_math_runs_on_the_cpu_with_a_reason(tmp_path):
    one = numpy_helper.from_array(np.array([1], np.int64), "one")
    nodes = [
        helper.make_node("Add", ["ids", "one"], ["next"], name="add_int"),
        helper.make_node("Cast", ["next"], ["f"], name="cast", to=TP.FLOAT),
        helper.make_node("Relu", ["f"], ["y"], name="relu"),
    ]
    m = _model(nodes, [_value_info("ids", [1, 8], TP.INT64)], [one], (1, 8))
    placement = place(_save(tmp_path, m), resolve_target("orin-agx-64gb"),
                      resolve_policy(None, "fp16"))  # fmt: skip
    a = placement.partition.assignments["add_int"]
    assert a.device == "cpu" and "integer-only math (int64)" in a.reason


@pytest.mark.gpu
def test_profile_range_recognizer_on_cuda_folds_its_shape_chain_per_shape(tmp_path):
    """On a GPU: the one GPU segment (shape computations included) compiles per input shape,
    its Shape -> Gather -> Concat chain folded first, and matches ONNX Runtime."""
    from devices.runtime import PlanRunner
    from partitioner.profiles import OptimizationProfile
    from targets.build import build_plan

    path = _save(tmp_path, recognizer())
    profile = OptimizationProfile()
    profile.set_shape("x", (1, 3, 16, 32), (1, 3, 32, 64), (2, 3, 48, 96))
    placement = place(path, resolve_target("host"), resolve_policy(None, "fp16"),
                      profiles=[profile])  # fmt: skip
    with PlanRunner(build_plan(placement), "cuda") as runner:
        for shape in [(1, 3, 16, 32), (2, 3, 48, 96)]:
            x = np.random.default_rng(4).standard_normal(shape).astype(np.float32)
            got, want = runner.infer({"x": x})["y"], run_onnxruntime(path, {"x": x})["y"]
            assert set(runner.backends().values()) == {"cuda"}
            assert np.abs(got - want).max() < 2e-2  # FP16 kernels


# ----- a real paddle2onnx export (skips without the Paddle venv) ---------------------------------
@pytest.mark.parametrize(
    "dims", [[1, 3, "?", 320], [-1, 3, -1, -1]], ids=["1x3x?x320", "-1x3x-1x-1"]
)
def test_paddle2onnx_recognizer_binds_folds_and_places(tmp_path, capsys, dims):
    """paddle2onnx 2.1 names its dims ``DynamicDimension.N``; older exporters wrote -1 and "?",
    which is what this test rewrites the input to (the graph is paddle2onnx's)."""
    from tests.models import exported_model_path

    src = exported_model_path("paddle-ocr-rec-lite")
    m = onnx.load(str(src))
    for d, v in zip(m.graph.input[0].type.tensor_type.shape.dim, dims):
        d.Clear()
        if isinstance(v, int):
            d.dim_value = v
        else:
            d.dim_param = v
    path = _save(tmp_path, m, "rec.onnx")
    sample = np.load(src.with_suffix(".npz"))
    out_name = m.graph.output[0].name
    got = tmp_path / "out.npz"
    np.savez(tmp_path / "sample.npz", x=sample["x"])
    assert main(["run", path, "--inputs", str(tmp_path / "sample.npz"), "--save-outputs",
                 str(got)]) == 0  # fmt: skip
    want = sample[out_name]  # Paddle's own output at 1x3x32x320
    assert np.abs(np.load(got)[out_name] - want).max() <= 1e-4 * np.abs(want).max()
    npz = _npz(tmp_path, x=(1, 3, 48, 320))
    assert main(["compare", path, "--inputs", npz]) == 0
    placement = place(path, resolve_target("orin-agx-64gb"), resolve_policy(None, "fp16"),
                      input_shapes={"x": (1, 3, 48, 320)})  # fmt: skip
    graph = placement.graph
    assert not [n.op for n in graph.nodes if n.op in ("Shape", "Gather", "Concat")]
    for seg in placement.partition.segments:
        assert seg.device != "cpu", seg
        for name in (*seg.inputs, *seg.outputs):
            assert graph.tensors[name].dtype == "float32", (seg.name, name)
