#!/usr/bin/env bash
# One full device call: environment facts, the GPU tests, then the benchmark; logs under $OUT.
#   bench/gpu_device_run.sh [tests|bench|all] [pytest -k expression]
#   BENCH_ARGS='--models zoo --precisions fp16,int8 --peers eager' bench/gpu_device_run.sh bench
#   CONF_SOURCES=timm,ultralytics CONF_ARGS=--no-compile bench/gpu_device_run.sh conformance
#     the GPU side of the conformance suite (bench/conformance.py --gpu-only): exports with the
#     machine's own torch into build/conf-device (kept while the machine stays warm; paddle's
#     files are carried there, the machine has no paddle)
#   GB_TAG=b1-zoo GB_ARGS='--models zoo --batches 1' bench/gpu_device_run.sh gpubench
#     issue #19's benchmark (bench/gpu_vs_torch.py: zoo + conformance models, --peers): the
#     conformance exports are kept in build/gpu-bench while the machine stays warm; JSON, .md
#     and the log come back as $OUT/gpubench-$GB_TAG.*; merge calls with bench/gpu_bench_report.py
#   CT_ARGS='--batch 32' bench/gpu_device_run.sh convtiles
#     issue #19 item 3: every conv tile on ResNet-50's batch-32 shapes vs cuDNN (bench/conv_tiles.py)
# INT8 calibration caches (TensorRT format) come back in $OUT/calib/<model>.calib.
set -u
MODE=${1:-all}
KEXPR=${2:-}
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TANDEM_CACHE_DIR=/tmp/tandem-cache
# The lent GPU has only CUDA 13's NVRTC; the tests that cross-build for Orin (CUDA 12.6) need 12's.
# Carry it (here: pip download nvidia-cuda-nvrtc-cu12==<the lock's pin>, then
# tar -cJf .whl/nvrtc12.tar.xz nvidia/cuda_nvrtc/lib/{libnvrtc.so.12,libnvrtc-builtins.so.12.9}).
if [ -z "${TANDEM_NVRTC12_LIB:-}" ] && [ -f .whl/nvrtc12.tar.xz ]; then
  mkdir -p /tmp/nv12 && tar -xJf .whl/nvrtc12.tar.xz -C /tmp/nv12 \
    && export TANDEM_NVRTC12_LIB=/tmp/nv12/nvidia/cuda_nvrtc/lib/libnvrtc.so.12
fi
{
  date -u; nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,memory.total --format=csv
  python3 -c "import cuda.bindings, cuda.core, numpy, onnx; print('cuda-bindings', cuda.bindings.__version__, 'cuda-core', cuda.core.__version__, 'numpy', numpy.__version__, 'onnx', onnx.__version__)"
  python3 -c "import torch; print('torch', torch.__version__, 'cudnn', torch.backends.cudnn.version())"
  python3 -c "from gpu_kernels.compile import available_majors, load_nvrtc; m=available_majors(); print('nvrtc', m, [load_nvrtc(x).path for x in m])"
} 2>&1 | tee "$OUT/env.txt"
if [ "$MODE" = tests ] || [ "$MODE" = all ]; then
  ARGS=(-q -rfE -p no:cacheprovider -m gpu tests/devices/test_gpu_ops.py tests/gpu_kernels/test_conv_tactics_gpu.py
        tests/devices/test_gpu_models.py tests/devices/test_gpu_int8.py tests/tandem/test_host_plan_gpu.py
        tests/tandem/test_dynamic_shapes.py tests/tandem/test_dynamic_dims.py tests/tandem/test_api.py
        tests/tandem/test_api_trt.py tests/devices/test_concurrent.py tests/targets/test_catalog.py
        tests/gpu_kernels/test_lowering_se_sim.py tests/bench/test_gpu_bench.py
        tests/tandem/test_tactic_progress.py tests/devices/test_concurrent_bench.py
        tests/gpu_kernels/test_lowering_concat_sim.py tests/devices/test_concurrent_stages.py
        tests/gpu_kernels/test_lowering_detect_sim.py tests/gpu_kernels/test_lowering_deconv_sim.py
        tests/gpu_kernels/test_lowering_split_sim.py tests/targets/test_host_indices.py
        tests/gpu_kernels/test_lowering_depthwise_sim.py)
  [ -n "$KEXPR" ] && ARGS+=(-k "$KEXPR")
  # the exported-model GPU tests export with the machine's own torch (as the conformance mode).
  # -k: test_gpu_bench.py's runs catch SIGTERM (to write what they measured), so the limit
  # needs a KILL behind it (568 tests took 8 min 34 s on 2026-12-02).
  TANDEM_EXPORT_PYTHON=${TANDEM_EXPORT_PYTHON:-python3} HF_HUB_OFFLINE=1 \
  timeout -k 20 ${TEST_TIMEOUT:-540} python3 -m pytest "${ARGS[@]}" 2>&1 | tee "$OUT/tests.txt" | tail -60
