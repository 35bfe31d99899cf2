"""bench/gpu_vs_torch.py's parts that need no GPU: the command line, the model list and its
exporters (real exports at a chosen batch and side, checked against ONNX Runtime through the
torch interpreter on the CPU), the budget stop and SIGTERM (real runs, no GPU work started), the
compile cap, and issue #19's acceptance math on recorded H100 runs."""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import gpu_bench_models as gbm  # noqa: E402
import gpu_bench_report as report  # noqa: E402
import gpu_vs_torch as gt  # noqa: E402
from conformance import SOURCES, list_models  # noqa: E402

RECORDED = ROOT / "bench" / "gpu_vs_torch_h100_2026-11-24_session4.json"
RECORDED_LATER = ROOT / "bench" / "gpu_vs_torch_h100_2026-11-24_session4_maxautotune.json"
ISSUE_MODELS = ("tv-efficientnet_b0", "tv-mobilenet_v3_large", "tv-convnext_tiny",
                "tv-regnet_y_400mf", "tv-densenet121", "tv-vit_b_16", "tv-swin_t", "yolov8n",
                "bert")  # fmt: skip


# ----- the command line and the model list ---------------------------------------------------
def test_defaults_cover_the_zoo_and_15_conformance_models_at_batch_1_and_32():
    args = gt.parse_args([])
    names = [m.name for m in args.model_list]
    conformance = [m for m in args.model_list if m.source != "zoo"]
    assert names[:6] == list(gbm.ZOO)
    assert len(conformance) >= 15 and set(ISSUE_MODELS) <= set(names)
    assert args.batch_list == [1, 32]
    assert args.peer_list == ["eager", "reduce-overhead", "max-autotune"]
    assert args.modes == ["reduce-overhead", "max-autotune"]
    assert args.precision_list == ["fp16"]
    # realistic inputs: ImageNet CNNs at 224, YOLO at 640, BERT at 128 tokens
    assert gbm.MODELS["tv-efficientnet_b0"].input_note == "224px"
    assert gbm.MODELS["yolov8n"].input_note == "640px"
    assert gbm.MODELS["bert"].input_note == "sequence 128"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--models", "zoo,tv-nope"], "no benchmark model 'tv-nope'"),
        (["--models", ","], "the list is empty"),
        (["--batches", "1,x"], "--batches: expected a comma list of positive integers"),
        (["--batches", "0"], "--batches: expected a comma list of positive integers"),
        (["--peers", "eager,inductor"], "--peers: unknown inductor"),
        (["--precisions", "bf16"], "--precisions: unknown ['bf16']"),
        (["--budget-s", "-1"], "--budget-s must be >= 0"),
    ],
)
def test_bad_arguments_are_one_line_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        gt.parse_args(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_model_groups_keep_order_and_drop_duplicates():
    models = gbm.resolve("resnet50,zoo,bert,conformance")
    names = [m.name for m in models]
    assert names[:2] == ["resnet50", "resnet18"] and names.count("bert") == 1
    assert names == list(dict.fromkeys(names))
    assert len(models) == len(gbm.MODELS)
    args = gt.parse_args(["--peers", "none"])
    assert args.peer_list == [] and args.modes == []


def test_every_conformance_model_is_its_export_scripts():
    """Each bench model's source script lists it (``--list`` run under the exporter's venv)."""
    by_source: dict[str, list[str]] = {}
    for m in gbm.CONFORMANCE.values():
        by_source.setdefault(m.source, []).append(m.name)
    for source, names in by_source.items():
        missing = SOURCES[source].missing()
        if missing:
            pytest.skip(missing)
        listed = set(list_models(SOURCES[source]))
        assert set(names) <= listed, f"{source}: {sorted(set(names) - listed)} not listed"


def test_static_exports_get_a_folder_per_batch_and_side_dynamic_ones_share_one(tmp_path):
    swin, bert = gbm.MODELS["tv-swin_t"], gbm.MODELS["bert"]
    assert gbm.export_folder(swin, 32, tmp_path) == tmp_path / "torchvision-b32-s224"
    assert gbm.export_options(swin, 32) == ("--batch", "32", "--size", "224")
    assert gbm.export_folder(bert, 1, tmp_path) == gbm.export_folder(bert, 32, tmp_path)
    assert gbm.export_options(bert, 32) == ()


def test_an_exporter_without_sizes_refuses_batch_in_one_line(tmp_path, capsys):
    sys.path.insert(0, str(ROOT / "tests" / "conformance"))
    from export_common import main

    with pytest.raises(SystemExit) as exc:
        main({"m": None}, lambda *a, **k: None, "d", ["--out", str(tmp_path), "--batch", "2"])
    assert exc.value.code == 2
    assert "exported at their fixed inputs" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


# ----- real exports, the interpreter against ONNX Runtime ------------------------------------
@pytest.mark.slow
def test_exports_at_the_asked_batch_and_side_run_in_the_torch_interpreter(tmp_path):
    """Swin-T at batch 2, side 64 (a side whose windows need the Pad op) and BERT bound to
    batch 3 x 128 tokens: exported once into the cache (a second prepare exports nothing), the
    graph has the asked inputs, and the torch interpreter (CPU, FP32) agrees with ONNX Runtime
    on the benchmark's own inputs."""
    import torch
    from gpu_torch_interp import TorchGraph

    from devices.io import run_onnxruntime

    for source in ("torchvision", "transformers"):
        if SOURCES[source].missing():
            pytest.skip(SOURCES[source].missing())
    swin = gbm.BenchModel("tv-swin_t", "torchvision", 64)
    bert = gbm.MODELS["bert"]
    assert gbm.prepare([swin], [2], tmp_path, 600) == {}
    assert gbm.prepare([bert], [3], tmp_path, 600) == {}
    stamp = (tmp_path / "torchvision-b2-s64" / "tv-swin_t.onnx").stat().st_mtime_ns
    assert gbm.prepare([swin, bert], [2], tmp_path, 600) == {}  # nothing exported again
    assert (tmp_path / "torchvision-b2-s64" / "tv-swin_t.onnx").stat().st_mtime_ns == stamp
    for model, batch, shape in ((swin, 2, (2, 3, 64, 64)), (bert, 3, (3, 128))):
        graph = gbm.load_graph(model, batch, tmp_path)
        assert graph.inputs[0].static_shape() == shape
        if model is swin:
            assert any(n.op == "Pad" for n in graph.nodes)
        feeds = gt.feeds_of(graph)
        module = TorchGraph(graph, torch.float32).eval()
        with torch.inference_mode():
            got = module(*[torch.from_numpy(feeds[n]) for n in module.in_names])
        path, _ = gbm.model_file(model, batch, tmp_path)
        oracle = run_onnxruntime(path, feeds)
        for name, value in zip(module.out_names, got):
            assert gt.rel_err(value.numpy(), oracle[name]) < 1e-4, (model.name, name)
        # in FP16 nothing is promoted to FP32 on the way (BERT's mask: Where of two scalars)
        half = TorchGraph(graph, torch.float16).eval()
        xs = [torch.from_numpy(feeds[n]) for n in half.in_names]
        with torch.inference_mode():
            outs = half(*[x.half() if x.is_floating_point() else x for x in xs])
        assert [o.dtype for o in outs] == [torch.float16] * len(outs), model.name


def test_an_exporter_that_cannot_start_fails_its_rows_in_one_line(tmp_path, monkeypatch):
    python = tmp_path / "no-python"
    monkeypatch.setenv("TANDEM_EXPORT_PYTHON", str(python))
    models = [gbm.MODELS["tv-swin_t"], gbm.MODELS["resnet18"], gbm.MODELS["bert"]]
    failed = gbm.prepare(models, [1, 32], tmp_path, 60)
    assert sorted(failed) == [("bert", 1), ("bert", 32), ("tv-swin_t", 1), ("tv-swin_t", 32)]
    assert failed["tv-swin_t", 32] == f"export: {python}: No such file or directory"
    assert failed["bert", 1] == failed["tv-swin_t", 1]
    assert gbm.prepare(models, [1], tmp_path, 0) == {  # no time left: nothing started
        ("tv-swin_t", 1): "no time left in --budget-s",
        ("bert", 1): "no time left in --budget-s",
    }


def test_a_missing_export_is_one_line_naming_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"tv-swin_t\.onnx: not exported"):
        gbm.load_graph(gbm.MODELS["tv-swin_t"], 1, tmp_path)


