"""The plan header's typed records: real plans decode; every hostile field is one line naming it.

The hostile headers are resealed (checksum recomputed), as a forger or a buggy tool would write
them, so the records -- not the SHA-256 -- must catch them.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from devices.plan import Plan, PlanError, new_header, read_plan, write_plan
from devices.plan_header import HeaderFieldError, PlanHeader, decode_header
from dla_sim.loadable import Loadable, LoadableError
from tandem.cli import main
from tests.devices.test_plan import reseal, segment


@pytest.fixture(scope="module")
def built(zoo_model, tmp_path_factory) -> dict[str, Path]:
    """MobileNetV2 plans (DLA and GPU segments), FP16 on Orin and INT8 on Xavier."""
    model = zoo_model("mobilenetv2", resolution=64)
    out = tmp_path_factory.mktemp("plans")
    plans = {}
    for name, extra in {
        "orin-fp16": ["--target", "orin-agx-64gb", "--fp16"],
        "xavier-int8": ["--target", "xavier-agx", "--int8", "--calib-random", "1"],
    }.items():
        plans[name] = out / f"{name}.plan"
        assert main(["build", str(model), "-o", str(plans[name]), "--quiet", *extra]) == 0
    return plans


def test_real_plans_decode_into_records(built) -> None:
    for path in built.values():
        plan = read_plan(path)
        record = plan.record
        assert isinstance(record, PlanHeader)
        assert record == decode_header(plan.header)
        devices = {seg.device for seg in record.segments}
        assert "gpu" in devices and "dla0" in devices
        for seg in record.segments:
            assert seg.loadable is not None if seg.device == "dla0" else seg.cuda is not None
            assert seg.graph.nodes and set(seg.layers) == {n.name for n in seg.graph.nodes}
        assert {row.name for row in record.layers} >= {n for s in record.segments for n in s.layers}
    assert read_plan(built["xavier-int8"]).record.calibration  # type: ignore[union-attr]


def _seg(h: dict, device: str) -> dict:
    return next(s for s in h["segments"] if s["device"].startswith(device))


def _node(h: dict, device: str) -> dict:
    return _seg(h, device)["graph"]["nodes"][0]


def _set(where: Callable[[dict], dict], key: str, value) -> Callable[[dict], None]:
    return lambda h: where(h).__setitem__(key, value)


def _drop(where: Callable[[dict], dict], key: str) -> Callable[[dict], None]:
    return lambda h: where(h).pop(key)


def _index(h: dict, device: str) -> int:
    return h["segments"].index(_seg(h, device))


# (name, mutation, the field path the message names, what it says)
HOSTILE = [
    ("segment without name", _drop(lambda h: _seg(h, "gpu"), "name"), "segments[{gpu}]",
     "lacks 'name'"),
    ("device dla7", _set(lambda h: _seg(h, "dla"), "device", "dla7"), "segments[{dla}].device",
     "'dla7' is not one of gpu, dla0, dla1, cpu"),
    ("segment not an object", lambda h: h["segments"].__setitem__(0, "x"), "segments[0]",
     "expected an object, got str"),
    ("layers an int", _set(lambda h: _seg(h, "gpu"), "layers", 5), "segments[{gpu}].layers",
     "expected a list, got int 5"),
    ("graph an int", _set(lambda h: _seg(h, "gpu"), "graph", 3), "segments[{gpu}].graph",
     "expected an object"),
    ("DLA segment without loadable", _drop(lambda h: _seg(h, "dla"), "loadable"),
     "segments[{dla}]", "a DLA segment lacks 'loadable'"),
    ("loadable names a cubin", lambda h: _seg(h, "dla").__setitem__(
        "loadable", _seg(h, "gpu")["cuda"]["modules"][0]["blob"]), "segments[{dla}].loadable",
     "is a cubin, not a dla-loadable"),
    ("loadable names no blob", _set(lambda h: _seg(h, "dla"), "loadable", "nope"),
     "segments[{dla}].loadable", "blob 'nope' is not in the plan's blob table"),
    ("cuda a list", _set(lambda h: _seg(h, "gpu"), "cuda", []), "segments[{gpu}].cuda",
     "expected an object or null"),
    ("attrs a list", _set(lambda h: _node(h, "dla"), "attrs", []),
     "segments[{dla}].graph.nodes[0].attrs", "expected an object, got list"),
    ("attr an int", lambda h: _node(h, "dla")["attrs"].__setitem__("strides", 5),
     "segments[{dla}].graph.nodes[0].attrs.strides", "expected an object, got int"),
    ("attr value an object", lambda h: _node(h, "dla")["attrs"].__setitem__(
        "strides", {"value": {"a": 1}}), "segments[{dla}].graph.nodes[0].attrs.strides.value",
     "expected a number, string, list or bytes"),
    ("node input unknown", lambda h: _node(h, "gpu")["inputs"].__setitem__(0, "ghost"),
     "segments[{gpu}].graph.nodes[0].inputs[0]", "tensor 'ghost' is not among"),
    ("tensor shape a string", lambda h: _seg(h, "gpu")["graph"]["tensors"][0].__setitem__(
        "shape", "x"), "segments[{gpu}].graph.tensors[0].shape", "expected a list or null"),
    ("profiles of ints", _set(lambda h: h, "profiles", [5]), "profiles[0]", "expected an object"),
    ("profile shape of strings", _set(lambda h: h, "profiles", [
        {"inputs": {"input": {"min": "a", "opt": [1], "max": [1]}}}]),
     "profiles[0].inputs.input.min", "expected a list, got str"),
    ("plugins a string", _set(lambda h: h, "plugins", "x"), "plugins", "expected a list"),
    ("plugin key an int", _set(lambda h: h, "plugins", [{"key": 1, "version": "1"}]),
     "plugins[0].key", "expected a string, got int 1"),
    ("layer row without name", _drop(lambda h: h["layers"][0], "name"), "layers[0]",
     "lacks 'name'"),
    ("layer precision an int", _set(lambda h: h["layers"][0], "precision", 5),
     "layers[0].precision", "expected one of fp32, fp16, int8 or null"),
    ("input without name", _drop(lambda h: h["inputs"][0], "name"), "inputs[0]", "lacks 'name'"),
    ("input dim negative", lambda h: h["inputs"][0]["shape"].__setitem__(0, -1),
     "inputs[0].shape[0]", "dimension -1 is out of range"),
    ("input dtype unknown", lambda h: h["inputs"][0].__setitem__("dtype", "string"),
     "inputs[0].dtype", "'string' is not an element type the IR knows"),  # found by the fuzzer
    ("calibration of strings", _set(lambda h: h, "calibration", {"input": "a"}),
     "calibration.input", "expected a number, got str"),
    ("calibration scale zero", _set(lambda h: h, "calibration", {"input": 0.0}),
     "calibration.input", "scale 0.0 is not positive"),
    ("predicted_ms a string", _set(lambda h: h, "predicted_ms", "x"), "predicted_ms",
     "expected an object"),
    ("segment names twice", lambda h: _seg(h, "gpu").__setitem__("name", _seg(h, "dla")["name"]),
     "segments[{gpu}].name", "names two segments"),
]


@pytest.mark.parametrize("name,mutate,path,words", HOSTILE, ids=[c[0] for c in HOSTILE])
def test_hostile_header_field_is_one_line_naming_it(
    built, tmp_path, name, mutate, path, words
) -> None:
    good = built["orin-fp16"]
    header = copy.deepcopy(read_plan(good).header)
    path = path.format(gpu=_index(header, "gpu"), dla=_index(header, "dla"))
    mutate(header)
    bad = tmp_path / "bad.plan"
    bad.write_bytes(reseal(good.read_bytes(), header))
    with pytest.raises(PlanError) as err:
        read_plan(bad)
    message = str(err.value)
    assert message.startswith(f"{bad}: {path}: ") and words in message, message
    assert message.endswith("rebuild the plan") and "\n" not in message


@pytest.mark.parametrize(
    "command", [["inspect"], ["inspect", "--json"], ["run", "--backend", "cpu"]]
)
def test_cli_refuses_a_hostile_plan_in_one_line(built, tmp_path, capsys, command) -> None:
    good = built["orin-fp16"]
    header = json.loads(json.dumps(read_plan(good).header))
    _seg(header, "dla")["device"] = "dla7"
    bad = tmp_path / "bad.plan"
    bad.write_bytes(reseal(good.read_bytes(), header))
    capsys.readouterr()
    assert main([command[0], str(bad), *command[1:]]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and "'dla7' is not one of" in captured.err
    assert "Traceback" not in captured.err


def test_write_plan_refuses_an_invalid_header_and_writes_nothing(tmp_path) -> None:
    plan = Plan(new_header("orin-agx-64gb", "fp16", segments=[segment("s", "dla7")]))
    with pytest.raises(PlanError, match=r"<plan being written>: segments\[0\]\.device: 'dla7' "
                       r"is not one of gpu, dla0, dla1, cpu; the plan was not written"):
        write_plan(plan, tmp_path / "out.plan")
    plan = Plan(new_header("orin-agx-64gb", "fp16", segments=[segment("s", "dla0")]))
    with pytest.raises(PlanError, match=r"segments\[0\]: a DLA segment lacks 'loadable'"):
        write_plan(plan, tmp_path / "out.plan")
    assert list(tmp_path.iterdir()) == []


def test_a_value_nested_past_the_recursion_limit_is_one_field_error() -> None:
    header = new_header("orin-agx-64gb", "fp16", segments=[segment("s", "gpu")])
    deep: list = []
    for _ in range(5000):
        deep = [deep]
    header["segments"][0]["graph"]["nodes"][0]["attrs"]["deep"] = {"value": deep}
    with pytest.raises(HeaderFieldError, match="^header: nested too deeply$"):
        decode_header(header)


# ----- the DLA loadable: its fields are checked where it is decoded ----------------------------
def _loadable(built) -> tuple[Loadable, str]:
    plan = read_plan(built["xavier-int8"])
    seg = _seg(plan.header, "dla")
    return Loadable.from_bytes(bytes(plan.blob(seg["loadable"]).data)), seg["loadable"]


def _conv(lo: Loadable):
    return next(op for op in lo.ops if op.engine == "conv")


LOADABLE_HOSTILE = [
    ("stride 0", lambda lo: _conv(lo).params.__setitem__("strides", [0, 0]),
     "params.strides: [0, 0] is not 2 positive integers"),
    ("negative pad", lambda lo: _conv(lo).params.__setitem__("pads", [-1, 0, 0, 0]),
     "params.pads: [-1, 0, 0, 0] is not 4 non-negative integers"),
    ("group 0", lambda lo: _conv(lo).params.__setitem__("group", 0),
     "params.group: 0 is not a positive integer"),
    ("unknown engine", lambda lo: setattr(_conv(lo), "engine", "gpu"),
     "engine: 'gpu' is not one of conv"),
    ("unknown tensor", lambda lo: _conv(lo).inputs.__setitem__(0, "ghost"),
     "tensor 'ghost' is not described"),
    ("unknown blob", lambda lo: _conv(lo).blobs.__setitem__("weights", "ghost"),
     "blobs.weights: blob 'ghost' is not in the loadable"),
    ("shape 1e12", lambda lo: setattr(lo.tensors[lo.inputs[0]], "shape", [10**6, 10**6]),
     "shape: [1000000, 1000000] has more than"),
    ("negative dim", lambda lo: setattr(lo.tensors[lo.inputs[0]], "shape", [1, -3, 8, 8]),
     "shape: [1, -3, 8, 8] is not a list of sizes"),
    ("int8 scale 0", lambda lo: setattr(
        next(t for t in lo.tensors.values() if t.dtype == "int8"), "scale", 0.0),
     "scale: 0.0 is not a positive number"),
]


@pytest.mark.parametrize(
    "name,mutate,words", LOADABLE_HOSTILE, ids=[c[0] for c in LOADABLE_HOSTILE]
)
def test_hostile_loadable_field_is_one_line_naming_it(built, name, mutate, words) -> None:
    lo, _ = _loadable(built)
    mutate(lo)
    with pytest.raises(LoadableError) as err:
        Loadable.from_bytes(lo.to_bytes(), "seg.dla")
    message = str(err.value)
    assert message.startswith("seg.dla: ") and words in message, message
    assert "\n" not in message


def test_run_names_the_plan_and_segment_of_a_bad_loadable(built, tmp_path, capsys) -> None:
    lo, key = _loadable(built)
    _conv(lo).params["strides"] = [0, 0]
    plan = read_plan(built["xavier-int8"])
    plan.add_bytes(key, lo.to_bytes(), "dla-loadable")
    path = write_plan(plan, tmp_path / "stride0.plan")
    np.savez(tmp_path / "in.npz", input=np.zeros((1, 3, 64, 64), np.float32))
    capsys.readouterr()
    assert main(["run", str(path), "--backend", "cpu", "--inputs", str(tmp_path / "in.npz")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"{path}: segment '" in err and "params.strides: [0, 0]" in err


# ----- the typed header of a plan in memory, and what consumers read from it -------------------
def test_a_plan_in_memory_decodes_with_its_blob_table_and_again_after_edited() -> None:
    plan = Plan(new_header("orin-agx-64gb", "fp16", segments=[segment("s", "dla0", loadable="L")]))
    plan.add_bytes("L", b"\0" * 100, "dla-loadable")
    # the blob table is written from plan.blobs, as encode_plan writes it
    assert plan.record.blobs["L"].size == 100
    assert plan.record.segments[0].loadable == "L"
    plan.header["power_mode"] = "MAXN"
    assert plan.record.power_mode is None  # decoded once: an edit is not seen ...
    plan.edited()
    assert plan.record.power_mode == "MAXN"  # ... until the plan says it was edited
    plan.header["segments"][0]["device"] = "dla7"
    plan.edited()
    with pytest.raises(PlanError, match=r"^<plan in memory>: segments\[0\]\.device: 'dla7'"):
        plan.record  # noqa: B018


def test_lanes_fps_sums_the_lanes_and_feed_shape_takes_profile_0_opt() -> None:
    header = new_header(
        "orin-agx-64gb",
        "fp16",
        segments=[segment("a", "gpu"), segment("b", "cpu")],
        inputs=[{"name": "x", "shape": ["n", 3, 8, 8], "dtype": "float32"},
                {"name": "k", "shape": [2], "dtype": "int64"}],
        profiles=[{"inputs": {"x": {"min": [1, 3, 8, 8], "opt": [4, 3, 8, 8],
                                    "max": [8, 3, 8, 8]}}}],
        lanes=[{"name": "gpu", "segments": ["a"], "rate_fps": 120.5},
               {"name": "cpu", "segments": ["b"], "rate_fps": 9.5}],
    )
    record = decode_header(header)
    assert record.lanes_fps == 130.0
    x, k = record.inputs
    assert record.feed_shape(x) == [4, 3, 8, 8]
    assert record.feed_shape(k) == [2]
    (profile,) = record.optimization_profiles()
    assert profile.get_shape("x") == ((1, 3, 8, 8), (4, 3, 8, 8), (8, 3, 8, 8))
    assert record.segment("b").device == "cpu"
    with pytest.raises(KeyError):
        record.segment("c")
