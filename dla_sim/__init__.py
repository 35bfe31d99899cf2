"""The bundled DLA emulator: loadables, DLA numerics, calibration, latency model.

Modules, bottom up (each imports only those above it and ``partitioner``):

- ``hardware``    -- ``DlaConfig`` per DLA version (1 = Xavier, 2 = Orin), ``dla_config(v)``.
- ``formats``     -- kDLA_LINEAR / kCHW16 / kCHW32 / kDLA_HWC4 sizes and packing, CBUF check.
- ``numerics``    -- round half away from zero, saturation, symmetric INT8 quantisation.
- ``fusion``      -- which engine runs an op; grouping layers into engine operations.
- ``loadable``    -- ``Loadable`` and its versioned binary format (``LOADABLE.md``).
- ``compile_context`` -- the state one compilation shares; ``DlaCompileError``.
- ``conv_lowering``   -- convolution-core ops: geometry, folding, weight quantisation, CBUF.
- ``engine_lowering`` -- SDP post-ops, PDP, Rubik and BDMA parameters.
- ``compiler``    -- ``compile_loadable(graph, precision, dla_version, scales, name)``.
- ``execute``     -- ``run_loadable(loadable, feeds)`` with DLA numerics.
- ``latency``     -- ``predict_layer_seconds``, ``predict_graph``, ``predict_loadable``.
- ``calibration`` -- entropy / min-max / percentile calibrators, TensorRT calibration cache.

Q/DQ (QAT) models become plain graphs plus per-tensor scales in ``partitioner.passes.qdq``:
a whole-model pass, run before placement, not an emulator concern.
"""