# ----- budget, SIGTERM, the compile cap -------------------------------------------------------
def test_no_budget_writes_every_row_as_not_run_and_the_summary(tmp_path):
    out = tmp_path / "run" / "r.json"
    assert gt.main(["--budget-s", "0", "--out", str(out), "--models", "zoo,bert"]) == 0
    doc = json.loads(out.read_text())
    assert doc["stopped"] == "--budget-s 0 spent"
    assert [(r["model"], r["batch"]) for r in doc["results"]] == [
        (m, b) for m in (*gbm.ZOO, "bert") for b in (1, 32)]  # fmt: skip
    assert all(r["not_run"] == "--budget-s 0 spent" for r in doc["results"])
    assert "export_s" not in doc  # nothing was exported, nothing touched the GPU
    md = out.with_suffix(".md").read_text()
    assert "--budget-s 0" in md and md.count("**incomplete**") == 3
    assert not [p.name for p in out.parent.iterdir() if p.name.startswith(".")]


@pytest.mark.slow
def test_sigterm_during_the_export_writes_what_was_done(tmp_path):
    """The device call's ``timeout`` sends SIGTERM: the run stops, kills its exporter, and
    writes its JSON (rows not run) and Markdown."""
    if SOURCES["torchvision"].missing():
        pytest.skip(SOURCES["torchvision"].missing())
    out = tmp_path / "r.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "gpu_vs_torch.py"), "--out", str(out),
         "--models", "tv-densenet121", "--batches", "1", "--cache", str(tmp_path / "cache")],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    folder = tmp_path / "cache" / "torchvision-b1-s224"  # made just before the exporter starts
    deadline = time.time() + 120
    while not folder.is_dir() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    time.sleep(1)  # inside the exporter's subprocess (its torch import alone takes longer)
    proc.send_signal(signal.SIGTERM)
    stdout, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, stdout
    doc = json.loads(out.read_text())
    assert doc["stopped"].startswith("signal 15")
    assert doc["results"] == [{"model": "tv-densenet121", "source": "torchvision",
                               "input": "224px", "batch": 1, "precision": "fp16",
                               "not_run": doc["stopped"]}]  # fmt: skip
    assert out.with_suffix(".md").is_file()
    assert not list((tmp_path / "cache").glob("*/tv-densenet121.onnx"))


