"""What every conformance export script shares: the command line, the seeded weights, and the
files one export leaves (written atomically, so an interrupted export never leaves a model under
its final name).

An export script (``tests/conformance/export_<source>.py``) runs in its exporter's own venv
(``.venv-export`` for torch-based exporters, ``.venv-paddle`` for paddle2onnx) and never in the
test process. For each model NAME it writes into ``--out DIR``:

- ``NAME.onnx``  the file the exporter wrote;
- ``NAME.npz``   the seeded inputs under their ONNX input names and the framework's own outputs
  under their ONNX output names;
- ``NAME.json``  :class:`Meta`: which exporter, its version, the opset, the dims a build must fix.

This module imports numpy only (the paddle venv has no torch); ``randomise_torch`` imports torch
when it is called.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Meta:
    """What the harness needs to know of one exported model besides the file."""

    source: str  # "torchvision", "ultralytics", "transformers", "paddle", ...
    exporter: str  # e.g. "torch.onnx.export(dynamo=False) torch 2.14.1"
    opset: int
    # dims that are dynamic in the file and the value the saved inputs bind them to, by name
    # ("batch": 1, "height": 48); a build passes them as --dim NAME=VALUE
    dims: dict[str, int] = field(default_factory=dict)
    notes: str = ""


def write_export(
    out: Path,
    name: str,
    onnx_bytes: bytes | None,
    inputs: Mapping[str, np.ndarray],
    outputs: Mapping[str, np.ndarray],
    meta: Meta,
    onnx_file: Path | None = None,
) -> Path:
    """Write NAME.onnx (from ``onnx_bytes`` or by moving ``onnx_file``), NAME.npz, NAME.json;
    the .onnx last, so its presence means the export is complete."""
    out.mkdir(parents=True, exist_ok=True)
    arrays = {**{k: np.asarray(v) for k, v in inputs.items()},
              **{k: np.asarray(v) for k, v in outputs.items()}}
    _atomic(out / f"{name}.npz", lambda p: np.savez(p, **arrays), suffix=".npz")
    _atomic(out / f"{name}.json", lambda p: p.write_text(json.dumps(asdict(meta), indent=1),
                                                        encoding="utf-8"))
    path = out / f"{name}.onnx"
    if onnx_bytes is not None:
        _atomic(path, lambda p: p.write_bytes(onnx_bytes))
    else:
        assert onnx_file is not None
        os.replace(onnx_file, path)
    return path


def _atomic(path: Path, write: Callable[[Path], Any], suffix: str = "") -> None:
    tmp = path.with_name(f".{path.name}.tmp{suffix}")
    write(tmp)
    os.replace(tmp, path)


def seeded_array(shape: tuple[int, ...], seed: int, dtype: Any = np.float32) -> np.ndarray:
    """Standard-normal input data (integers: token ids in [0, 100))."""
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind in "iu":
        return rng.integers(0, 100, size=shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def randomise_torch(model: Any, seed: int) -> None:
    """Seeded weights with a realistic spread: He-normal convs / linears, small biases, and
    non-trivial norm statistics (so BN folding and norms are exercised, not identities)."""
    import torch
    from torch import nn

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv1d | nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
                transposed = isinstance(m, nn.ConvTranspose2d)
                fan_in = m.in_channels if transposed else m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
                if m.bias is not None:
                    m.bias.copy_(torch.rand(m.bias.shape, generator=gen) * 0.2 - 0.1)
            elif isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=gen) * 0.6 + 0.4)
                m.bias.copy_(torch.rand(n, generator=gen) * 0.2 - 0.1)
                m.running_mean.copy_(torch.rand(n, generator=gen) * 0.2 - 0.1)
                m.running_var.copy_(torch.rand(n, generator=gen) + 0.6)
            elif isinstance(m, nn.LayerNorm | nn.GroupNorm) and m.weight is not None:
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) * 0.6 + 0.7)
                m.bias.copy_(torch.rand(m.bias.shape, generator=gen) * 0.2 - 0.1)


@contextlib.contextmanager
def no_network(what: str) -> Iterator[None]:
    """Inside, every socket connect and name lookup raises; on leaving, raise if any was tried.
    Exports are built from installed code only: a library that quietly fetches a font,
    weights or a pip package must fail the export loudly (even where it swallows the OSError),
    not work only where the network is up. Restored afterwards, so a benchmark that calls
    ``build`` keeps its sockets (torch.compile's workers)."""
    import socket

    attempts: list[str] = []

    def refuse(*args: Any, **kwargs: Any) -> Any:
        attempts.append(repr(args)[:200])
        raise OSError(f"network access refused while building {what}: {args!r}")

    names = ("getaddrinfo", "create_connection")
    saved = {n: getattr(socket, n) for n in names}
    saved_methods = {n: getattr(socket.socket, n) for n in ("connect", "connect_ex")}
    for n in names:
        setattr(socket, n, refuse)
    for n in saved_methods:
        setattr(socket.socket, n, refuse)
    try:
        yield
    finally:
        for n, f in saved.items():
            setattr(socket, n, f)
        for n, f in saved_methods.items():
            setattr(socket.socket, n, f)
    if attempts:
        raise RuntimeError(f"{what} tried the network: {attempts}")


def calibrate_batchnorm(model: Any, inputs: tuple[Any, ...]) -> None:
    """Set every BatchNorm's running statistics to what the seeded input gives (one forward
    pass in training mode, cumulative averaging): random weights in re-parameterisable
    multi-branch blocks (MobileOne sums six branches a block) otherwise grow activations past
    1e9, which says nothing about FP16 on a trained network and overflows it."""
    import torch
    from torch import nn

    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average: after one pass, the batch's statistics
    model.train()
    with torch.no_grad():
        model(*inputs)
        for m in norms:
            # a channel nearly constant on this one input would be scaled by up to 1/sqrt(eps)
            # and amplify rounding noise: floor its variance at a quarter of the layer's median
            floor = 0.25 * float(m.running_var.median())
            m.running_var.clamp_(min=max(floor, float(m.eps)))
    model.eval()


def main(
    models: Mapping[str, Any],
    export: Callable[[str, Path, int], Any],
    description: str,
    argv: list[str] | None = None,
    setup: Callable[[], None] | None = None,
    resizable: bool = False,
) -> int:
    """The command line every export script has: ``--list``; ``--out DIR [NAME ...]``;
    ``resizable`` scripts also take ``--batch N --size S`` (an image side; the benchmark's
    realistic inputs, bench/gpu_bench_models.py), passed to ``export`` as keywords."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("names", nargs="*", help="models to export (default: all)")
    parser.add_argument("--out", type=Path, help="output folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--list", action="store_true", help="print the model names and exit")
    parser.add_argument("--batch", type=int, help="batch of the exported input (default 1)")
    parser.add_argument("--size", type=int, help="image side of the input (default: the model's)")
    args = parser.parse_args(argv)
    shape = {k: v for k, v in (("batch", args.batch), ("size", args.size)) if v is not None}
    if shape and not resizable:
        parser.error("--batch/--size: this script's models are exported at their fixed inputs")
    if any(v < 1 for v in shape.values()):
        parser.error(f"--batch/--size must be positive, got {shape}")
    if args.list:
        print("\n".join(models))
        return 0
    if args.out is None:
        parser.error("--out DIR is required")
    unknown = [n for n in args.names if n not in models]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; known: {', '.join(models)}")
    args.out.mkdir(parents=True, exist_ok=True)
    if setup is not None:
        setup()
    failed = []
    for name in args.names or models:
        if (args.out / f"{name}.onnx").exists():
            continue  # an earlier run exported it (the .onnx is written last)
        try:
            export(name, args.out, args.seed, **shape)
        except Exception as err:  # one model's exporter failure must not hide the others
            failed.append(name)
            print(f"{name}: export failed: {type(err).__name__}: {err}", file=sys.stderr)
    return 1 if failed else 0