fi
if [ "$MODE" = bench ] || [ "$MODE" = all ]; then
  timeout ${BENCH_TIMEOUT:-500} python3 bench/gpu_vs_torch.py --out "$OUT/bench.json" --calib-cache "$OUT/calib" ${BENCH_ARGS:-} 2>&1 | tee "$OUT/bench.txt" | tail -60
fi
if [ "$MODE" = conformance ]; then
  TAG=${CONF_TAG:-$(echo "${CONF_SOURCES:-all}" | tr ',' '-')}
  TANDEM_EXPORT_PYTHON=python3 HF_HUB_OFFLINE=1 timeout ${CONF_TIMEOUT:-540} python3 bench/conformance.py \
    --gpu-only ${CONF_SOURCES:+--sources "$CONF_SOURCES"} --cache build/conf-device \
    --budget-s ${CONF_BUDGET:-420} --iters ${CONF_ITERS:-20} --out-json "$OUT/conformance-gpu-$TAG.json" \
    ${CONF_ARGS:-} 2>&1 | tee "$OUT/conformance-$TAG.txt" | tail -90
fi
if [ "$MODE" = gpubench ]; then
  TAG=${GB_TAG:-run}
  TANDEM_EXPORT_PYTHON=python3 HF_HUB_OFFLINE=1 timeout ${GB_TIMEOUT:-560} python3 bench/gpu_vs_torch.py \
    --out "$OUT/gpubench-$TAG.json" --cache build/gpu-bench --budget-s ${GB_BUDGET:-470} \
    ${GB_ARGS:-} 2>&1 | tee "$OUT/gpubench-$TAG.txt" | tail -80
fi
if [ "$MODE" = convtiles ]; then
  timeout ${CT_TIMEOUT:-560} python3 bench/conv_tiles.py --out "$OUT/conv_tiles.json" ${CT_ARGS:-} \
    2>&1 | tee "$OUT/conv_tiles.txt" | tail -80
fi
if [ "$MODE" = ncu ]; then
  # Nsight Compute on conv_tiles.py's launches (issue 19 item 3: where a tile's time goes), e.g.
  #   CT_ARGS="--shapes 'h28 w28 c128 k128 p28' --precisions f16 --extra mma_256x128_w4x2_s3_k1_f2"
  # kernels in launch order; -v prints which tactic each launch is (check launch + --reps 1).
  eval "set -- ${CT_ARGS:-}"
  timeout ${NCU_TIMEOUT:-420} ncu --clock-control none -k "regex:${NCU_KERNELS:-conv_mma|sm90|sm80|xmma|cutlass}" \
    --launch-count ${NCU_COUNT:-60} --section SpeedOfLight --section MemoryWorkloadAnalysis \
    --section MemoryWorkloadAnalysis_Tables --section ComputeWorkloadAnalysis --section SchedulerStats \
    --section WarpStateStats --section Occupancy --section LaunchStats --section InstructionStats \
    ${NCU_ARGS:-} python3 bench/conv_tiles.py --out "$OUT/ncu_tiles.json" --reps 1 -v "$@" \
    > "$OUT/ncu.txt" 2>&1
  echo "ncu rc $?"; grep -E "launching|conv_mma|sm90|Duration|Compute \(SM\) Throughput|Memory Throughput" "$OUT/ncu.txt" | head -120
fi