def test_time_cap_interrupts_python_work_and_restores_the_handler():
    before = signal.getsignal(signal.SIGALRM)
    t0 = time.perf_counter()
    with pytest.raises(gt.CapExceeded, match="over its cap of 0.2 s"):
        with gt.time_cap(0.2):
            while True:
                sum(range(1000))
    assert time.perf_counter() - t0 < 2
    assert signal.getsignal(signal.SIGALRM) == before
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    with pytest.raises(gt.CapExceeded, match="over its cap of 0.2 s"):
        with gt.time_cap(0.2):
            try:  # as torch.compile's fallbacks do (AOTAutogradCache.try_load: a cache bypass)
                while True:
                    sum(range(1000))
            except Exception:
                pass
            pytest.fail("the cap was swallowed by an except Exception")
    with pytest.raises(gt.CapExceeded, match="no time left"):
        with gt.time_cap(0):
            pass


def children() -> set[int]:
    return {int(pid) for task in Path("/proc/self/task").iterdir()
            for pid in (task / "children").read_text().split()}  # fmt: skip


@pytest.mark.slow
def test_a_compile_over_its_cap_is_recorded_not_raised(tmp_path, monkeypatch):
    """torch.compile max-autotune of a real zoo model (CPU) stopped after 1 s, promptly and
    with nothing left running. The cap once rang inside AOTAutogradCache's ``except
    Exception`` (a cache bypass) and the compile went on to its end (24-40 s measured): the
    empty reference here then raised after it, which was taken for the cap."""
    # inductor's cache of its own, not /tmp/torchinductor_<user> shared with every other run of
    # the suite (a fresh-clone run once got a UnicodeDecodeError from inside the compile)
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    import torch
    from gpu_torch_interp import TorchGraph

    from tandem.zoo import build_model
    from tests.devices.gpu_cases import graph_of

    graph = graph_of(build_model("resnet18", 1, 64))
    module = TorchGraph(graph, torch.float32).eval()
    xs = [torch.from_numpy(gt.feeds_of(graph)[n]) for n in module.in_names]
    # their first imports (3.3 s alone, up to 14 s on the shared 2-core machine under load) are
    # not the compile: from here the capped compile_side took 1.0-1.3 s with both cores busy
    import torch._dynamo
    import torch._inductor.compile_fx  # noqa: F401

    threads_before, children_before = set(threading.enumerate()), children()
    t0 = time.time()
    res = gt.compile_side(module, xs, [], "max-autotune", 1, cap_s=1.0)
    assert res["error"] == "compile over its cap of 1 s"
    assert res["compile_s"] >= 1.0 and time.time() - t0 < 15
    assert set(threading.enumerate()) <= threads_before
    assert children() <= children_before


