"""The project's own CUDA kernels, NVRTC compilation per arch, tactics, autotuning.

- ``*.cu`` / ``common.cuh``: the kernels (header-free CUDA C++; one ``KArgs`` argument each).
- ``compile.compile_kernel(source, arch, options, nvrtc_major)``: NVRTC -> cubin, disk-cached;
  picks the NVRTC library per CUDA major (sm_72 needs CUDA <= 12). Runs without a GPU.
- ``catalog``: which module defines which kernel; ``all_modules()`` is what CI cross-compiles.
- ``cubin``: registers and stack bytes of each compiled kernel (occupancy, without a GPU).
- ``tactics``: convolution tile configurations, candidates per problem, cost-model heuristic.
- ``timing_cache.TimingCache``: measured tactic times keyed by (layer signature, arch), JSON.
- ``lowering.lower(graph, precision, arch)``: graph -> kernel launches + planned memory (no GPU).
- ``driver`` / ``library``: cuda-python driver wrapper (``check()``), modules, launches, graphs.
The runner that executes a lowered graph is ``devices.gpu.GpuRunner``.
"""
