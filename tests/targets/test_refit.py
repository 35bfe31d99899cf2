"""Refit (issue 7 item 5): a plan refitted with new weights equals a fresh build with them —
every blob byte for byte (GPU weights replaced, DLA loadables recompiled with the stored INT8
scales) and so every output bit for bit; a model of another structure is refused with what
differs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from devices.plan import read_plan, write_plan
from devices.runtime import PlanRunner
from tandem.cli import main
from targets.refit import RefitError, Refitter, refit_plan
from tests.models import random_inputs


def _zoo(tmp: Path, seed: int, resolution: int = 64) -> Path:
    """resnet18 (Conv+BN pairs, so BN folding is exercised) with seeded weights."""
    path = tmp / f"resnet18_s{seed}_r{resolution}.onnx"
    assert main(["zoo", "resnet18", "--resolution", str(resolution), "--seed", str(seed),
                 "-o", str(path)]) == 0  # fmt: skip
    return path


def _build(model: Path, plan: Path, *flags: str) -> Path:
    assert main(["build", str(model), "-o", str(plan), "--quiet", *flags]) == 0
    return plan


def _outputs(plan, feeds) -> dict[str, np.ndarray]:
    with PlanRunner(plan, backend="cpu") as runner:
        return runner.infer(feeds)


def _assert_same_plan(refitted, fresh) -> None:
    assert refitted.header["segments"] == fresh.header["segments"]
    assert set(refitted.blobs) == set(fresh.blobs)
    differ = [k for k in fresh.blobs if bytes(refitted.blobs[k].data) != bytes(fresh.blobs[k].data)]
    assert differ == []


@pytest.mark.parametrize(
    "flags, dla",
    [
        (["--target", "host", "--fp32"], False),  # everything on the CPU reference, FP32
        (["--target", "orin-agx-64gb", "--fp16"], True),  # DLA loadables + a GPU segment
    ],
)
def test_refit_equals_a_fresh_build(tmp_path, flags, dla, capsys):
    old, new = _zoo(tmp_path, 0), _zoo(tmp_path, 1)
    old_plan = _build(old, tmp_path / "old.plan", *flags)
    fresh = read_plan(_build(new, tmp_path / "fresh.plan", *flags))
    out = tmp_path / "refit.plan"
    capsys.readouterr()
    assert main(["refit", str(old_plan), "--weights", str(new), "-o", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["weights_set"] == info["weights_changed"] == 42  # 20 conv+BN folded, fc
    assert bool(info["recompiled"]) == dla
    refitted = read_plan(out)
    _assert_same_plan(refitted, fresh)
    feeds = random_inputs(new)
    got, want = _outputs(refitted, feeds), _outputs(fresh, feeds)
    before = _outputs(read_plan(old_plan), feeds)
    for name in want:
        np.testing.assert_array_equal(got[name], want[name])  # bit-exact
        assert not np.allclose(before[name], want[name])  # the weights really changed


def test_int8_refit_requantises_with_the_stored_scales(tmp_path):
    """INT8 DLA loadables: same calibration scales, new weights re-quantised per channel."""
    old, new = _zoo(tmp_path, 0), _zoo(tmp_path, 1)
    cache = tmp_path / "calib.cache"
    flags = ["--target", "orin-agx-64gb", "--int8"]
    _build(old, tmp_path / "seed.plan", *flags, "--calib-random", "2", "--calib-cache", str(cache))
    old_plan = _build(old, tmp_path / "old.plan", *flags, "--calib-cache", str(cache))
    fresh = read_plan(_build(new, tmp_path / "fresh.plan", *flags, "--calib-cache", str(cache)))
    assert any(s["precision"] == "int8" for s in fresh.header["segments"])
    refitted = refit_plan(read_plan(old_plan), new)
    _assert_same_plan(refitted, fresh)
    feeds = random_inputs(new)
    got, want = _outputs(refitted, feeds), _outputs(fresh, feeds)
    for name in want:
        np.testing.assert_array_equal(got[name], want[name])


def test_refitter_api_by_name(tmp_path):
    old = _zoo(tmp_path, 0)
    plan = read_plan(_build(old, tmp_path / "old.plan", "--target", "orin-agx-64gb", "--fp16"))
    r = Refitter(plan)
    names = r.get_all_weights()
    assert "fc.weight" in names and "conv1_bn_weight" in names  # names after BN folding
    assert r.get_missing_weights() == names
    fc = r.get_named_weights("fc.weight")
    assert r.set_named_weights("fc.weight", (fc * 2).astype(fc.dtype))
    assert "fc.weight" not in r.get_missing_weights()
    with pytest.raises(RefitError, match=r"weight 'fc.weight': the plan has float32 \[1000, 512\]"):
        r.set_named_weights("fc.weight", fc[:10])
    with pytest.raises(RefitError, match="float64"):
        r.set_named_weights("fc.weight", fc.astype(np.float64))
    with pytest.raises(RefitError, match="no weight named 'conv1.weight'.*get_all_weights"):
        r.set_named_weights("conv1.weight", fc)
    refitted = r.refit_cuda_engine()
    info = refitted.header["metadata"]["refit"]
    holders = [s["name"] for s in plan.header["segments"] if "fc" in s["layers"]]
    dla_holders = [s["name"] for s in plan.header["segments"] if "fc" in s["layers"]
                   and "loadable" in s]  # fmt: skip
    assert info == {"weights_set": 1, "weights_changed": 1, "recompiled": dla_holders}
    for seg in holders:
        np.testing.assert_array_equal(refitted.array(f"{seg}/fc.weight"), fc * 2)
    # only fc's segment changed: every other blob is the plan's
    changed = {k for k in plan.blobs if bytes(plan.blobs[k].data) != bytes(refitted.blobs[k].data)}
    assert changed == {f"{seg}/fc.weight" for seg in holders} | {
        f"{s}/loadable" for s in dla_holders
    }
    feeds = random_inputs(old)
    before, after = _outputs(plan, feeds), _outputs(refitted, feeds)
    assert all(not np.allclose(after[n], before[n]) for n in before)
    path = write_plan(refitted, tmp_path / "refit.plan")
    assert read_plan(path).header["metadata"]["refit"]["weights_set"] == 1


def _tiny(path: Path, channels: int = 8, act: str = "Relu", extra: bool = False) -> Path:
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.standard_normal((channels, 3, 3, 3)).astype("f4"), "w1")
    w2 = numpy_helper.from_array(rng.standard_normal((4, channels, 1, 1)).astype("f4"), "w2")
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["a"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node(act, ["a"], ["b"], name="act"),
        helper.make_node("Conv", ["b", "w2"], ["c" if extra else "y"], name="conv2"),
    ]
    if extra:
        nodes.append(helper.make_node("Relu", ["c"], ["y"], name="relu_out"))
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])],
        [w1, w2],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.mark.parametrize(
    "change, message",
    [
        ({"channels": 6}, r"weight 'w1': float32 \[6, 3, 3, 3\] \(plan: float32 \[8, 3, 3, 3\]\)"),
        ({"act": "Sigmoid"}, r"layer 'act': op Sigmoid \(plan: Relu\)"),
        ({"extra": True}, r"layers tiny_new.onnx adds: relu_out"),
    ],
)
def test_structure_mismatch_is_refused_with_what_differs(tmp_path, change, message, capsys):
    plan = _build(_tiny(tmp_path / "tiny.onnx"), tmp_path / "tiny.plan", "--target", "host")
    new = _tiny(tmp_path / "tiny_new.onnx", **change)
    with pytest.raises(RefitError, match=message):
        Refitter(read_plan(plan)).refit_from_onnx(new)
    capsys.readouterr()
    out = tmp_path / "never.plan"
    assert main(["refit", str(plan), "--weights", str(new), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "not the structure of" in err and "rebuild with `tandem build`" in err
    assert not out.exists()


def test_another_resolution_is_refused(tmp_path):
    old_plan = _build(_zoo(tmp_path, 0), tmp_path / "old.plan", "--target", "host")
    with pytest.raises(RefitError, match=r"activation shape\(s\) differ, e.g. tensor 'input': "
                       r"float32 \[1, 3, 96, 96\] \(plan: float32 \[1, 3, 64, 64\]\)"):  # fmt: skip
        refit_plan(read_plan(old_plan), _zoo(tmp_path, 1, resolution=96))


def _dynamic(src: Path, dst: Path) -> Path:
    """``src`` with a symbolic batch, height and width (N, H, W) on its input."""
    model = onnx.load(str(src))
    for dim, name in zip(model.graph.input[0].type.tensor_type.shape.dim, ["N", "", "H", "W"]):
        if name:
            dim.ClearField("dim_value")
            dim.dim_param = name
    del model.graph.value_info[:]
    for out in model.graph.output:
        for dim in out.type.tensor_type.shape.dim:
            dim.ClearField("dim_value")
            dim.dim_param = ""
    onnx.save(model, str(dst))
    return dst


@pytest.mark.parametrize(
    "flags",
    [
        # dims fixed at import (--dim)
        ["--dim", "N=1", "--dim", "H=64", "--dim", "W=64"],
        # one profile with min == max: its dims are pinned after import (DLA-eligible)
        ["--min-shapes", "input:2x3x32x32", "--opt-shapes", "input:2x3x32x32",
         "--max-shapes", "input:2x3x32x32"],
        # a ranged profile: the batch stays symbolic (those layers on the GPU)
        ["--min-shapes", "input:1x3x32x32", "--opt-shapes", "input:2x3x32x32",
         "--max-shapes", "input:4x3x32x32"],
    ],
)  # fmt: skip
def test_refit_of_plans_with_fixed_or_dynamic_dims(tmp_path, flags):
    """The refitter fixes the same dims the build fixed, so the graphs line up."""
    old = _dynamic(_zoo(tmp_path, 0), tmp_path / "old_dyn.onnx")
    new = _dynamic(_zoo(tmp_path, 1), tmp_path / "new_dyn.onnx")
    common = ["--target", "orin-agx-64gb", "--fp16", *flags]
    old_plan = _build(old, tmp_path / "old.plan", *common)
    fresh = read_plan(_build(new, tmp_path / "fresh.plan", *common))
    _assert_same_plan(refit_plan(read_plan(old_plan), new), fresh)
