"""Embedding lookups whose indices the host computes (integer-only math on the CPU): GPT-2
reshapes its token ids, RoBERTa derives position ids from the padding mask. The lookups stay on
the GPU and read those indices as a segment input, as BERT's read token ids from a graph input.
Before, both Gathers left the GPU ("run-time indices only from a graph input")."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from gpu_kernels.lowering import lower
from partitioner.subgraph import extract_subgraph
from tandem.cli import main
from targets.build import place, resolve_policy, resolve_target
from tests.devices.gpu_cases import rel_err
from tests.gpu_kernels.kernel_sim import simulate
from tests.models import ort_run

PAD = 1
HOST_LAYERS = {"ids_2d", "not_pad", "keep", "mask", "running", "masked", "positions"}


def roberta_embeddings(path: Path) -> Path:
    """ids (2, 8) -> Reshape (-1, 8) -> Gather(words); positions = cumsum(ids != PAD) * mask +
    PAD -> Gather(wpe); their sum, layer-normalised."""
    rng = np.random.default_rng(5)
    init = [
        numpy_helper.from_array(rng.standard_normal((50, 16)).astype(np.float32), "words"),
        numpy_helper.from_array(rng.standard_normal((12, 16)).astype(np.float32), "wpe"),
        numpy_helper.from_array(np.array([-1, 8], np.int64), "shape"),
        numpy_helper.from_array(np.array(PAD, np.int64), "pad"),
        numpy_helper.from_array(np.array(1, np.int64), "axis"),
        numpy_helper.from_array(np.ones(16, np.float32), "gamma"),
    ]
    nodes = [
        helper.make_node("Reshape", ["ids", "shape"], ["ids2"], name="ids_2d"),
        helper.make_node("Gather", ["words", "ids2"], ["w"], name="word_lookup"),
        helper.make_node("Equal", ["ids2", "pad"], ["is_pad"], name="not_pad"),
        helper.make_node("Not", ["is_pad"], ["keep_b"], name="keep"),
        helper.make_node("Cast", ["keep_b"], ["m"], to=TensorProto.INT64, name="mask"),
        helper.make_node("CumSum", ["m", "axis"], ["c"], name="running"),
        helper.make_node("Mul", ["c", "m"], ["cm"], name="masked"),
        helper.make_node("Add", ["cm", "pad"], ["pos"], name="positions"),
        helper.make_node("Gather", ["wpe", "pos"], ["p"], name="position_lookup"),
        helper.make_node("Add", ["w", "p"], ["s"], name="sum"),
        helper.make_node("LayerNormalization", ["s", "gamma"], ["y"], axis=-1, name="ln"),
    ]
    graph = helper.make_graph(
        nodes, "roberta_embeddings",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, [2, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 8, 16])], init,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # the H200's onnxruntime reads IR <= 13
    onnx.save(model, path)
    return path


def token_ids() -> np.ndarray:
    ids = np.random.default_rng(2).integers(2, 50, (2, 8)).astype(np.int64)
    ids[1, 5:] = PAD  # padding: its positions stay PAD
    return ids


def gpu_only(tmp_path: Path) -> Path:
    policy = tmp_path / "gpu.yaml"
    policy.write_text("default_device: gpu\n", encoding="utf-8")
    return policy


def test_the_lookups_stay_on_the_gpu_and_the_index_math_on_the_host(tmp_path) -> None:
    path = roberta_embeddings(tmp_path / "emb.onnx")
    placement = place(path, resolve_target("orin-agx-64gb"),
                      resolve_policy(str(gpu_only(tmp_path)), "fp32"), {})
    devices = {n: a.device for n, a in placement.partition.assignments.items()}
    assert {n for n, d in devices.items() if d == "cpu"} == HOST_LAYERS
    assert {n for n, d in devices.items() if d == "gpu"} == {
        "word_lookup", "position_lookup", "sum", "ln"}


@pytest.mark.parametrize("precision, bound", [("fp32", 1e-5), ("fp16", 1e-2)])
def test_the_gpu_segment_lowers_and_its_kernels_match_onnx_runtime(tmp_path, precision,
                                                                   bound) -> None:
    """The GPU segment's program, run on the kernel model with the indices the host computes,
    against ONNX Runtime on the whole model."""
    path = roberta_embeddings(tmp_path / "emb.onnx")
    placement = place(path, resolve_target("orin-agx-64gb"),
                      resolve_policy(str(gpu_only(tmp_path)), precision), {})
    (seg,) = [s for s in placement.partition.segments if s.device == "gpu"]
    sub = extract_subgraph(placement.graph, list(seg.nodes), seg.name)
    ids = token_ids()
    ids2 = ids.reshape(-1, 8)
    keep = (ids2 != PAD).astype(np.int64)
    host = {"ids2": ids2, "pos": np.cumsum(keep, axis=1) * keep + PAD}
    assert {t.name for t in sub.inputs} == set(host)
    prog = lower(sub, precision, arch=87)
    assert [ln.kernel.startswith("gather_rows") for ln in prog.launches].count(True) == 2
    got = simulate(prog, host)["y"]
    assert rel_err(got, ort_run(path, {"ids": ids})["y"]) <= bound


def test_a_gpu_only_build_runs_and_matches_onnx_runtime(tmp_path, capsys) -> None:
    path = roberta_embeddings(tmp_path / "emb.onnx")
    code = main(["compare", str(path), "--target", "orin-agx-64gb", "--fp32",
                 "--policy", str(gpu_only(tmp_path))])
    out = capsys.readouterr().out
    assert code == 0 and "match" in out.splitlines()[-1], out


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["--fp32", "--fp16"])
def test_on_cuda_the_lookups_read_the_hosts_indices(tmp_path, capsys, precision) -> None:
    path = roberta_embeddings(tmp_path / "emb.onnx")
    plan = tmp_path / "emb.plan"
    assert main(["build", str(path), "--target", "host", precision, "--policy",
                 str(gpu_only(tmp_path)), "-o", str(plan), "--quiet"]) == 0
    ids = token_ids()
    np.savez(tmp_path / "in.npz", ids=ids)
    assert main(["run", str(plan), "--backend", "cuda", "--inputs", str(tmp_path / "in.npz"),
                 "--save-outputs", str(tmp_path / "out.npz")]) == 0
    with np.load(tmp_path / "out.npz") as out:
        got = out["y"]
    bound = 1e-5 if precision == "--fp32" else 1e-2
    assert rel_err(got, ort_run(path, {"ids": ids})["y"]) <= bound
    capsys.readouterr()

