"""The byte-identity check: sha256 of the plan built for every zoo model, precision and target.

Usage::

    .venv/bin/python bench/plan_digests.py            # rebuild and compare with the record
    .venv/bin/python bench/plan_digests.py --write    # rewrite tests/data/plan_digests.json

Every zoo model (``tandem zoo --list``) is built at a small resolution (the whole set takes about
80 s of CPU on the 2-core CI machine, most of it INT8 calibration) at FP32, FP16 and INT8 for
``orin-agx-64gb`` and ``xavier-agx``, through the command line's own parser and build function
(``tandem build``), INT8 with seeded random calibration as ``--calib-random`` does (once per
model: see :func:`build_bytes`). The record names the NVRTC versions that compiled the cubins
inside the plans: another NVRTC makes other cubins, so a comparison is
only meaningful with the same ones (``tests/targets/test_plan_digests.py`` skips otherwise).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECORD = ROOT / "tests" / "data" / "plan_digests.json"
TARGETS = ("orin-agx-64gb", "xavier-agx")
PRECISIONS = ("fp32", "fp16", "int8")
CALIB_RANDOM = 2
REGENERATE = "python bench/plan_digests.py --write"

# The smallest resolution each model accepts (its zoo rule), except YOLOv5s at 64 so that its
# coarsest detection scale is 2x2 rather than a degenerate 1x1.
RESOLUTIONS = {
    "resnet18": 32,
    "resnet50": 32,
    "mobilenetv2": 32,
    "mobilenetv3-small": 32,
    "yolov5s": 64,
    "ssd-mobilenet": 64,
    "unet-small": 32,
    "vit-tiny": 32,
}


@dataclass(frozen=True)
class Case:
    model: str
    resolution: int
    precision: str
    target: str

    @property
    def key(self) -> str:
        return f"{self.model}@{self.resolution}/{self.precision}/{self.target}"


def cases() -> list[Case]:
    """Every zoo model at every precision on every target; a new zoo model needs a resolution."""
    from tandem.zoo import ZOO_MODELS

    missing = sorted(set(ZOO_MODELS) - set(RESOLUTIONS))
    if missing:
        raise SystemExit(f"plan_digests.py: add a resolution for zoo model(s) {missing}")
    return [
        Case(name, RESOLUTIONS[name], precision, target)
        for name in ZOO_MODELS
        for target in TARGETS
        for precision in PRECISIONS
    ]


def nvrtc_versions() -> dict[str, str]:
    """The NVRTC each target's cubins are compiled with (``major.minor``), by target."""
    from gpu_kernels.compile import choose_major, load_nvrtc
    from targets.build import resolve_target

    out = {}
    for name in TARGETS:
        target = resolve_target(name, None)
        assert target.gpu is not None
        major = choose_major(target.gpu.arch, target.nvrtc_major)
        out[name] = ".".join(map(str, load_nvrtc(major).version))
    return out


def build_bytes(case: Case, folder: Path) -> bytes:
    """The plan ``tandem build MODEL --target T --PREC`` writes.

    INT8 calibrates on ``--calib-random N`` and writes ``--calib-cache``, which a model's next
    INT8 build reads: the entropy calibration is most of the time here, its scales do not depend
    on the target, and a cache read back gives the very plan the fresh scales give (the record
    was made both ways, equal)."""
    import onnx

    from devices.plan import encode_plan
    from tandem.cli import build_parser
    from tandem.commands._args import build_request
    from tandem.zoo import build_model
    from targets.build import build

    model = folder / f"{case.model}-{case.resolution}.onnx"
    if not model.exists():
        onnx.save(build_model(case.model, 1, case.resolution), model)
    argv = ["build", str(model), "--target", case.target, f"--{case.precision}", "-o", "x.plan"]
    if case.precision == "int8":
        cache = model.with_suffix(".calib")
        argv += ["--calib-cache", str(cache)]
        if not cache.exists():
            argv += ["--calib-random", str(CALIB_RANDOM)]
    _, plan = build(build_request(build_parser().parse_args(argv)))
    return encode_plan(plan)


def digests(selected: list[Case] | None = None) -> Iterator[tuple[Case, str, float]]:
    """(case, sha256 of its plan, seconds) for each case, in order."""
    with tempfile.TemporaryDirectory(prefix="plan-digests-") as tmp:
        for case in selected if selected is not None else cases():
            start = time.perf_counter()
            data = build_bytes(case, Path(tmp))
            yield case, hashlib.sha256(data).hexdigest(), time.perf_counter() - start


def record(found: dict[str, str]) -> dict[str, object]:
    return {
        "regenerate": REGENERATE,
        "calib_random": CALIB_RANDOM,
        "nvrtc": nvrtc_versions(),
        "plans": [
            {
                "model": c.model,
                "resolution": c.resolution,
                "precision": c.precision,
                "target": c.target,
                "sha256": found[c.key],
            }
            for c in cases()
        ],
    }


def changed(expected: dict[str, object], found: dict[str, str]) -> list[str]:
    """Keys of the plans whose digest differs from the record (or that it lacks)."""
    plans = expected["plans"]
    assert isinstance(plans, list)
    want = {Case(p["model"], p["resolution"], p["precision"], p["target"]).key: p["sha256"]
            for p in plans}
    return sorted(k for k in set(want) | set(found) if want.get(k) != found.get(k))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"rewrite {RECORD.name}")
    args = parser.parse_args(argv)
    found: dict[str, str] = {}
    start = time.perf_counter()
    for case, digest, seconds in digests():
        found[case.key] = digest
        print(f"{case.key:40s} {digest[:16]}  {seconds:5.1f} s", file=sys.stderr, flush=True)
    print(f"{len(found)} plans in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    if args.write:
        RECORD.parent.mkdir(parents=True, exist_ok=True)
        RECORD.write_text(json.dumps(record(found), indent=1) + "\n", encoding="utf-8")
        print(f"wrote {RECORD}")
        return 0
    diff = changed(json.loads(RECORD.read_text(encoding="utf-8")), found)
    for key in diff:
        print(f"changed: {key}")
    return 1 if diff else 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
