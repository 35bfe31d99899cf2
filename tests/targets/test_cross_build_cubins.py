"""Cross-build on a machine without a GPU: a plan's GPU segments carry cubins compiled for the
target's arch with the NVRTC of the target's CUDA major (11 for JetPack 5 / sm_72)."""

from __future__ import annotations

import pytest

from devices.plan import read_plan
from tandem.cli import main

ELF_MAGIC = b"\x7fELF"
# A cubin's ELF e_flags carry the SM number (0x48 = 72, 0x57 = 87) in bits 0-7 and 16-23.


@pytest.mark.parametrize(
    "target, arch, nvrtc_major", [("xavier-agx", "sm_72", "11"), ("orin-agx-64gb", "sm_87", None)]
)
def test_gpu_segments_carry_cubins_for_the_target(tmp_path, zoo_model, target, arch, nvrtc_major):
    plan_path = tmp_path / "m.plan"
    argv = ["build", str(zoo_model("resnet18")), "--target", target, "--fp16"]
    assert main([*argv, "--partition", "cost", "-o", str(plan_path), "--quiet"]) == 0
    plan = read_plan(plan_path)
    gpu = [rec for rec in plan.header["segments"] if rec["device"] == "gpu"]
    assert gpu, "the cost strategy keeps work on the GPU for these targets"
    for rec in gpu:
        cuda = rec["cuda"]
        assert "error" not in cuda, cuda.get("error")
        assert cuda["arch"] == arch and cuda["kernels"] > 0 and cuda["modules"]
        for module in cuda["modules"]:
            cubin = bytes(plan.blob(module["blob"]).data)
            assert cubin.startswith(ELF_MAGIC)
            e_flags = int.from_bytes(cubin[48:52], "little")
            assert e_flags & 0xFF == int(arch[3:]) == (e_flags >> 16) & 0xFF
            if nvrtc_major:
                assert module["nvrtc"].split(".")[0] == nvrtc_major


def test_a_boards_timing_cache_picks_the_cross_built_tactics(tmp_path, zoo_model):
    from gpu_kernels.lowering import lower
    from gpu_kernels.tactics import candidates, heuristic
    from gpu_kernels.timing_cache import TimingCache
    from targets.build import place, resolve_policy, resolve_target

    model = zoo_model("resnet18")
    target = resolve_target("orin-agx-64gb")
    placement = place(model, target, resolve_policy(None, "fp16", "cost"))
    seen = []

    def record(problem):
        seen.append(problem)
        return heuristic(problem, 87, target.gpu.sm_count)

    lower(placement.graph, "fp16", 87, record, target.gpu.sm_count)
    # a convolution with a choice, and a tactic the cost model would not pick
    problem, other = next(
        (p, t)
        for p in seen
        for t in candidates(p, 87)
        if t.name != heuristic(p, 87, target.gpu.sm_count).name
    )
    cache = TimingCache()
    cache.record(problem.signature(), "sm_87", other.name, 0.01)
    cache.save(tmp_path / "board.timing.json")
    plan_path = tmp_path / "m.plan"
    argv = ["build", str(model), "--target", "orin-agx-64gb", "--fp16", "--partition", "cost"]
    argv += ["--timing-cache", str(tmp_path / "board.timing.json"), "-o", str(plan_path)]
    assert main([*argv, "--quiet"]) == 0
    plan = read_plan(plan_path)
    cuda = next(rec["cuda"] for rec in plan.header["segments"] if rec["device"] == "gpu")
    assert other.name in cuda["layer_tactics"].values()
    assert "timing-cache" in cuda["tactic_sources"]
    stored = TimingCache.from_json(bytes(plan.blob("timing_cache").data).decode())
    assert stored.best(problem.signature(), "sm_87") == other.name


def test_int8_build_cross_compiles_int8_tensor_core_kernels(tmp_path, zoo_model):
    """An INT8 Orin build lowers its GPU convolutions to the m16n8k32 kernel with the plan's
    calibration scales, and the INT8 tile modules are in the plan as cubins."""
    plan_path = tmp_path / "m.plan"
    argv = ["build", str(zoo_model("resnet18")), "--target", "orin-agx-64gb", "--int8",
            "--calib-random", "2", "--partition", "cost", "-o", str(plan_path), "--quiet"]
    assert main(argv) == 0
    plan = read_plan(plan_path)
    gpu = [rec for rec in plan.header["segments"] if rec["device"] == "gpu"]
    assert gpu and plan.header["calibration"]
    cuda = gpu[0]["cuda"]
    assert "error" not in cuda, cuda.get("error")
    assert cuda["precision"] == "int8"
    assert any(name.endswith("_i8") for name in cuda["layer_tactics"].values())
    assert any("-DINT8=1" in m["options"] for m in cuda["modules"])