def test_stopping_compile_threads_cancels_queued_jobs_and_ends_the_threads(monkeypatch):
    """The C++ compile thread pool after a cap: what runs finishes, what waits never starts."""
    from torch._inductor import config
    from torch._inductor.async_compile import AsyncCompile

    monkeypatch.setattr(config, "compile_threads", 2)
    gt.stop_compile_threads()  # the pool is made here with 2 threads, not left by a compile
    threads_before = set(threading.enumerate())
    jobs = [AsyncCompile.submit(functools.partial(subprocess.run, ["sleep", "2"]))
            for _ in range(6)]  # fmt: skip
    gt.stop_compile_threads()
    assert all(job.done() for job in jobs)
    assert any(job.cancelled() for job in jobs)  # 2 threads, 2 s each: 2, not 6, had started
    assert all(job.result().returncode == 0 for job in jobs if not job.cancelled())
    assert set(threading.enumerate()) <= threads_before
    assert AsyncCompile.pool.cache_info().currsize == 0  # the next compile makes a new pool


# ----- issue #19's acceptance on recorded runs ------------------------------------------------
def test_acceptance_on_a_recorded_h100_run():
    """Session 4 (H100, 2026-11-24): b2b <= reduce-overhead on resnet50, mobilenetv2, vit-tiny
    (0.5659 < 0.6116, 0.3439 < 0.492, 0.7456 < 1.279), not resnet18 / yolov5s / unet-small:
    3/6 < 80 %; every p50 under 0.8x reduce-overhead's (yolov5s: 0.9323 <= 0.8 x 1.4675 =
    1.174); batch 32: resnet50 2.4532 > reduce-overhead 1.4951, mobilenetv2 1.1128 > 0.8792,
    unet-small 3.5922 > eager 3.0617; yolov5s beats eager (8.3678 < 9.51) with no
    reduce-overhead number; no efficientnet_b0 row."""
    doc = json.loads(RECORDED.read_text())
    b2b, p50, b32 = report.acceptance(doc["results"])
    assert b2b["verdict"] == "FAIL"
    assert sorted(b2b["met"]) == ["mobilenetv2", "resnet50", "vit-tiny"]
    assert sorted(b2b["broken"]) == ["resnet18", "unet-small", "yolov5s"]
    assert "3/6 models (50%" in b2b["text"]
    assert p50["verdict"] == "pass" and len(p50["met"]) == 6 and not p50["missing"]
    assert b32["verdict"] == "FAIL"
    assert b32["broken"] == ["resnet50", "mobilenetv2", "unet-small"]
    assert b32["missing"] == ["tv-efficientnet_b0", "yolov5s"] and b32["met"] == []


def test_runs_merge_newest_row_first_and_a_skipped_row_keeps_the_measured_one():
    first = json.loads(RECORDED.read_text())
    later = json.loads(RECORDED_LATER.read_text())  # 07:12 UTC, after 07:03: its rows win
    skipped = {
        "date": "2026-11-25 00:00 UTC",
        "device": "x",
        "results": [
            {"model": "vit-tiny", "batch": 1, "precision": "fp16", "not_run": "--budget-s"},
            {"model": "tv-swin_t", "batch": 1, "precision": "fp16", "not_run": "--budget-s"},
        ],
    }
    rows, runs = report.merge([skipped, later, first])
    assert [d["date"] for d in runs] == [first["date"], later["date"], skipped["date"]]
    by = {(r["model"], r["batch"]): r for r in rows}
    assert by["resnet50", 1]["compile_reduce-overhead"]["b2b_ms"] == 0.4404  # the later run
    assert by["resnet50", 32]["tandem"]["b2b_ms"] == 2.4532  # only in the first
    assert by["vit-tiny", 1]["tandem"]["b2b_ms"] == 0.7456  # not replaced by "not run"
    assert by["tv-swin_t", 1]["not_run"] == "--budget-s"
    # later: resnet50 0.5725 > 0.4404 and resnet18 0.2533 > 0.2467 now; yolov5s 0.8701 < 0.996
    b2b = report.acceptance(rows)[0]
    assert sorted(b2b["met"]) == ["mobilenetv2", "vit-tiny", "yolov5s"]
    assert b2b["missing"] == ["tv-swin_t"] and b2b["verdict"] == "FAIL"
    md = report.markdown([first, later])
    assert md.count("\n- 2026-11-24 07:") == 2 and "| resnet50 | - | 32 | 2.453 / 2.454 |" in md


