"""The GPU backend: runs a graph (a GPU segment or a whole model) with Tandem's own CUDA kernels.

Build (``activate``): lower the graph to kernel launches (``gpu_kernels.lowering``), choose each
convolution's tactic (timing cache, else autotune with CUDA events, else the cost model),
NVRTC-compile the kernels for this GPU's arch, upload the weights once (converted to NHWC and the
compute precision), place activations in one arena planned by tensor lifetimes, and capture every
launch in one CUDA graph. On sm_90+ kernels that follow kernels are launched programmatically
(PDL: the next kernel is scheduled while the previous one drains; see common.cuh). ``infer``
then copies the inputs in, replays the graph, and copies the outputs back.

Boundary format: inputs and outputs are numpy arrays in ONNX layout (NCHW for images) and the
graph's declared dtype (normally float32); conversion to and from the internal NHWC / FP16 form
happens on the GPU inside the captured graph.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from devices.runner import BaseRunner
from devices.tuning import tactic_timed
from gpu_kernels.driver import Context, CudaError, CudaGraph, KArgs
from gpu_kernels.lowering import GpuProgram, Launch, args_for, describe, lower
from gpu_kernels.tactics import ConvProblem, ConvTactic, candidates, heuristic, mma_eligible
from gpu_kernels.timing_cache import TimingCache
from partitioner.errors import ExecutionError
from partitioner.ir import Graph


class GpuRunner(BaseRunner):
    """Runs ``graph`` on CUDA GPU ``device`` at ``precision`` ("fp16", "fp32" or "int8").

    INT8 needs ``scales`` (tensor name -> scale = threshold / 127, TensorRT's convention, e.g.
    from calibration): convolutions whose input has a scale run on INT8 tensor cores, the rest
    in FP16 (see ``gpu_kernels.lowering``).
    """

    def __init__(
        self,
        graph: Graph,
        precision: str = "fp16",
        *,
        device: int = 0,
        autotune: bool = True,
        timing_cache: TimingCache | str | Path | None = None,
        use_cuda_graph: bool = True,
        nvrtc_major: int | None = None,
        name: str | None = None,
        prebuilt: Mapping[tuple[str, tuple[str, ...]], bytes] | None = None,
        scales: Mapping[str, float] | None = None,
    ) -> None:
        super().__init__(graph, name or f"gpu:{graph.name}")
        self.scales = dict(scales or {})
        #: cubins cross-built into a plan for this arch, by (source, options)
        self.prebuilt = dict(prebuilt or {})
        self.graph: Graph = graph
        self.precision = precision
        self.device = device
        self.autotune = autotune
        self.cache_path = None if isinstance(timing_cache, TimingCache) or timing_cache is None \
            else Path(timing_cache)
        if isinstance(timing_cache, TimingCache):
            self.timing_cache = timing_cache
        elif self.cache_path is not None and self.cache_path.is_file():
            self.timing_cache = TimingCache.load(self.cache_path)
        else:
            self.timing_cache = TimingCache()
        self.use_cuda_graph = use_cuda_graph
        self.nvrtc_major = nvrtc_major
        self.sync_each = os.environ.get("TANDEM_GPU_SYNC") == "1"  # localise a failing kernel
        #: programmatic dependent launch between kernels (sm_90+; TANDEM_GPU_PDL=0 turns it off)
        self.pdl = False
        self.program: GpuProgram | None = None
        self.ctx: Context | None = None
        self._cuda_graph: CudaGraph | None = None
        self._calls: list[tuple[str, Any, tuple[int, int, int], int, int, KArgs]] = []
        self._allocs: list[int] = []
        self._io: dict[int, int] = {}
        self._staging: dict[int, np.ndarray] = {}
        self._host_allocs: list[int] = []
        self.tactic_source: dict[str, str] = {}  # layer -> "cache" | "autotune" | "heuristic"

    # ----- build ---------------------------------------------------------------------------
    def activate_impl(self) -> None:
        from gpu_kernels.library import KernelLibrary

        ctx = self.ctx = Context(self.device)
        self.lib = KernelLibrary(ctx, self.nvrtc_major, self.prebuilt)
        info = ctx.info
        self.arch_key = f"sm_{info.arch}"
        self.pdl = info.arch >= 90 and os.environ.get("TANDEM_GPU_PDL", "1") != "0"
        self.program = prog = lower(self.graph, self.precision, info.arch, self._choose,
                                    info.sm_count, self.scales)
        arena = self._alloc(prog.arena_bytes)
        weights = self._alloc(prog.weight_bytes)
        for off, arr in prog.weights:
            ctx.upload(weights + off, arr)
        for buf, _, _ in list(prog.inputs.values()) + list(prog.outputs.values()):
            self._io[id(buf)] = self._alloc(buf.nbytes)
        # page-locked staging for the boundary tensors: pageable copies run at a few GB/s
        for _name, (buf, shape, dtype) in list(prog.inputs.items()) + list(prog.outputs.items()):
            ptr, arr = ctx.alloc_host(shape, dtype)
            self._host_allocs.append(ptr)
            self._staging[id(buf)] = arr
        self._calls = []
        for ln in prog.launches:
            func = self._function(ln)
            ptrs, ints, floats = args_for(ln, arena, weights, self._io)
            self._calls.append((ln.layer, func, ln.grid, ln.block, ln.smem,
                                KArgs.make(ptrs, ints, floats)))
        if self.use_cuda_graph and not self.sync_each:
            self.capture()
        if self.cache_path is not None:
            self.timing_cache.save(self.cache_path)

    def capture(self) -> None:
        """Capture every launch into the CUDA graph that ``run_device`` replays (again after
        ``pdl`` changed: the launch attribute is part of the graph)."""
        if self._cuda_graph is not None:
            self._cuda_graph.destroy()
            self._cuda_graph = None
        self._cuda_graph = self._captured()

    def _captured(self, calls: list[Any] | None = None) -> CudaGraph:
        """``calls`` (default: every launch) captured into a new CUDA graph."""
        ctx = self.ctx
        assert ctx is not None
        ctx.synchronize()
        ctx.begin_capture()
        try:
            self._launch_all(calls)
        finally:
            graph = ctx.end_capture()
        return graph

    def _alloc(self, nbytes: int) -> int:
        assert self.ctx is not None
        ptr = self.ctx.alloc(nbytes)
        self._allocs.append(ptr)
        return ptr

    def _function(self, ln: Launch) -> Any:
        if ln.kernel == "memset":
            return None
        if ln.kernel.startswith("conv_mma"):
            assert ln.tactic is not None
            return self.lib.conv_mma(ln.tactic)
        return self.lib.function(ln.kernel, ln.smem)

    def _choose(self, problem: ConvProblem) -> ConvTactic:
        """Timing cache first, then autotuning on this GPU, then the cost model."""
        assert self.ctx is not None
        sig = problem.signature()
        cands = candidates(problem, self.ctx.info.arch)
        names = {t.name: t for t in cands}
        best = self.timing_cache.best(sig, self.arch_key)
        if best in names:
            self.tactic_source[sig] = "cache"
            return names[best]
        if self.autotune and len(cands) > 1:
            self.tactic_source[sig] = "autotune"
            times = self.measure_tactics(problem, cands)
            for name, ms in times.items():
                self.timing_cache.record(sig, self.arch_key, name, ms)
            return names[min(times, key=times.__getitem__)]
        self.tactic_source[sig] = "heuristic"
        return heuristic(problem, self.ctx.info.arch, self.ctx.info.sm_count)

    def measure_tactics(self, p: ConvProblem, cands: list[ConvTactic], reps: int = 10
                        ) -> dict[str, float]:
        """Median-free quick timing: mean ms of ``reps`` launches per tactic, CUDA events."""
        ctx = self.ctx
        assert ctx is not None and mma_eligible(p, ctx.info.arch)
        rng = np.random.default_rng(0)
        x_elems = p.n * p.h * p.w * p.x_channels  # every bundle's channels where bundled
        if p.dtype == "int8":
            x = rng.integers(-127, 128, x_elems, dtype=np.int8)
            w = rng.integers(-127, 128, p.k * p.gemm_k, dtype=np.int8)
        else:
            x = rng.standard_normal(x_elems).astype(np.float16)
            w = (rng.standard_normal(p.k * p.gemm_k) * 0.05).astype(np.float16)
        dq = np.full(p.k, 1e-4, np.float32)  # INT8 dequantisation scales (read by INT8 only)
        sms = ctx.info.sm_count
        partials = max(max(t.workspace_floats(p, sms) for t in cands), 1)
        tiles = max(t.tiles(p) for t in cands)
        bufs = [ctx.alloc(x.nbytes), ctx.alloc(w.nbytes), ctx.alloc(p.gemm_m * p.k * 2),
                ctx.alloc(partials * 4), ctx.alloc(tiles * 4), ctx.alloc(dq.nbytes)]
        try:
            ctx.upload(bufs[0], x)
            ctx.upload(bufs[1], w)
            ctx.upload(bufs[5], dq)
            ctx.memset(bufs[4], 0, tiles * 4)
            out: dict[str, float] = {}
            start, end = ctx.event(), ctx.event()
            for t in cands:
                func = self.lib.conv_mma(t)
                grid = t.grid(p, sms)
                args = KArgs.make([bufs[0], bufs[1], 0, 0, bufs[2], bufs[3], bufs[4], bufs[5]],
                                  p.conv_ints() + p.mma_ints(t.splits),
                                  [0.0, 0.0, 1.0, 1.0])
                for _ in range(2):
                    ctx.launch(func, grid, t.threads, args, t.smem_bytes)
                ctx.record(start)
                for _ in range(reps):
                    ctx.launch(func, grid, t.threads, args, t.smem_bytes)
                ctx.record(end)
                out[t.name] = ctx.elapsed_ms(start, end) / reps  # split/stream-K combine included
                tactic_timed(p.signature(), len(out), len(cands))
            return out
        finally:
            ctx.synchronize()
            for b in bufs:
                ctx.free(b)

    # ----- run -----------------------------------------------------------------------------
    def _launch_all(self, calls: list[Any] | None = None) -> None:
        assert self.ctx is not None
        after_kernel = False  # programmatic launches chain kernel to kernel only
        for layer, func, grid, block, smem, args in self._calls if calls is None else calls:
            try:
                if func is None:  # memset: args.p[0] = pointer, args.i[0] = bytes
                    self.ctx.memset_async(args.p[0], 0, args.i[0])
                else:
                    self.ctx.launch(func, grid, block, args, smem, self.pdl and after_kernel)
                after_kernel = func is not None
                if self.sync_each:
                    self.ctx.synchronize()
            except CudaError as err:
                raise ExecutionError(f"GPU layer '{layer}' failed: {err}") from err

    def run_device(self) -> None:
        """One inference on what is already in the input buffers (no host copies)."""
        if self._cuda_graph is not None:
            self._cuda_graph.launch()
        else:
            self._launch_all()

    def infer_impl(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        prog, ctx = self.program, self.ctx
        assert prog is not None and ctx is not None
        for name, (buf, _shape, _dtype) in prog.inputs.items():
            stage = self._staging[id(buf)]
            np.copyto(stage, feeds[name], casting="same_kind")
            ctx.upload_async(self._io[id(buf)], stage)
        self.run_device()
        for buf, _shape, _dtype in prog.outputs.values():
            ctx.download_async(self._io[id(buf)], self._staging[id(buf)])
        try:
            ctx.synchronize()
        except CudaError as err:
            raise ExecutionError(f"GPU segment '{self.graph.name}' failed: {err} (set "
                                 "TANDEM_GPU_SYNC=1 to find the layer)") from err
        # copies: the staging buffers are overwritten by the next inference
        return {name: self._staging[id(buf)].copy() for name, (buf, _, _) in prog.outputs.items()}

    def profile(self, iterations: int = 10) -> list[dict[str, Any]]:
        """Per-launch device time as the CUDA graph runs it, slowest first.

        The first k launches are captured and timed for every k (fastest of ``iterations``
        replays); launch k costs T(k) - T(k-1). Timing each launch alone from Python would add
        the host's launch gaps to every kernel shorter than them.
        """
        ctx = self.ctx
        assert ctx is not None and self.program is not None
        events = [ctx.event() for _ in range(iterations + 1)]
        prefix = [0.0]
        for k in range(1, len(self._calls) + 1):
            graph = self._captured(self._calls[:k])
            graph.launch()  # warm-up
            ctx.record(events[0])
            for i in range(iterations):
                graph.launch()
                ctx.record(events[i + 1])
            ctx.synchronize()
            prefix.append(min(ctx.elapsed_ms(events[i], events[i + 1])
                              for i in range(iterations)))
            graph.destroy()
        rows = []
        for k, ((layer, *_), ln) in enumerate(zip(self._calls, self.program.launches)):
            rows.append({"layer": layer, "kernel": ln.kernel,
                         "tactic": ln.tactic.name if ln.tactic else "",
                         "ms": round(max(0.0, prefix[k + 1] - prefix[k]), 4)})
        return sorted(rows, key=lambda r: -r["ms"])

    def deactivate_impl(self) -> None:
        if self.ctx is not None:
            try:
                self.ctx.synchronize()
            finally:
                for ptr in self._allocs:
                    self.ctx.free(ptr)
                for ptr in self._host_allocs:
                    self.ctx.free_host(ptr)
        self._allocs, self._calls, self._io = [], [], {}
        self._host_allocs, self._staging = [], {}
        self._cuda_graph = None

    # ----- reports -------------------------------------------------------------------------
    @property
    def peak_activation_bytes(self) -> int:
        """Activation arena bytes (planned by lifetimes) plus the boundary buffers."""
        assert self.program is not None
        io = sum(b.nbytes for b, _, _ in list(self.program.inputs.values())
                 + list(self.program.outputs.values()))
        return self.program.arena_bytes + io

    def summary(self) -> dict[str, Any]:
        assert self.program is not None and self.ctx is not None
        d = describe(self.program)
        d.update(device=self.ctx.info.name, arch=self.arch_key, precision=self.precision,
                 peak_activation_bytes=self.peak_activation_bytes,
                 cuda_graph=self._cuda_graph is not None, programmatic_launch=self.pdl,
                 compile_seconds=round(self.lib.compile_seconds, 2))
        return d
