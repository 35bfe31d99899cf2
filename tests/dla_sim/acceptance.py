"""Shared body of the zoo acceptance checks (tests) and the accuracy benchmark (bench/)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from devices.calibration import activations as capture_activations
from devices.cpu import CpuRunner, evaluate_node
from dla_sim.calibration import calibrate, random_batches
from partitioner.onnx_import import import_onnx
from partitioner.passes.pipeline import simplify
from tandem.zoo import build_model
from tests.dla_sim import hybrid

CALIBRATION_INPUTS = 32


@dataclass
class Accuracy:
    model: str
    dla_layers: int
    layers: int
    loadables: int
    fp16: dict[str, float]
    int8: dict[str, float]


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-300))


def measure(model: str, resolution: int = 64, dla_version: int = 2) -> Accuracy:
    """FP16 and INT8 (entropy, 32 random inputs) cosine vs the FP32 reference, per output."""
    graph = simplify(import_onnx(build_model(model, batch=1, resolution=resolution)), evaluate_node)
    inputs = {t.name: (t.static_shape(), "float32") for t in graph.inputs}
    feeds = next(random_batches(inputs, 1, seed=123))
    with CpuRunner(graph) as cpu:
        ref = cpu.infer(feeds)
    fp16 = hybrid.plan(graph, "fp16", dla_version=dla_version)
    out16 = hybrid.run(graph, fp16, feeds)
    # Calibrate the tensors the DLA stores (fused intermediates never reach memory).
    names = {n for lo in fp16.loadables for n in lo.tensors}
    activations = capture_activations(graph, random_batches(inputs, CALIBRATION_INPUTS, seed=1))
    scales = calibrate(activations, "entropy", names=names)
    int8 = hybrid.plan(graph, "int8", scales, dla_version=dla_version)
    out8 = hybrid.run(graph, int8, feeds)
    return Accuracy(
        model,
        fp16.dla_layers,
        len(graph.nodes),
        len(fp16.loadables),
        {k: cosine(out16[k], v) for k, v in ref.items()},
        {k: cosine(out8[k], v) for k, v in ref.items()},
    )