def test_report_command_merges_files_and_refuses_a_foreign_one(tmp_path, capsys):
    out = tmp_path / "gpu.md"
    assert report.main([str(RECORDED), str(RECORDED_LATER), "--out-md", str(out)]) == 0
    assert "**FAIL** batch 1: Tandem b2b <= reduce-overhead" in out.read_text()
    foreign = tmp_path / "x.json"
    foreign.write_text(json.dumps({"rows": []}))
    assert report.main([str(foreign)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "x.json" in err and "bench/gpu_vs_torch.py" in err


def test_row_lines_are_one_line_each():
    doc = json.loads(RECORDED.read_text())
    lines = [report.row_line(r) for r in doc["results"]]
    assert lines[2] == ("resnet50 b1 fp16: tandem 0.566 / 0.577 | eager 4.164 / 2.796 | "
                        "reduce-overhead 0.612 / 1.026 | tandem/RO b2b 0.93")  # fmt: skip
    assert all("\n" not in line for line in lines)
    assert report.row_line({"model": "m", "batch": 1, "not_run": "x"}) == "m b1 fp16: not run: x"


def test_integer_inputs_get_valid_token_ids_and_masks():
    from partitioner.ir import Graph, Tensor

    g = Graph("g")
    g.inputs = [Tensor("ids", (2, 5), "int64"), Tensor("x", (1, 3), "float32")]
    feeds = gt.feeds_of(g)
    assert feeds["ids"].dtype == np.int64 and set(np.unique(feeds["ids"])) <= {0, 1}
    assert feeds["x"].dtype == np.float32 and feeds["x"].shape == (1, 3)


# ----- on a GPU (the integrator's device run) -------------------------------------------------
@pytest.mark.gpu
def test_one_gpu_run_measures_every_peer_and_writes_the_acceptance(tmp_path):
    """A zoo model, a conformance CNN and BERT (a plan with host layers) at batch 1 against
    eager and reduce-overhead: every row timed on both sides, outputs agree, and the Markdown
    carries the three acceptance lines."""
    if SOURCES["torchvision"].missing() or SOURCES["transformers"].missing():
        pytest.skip(SOURCES["torchvision"].missing() or SOURCES["transformers"].missing())
    out = tmp_path / "r.json"
    argv = ["--out", str(out), "--models", "resnet18,tv-regnet_y_400mf,bert", "--batches", "1",
            "--peers", "eager,reduce-overhead", "--compile-cap-s", "120", "--iters", "20",
            "--budget-s", "400", "--cache", str(tmp_path / "cache")]  # fmt: skip
    assert gt.main(argv) == 0
    doc = json.loads(out.read_text())
    assert "stopped" not in doc and len(doc["results"]) == 3
    for row in doc["results"]:
        assert "error" not in row, row
        for peer in ("tandem", "eager", "compile_reduce-overhead"):
            assert row[peer]["b2b_ms"] > 0 and row[peer]["p50_ms"] > 0, (row["model"], peer)
        assert row["max_rel_err_vs_torch"] < 5e-2, row  # FP16 both sides
    bert = doc["results"][2]
    assert bert["path"].startswith("plan, ") and "tandem_timing" in bert
    md = out.with_suffix(".md").read_text()
    assert md.count("batch 1: Tandem") == 2 and "batch 32: Tandem throughput" in md


@pytest.mark.gpu
def test_a_gpu_compile_over_its_cap_stops_there_and_the_next_compile_works(tmp_path):
    """max-autotune of resnet50 (241-261 s uncapped on the H100, bench/*maxautotune.json)
    capped at 20 s as --compile-cap-s does, then reduce-overhead of the same module: the cap
    leaves torch.compile usable for the next rows."""
    import torch

    graph = gbm.load_graph(gbm.MODELS["resnet50"], 1, tmp_path)
    feeds = gt.feeds_of(graph)
    module, xs = gt.torch_side(graph, feeds, torch.float16)
    ref = gt.torch_outputs(module, xs)
    t0 = time.time()
    capped = gt.compile_side(module, xs, ref, "max-autotune", 20, cap_s=20.0)
    assert capped["error"] == "compile over its cap of 20 s", capped
    # the handler waits for the C call it rang in: a Triton compile in-process can take seconds
    assert 20 <= capped["compile_s"] < 30 and time.time() - t0 < 45, capped
    after = gt.compile_side(module, xs, ref, "reduce-overhead", 20, cap_s=150.0)
    assert "error" not in after and after["max_rel_err_vs_eager"] < 5e-2, after
