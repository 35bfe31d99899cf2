"""A plugin module as users write one: registers ``custom::Swish2`` (``x * sigmoid(beta * x)``)
on import. Loaded by the plugin tests through ``--plugin`` / ``TANDEM_PLUGINS``."""

from __future__ import annotations

import numpy as np

from partitioner.plugins import PLUGINS

CUDA_SOURCE = r"""
extern "C" __global__ void swish2(const float* x, float* y, float beta, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = x[i] / (1.0f + __expf(-beta * x[i]));
}
"""


def swish2(x: np.ndarray, beta: float = 1.0) -> np.ndarray:
    x32 = x.astype(np.float32)
    return (x32 / (1.0 + np.exp(-np.float32(beta) * x32))).astype(x.dtype)


def same_shape(shape: tuple, beta: float = 1.0) -> tuple:
    return shape


PLUGINS.register(
    "Swish2",
    "custom",
    version=1,
    reference=swish2,
    infer_shape=same_shape,
    cuda_source=CUDA_SOURCE,
    support={"gpu": ["fp32", "fp16"], "dla": False},
)
