"""Run the ONNX backend node tests through Tandem's importer and the numpy CPU backend.

Usage::

    .venv/bin/python bench/onnx_node_tests.py            # rewrite docs/onnx-node-tests.md
    .venv/bin/python bench/onnx_node_tests.py --print    # print the report, write nothing

Test cases come from the ``onnx`` package: the shipped ``onnx/backend/test/data/node/*``
directories when the installed wheel has them, otherwise the same cases generated in memory from
``onnx.backend.test.case.node`` (recent wheels ship the generators, not the ``.pb`` files).

A case is *in scope* when every op of its graph is in ``partitioner.onnx_import.SUPPORTED_OPS``.
Tandem imports opsets 7..21; a case written for another opset is re-declared at the nearest
opset in that range only when every op it uses has the very same schema there (ONNX bumps an
op's version when its semantics change, so an unchanged ``since_version`` means an identical
op). Every element type ONNX defines has an IR dtype name (bfloat16, float8, float4, int4, int2
and strings included, through ``ml_dtypes`` / numpy object arrays); cases whose graph inputs or
outputs are not tensors (sequences, optionals) are *not run*, and count as failures in the pass
rate. Everything else in scope runs and is compared with the expected outputs at the ONNX
backend runner's tolerances (``rtol=1e-3, atol=1e-7`` unless the case sets its own; narrow
float types exactly, NaN equal to NaN).

Elements whose value the ONNX specification leaves undefined are not compared: a Cast / CastLike
from a floating-point type to a fixed-point type is "undefined if OOR" (out of range), so the
generators' expected values there are whatever the generating library did. ONNX's int4 / uint4
cases take them from ``ml_dtypes``: 0.5 wraps (two's complement, as ONNX Runtime and Tandem do),
0.7 writes 0. The report names the onnx and ml_dtypes versions it was made with, and
``tests/devices/test_onnx_node_tests.py`` fails, naming both and the command to regenerate it,
when the installed ones differ.
"""

from __future__ import annotations

import argparse
import datetime
import glob
import os
import platform
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import ml_dtypes
import numpy as np
import onnx
from onnx import numpy_helper

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from devices.cpu import CpuRunner, evaluate_node  # noqa: E402
from partitioner.dtypes import NARROW_FLOATS, ONNX_TO_NUMPY, SUB_BYTE_INTS  # noqa: E402
from partitioner.errors import TandemError  # noqa: E402
from partitioner.ir import Graph  # noqa: E402
from partitioner.onnx_import import (  # noqa: E402
    MAX_OPSET,
    MIN_OPSET,
    SUPPORTED_OPS,
    import_onnx,
)
from partitioner.onnx_opset import RENAMED_OPS  # noqa: E402

REPORT = ROOT / "docs" / "onnx-node-tests.md"

# Cases where ONNX Runtime and the ONNX reference implementation disagree; Tandem follows ONNX
# Runtime (the oracle of `tandem compare`), so these fail here by design.
KNOWN_DIVERGENCES = {
    "test_resize_downsample_scales_linear_align_corners": (
        "align_corners with a non-integral output length (4 x 0.6 = 2.4): Tandem and ONNX "
        "Runtime divide by the integer length - 1, the reference by 2.4 - 1 (ORT gives [1, 4])"
    ),
    "test_resize_downsample_scales_cubic_align_corners": (
        "align_corners with a non-integral output length (4 x 0.8 = 3.2): Tandem and ONNX "
        "Runtime divide by the integer length - 1, the reference by 3.2 - 1"
    ),
    "test_attention_4d_causal_fp16_expanded": (
        "one FP16 ulp (0.000488) on values near 1: the expanded graph rounds to FP16 after every "
        "op, and ONNX Runtime too is one ulp off the reference's values"
    ),
}
# Cases no backend can pass as written: the expected values come from the generator's own draw.
_RANDOM_DROPOUT = (
    "ratio > 0 in training mode drops at random: the expected values are the generator's own "
    "numpy draw (np.random.seed(seed), uniform >= ratio), which the spec does not prescribe"
)
KNOWN_UNREPRODUCIBLE = {
    name: _RANDOM_DROPOUT
    for name in ("test_training_dropout", "test_training_dropout_default",
                 "test_training_dropout_mask", "test_training_dropout_default_mask")
}  # fmt: skip
BEGIN = "<!-- BEGIN GENERATED: bench/onnx_node_tests.py -->"
END = "<!-- END GENERATED -->"


@dataclass
class NodeCase:
    name: str
    model: onnx.ModelProto
    data_sets: list[tuple[list[np.ndarray], list[np.ndarray]]]
    rtol: float = 1e-3
    atol: float = 1e-7


@dataclass
class Outcome:
    name: str
    status: str  # "pass" | "fail" | "notrun" (non-tensor values) | "unsupported" (ops)
    reason: str = ""
    narrow: str = ""  # the bfloat16 / float8 / int4 / string ... element types the case uses


@dataclass
class Summary:
    source: str
    total: int
    outcomes: list[Outcome] = field(default_factory=list)
    seconds: float = 0.0

    def of(self, status: str) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == status]

    @property
    def ran(self) -> int:
        return len(self.of("pass")) + len(self.of("fail"))

    @property
    def in_scope(self) -> int:
        return self.ran + len(self.of("notrun"))

    @property
    def pass_rate(self) -> float:
        """Passed over every in-scope case: a case not run counts as a failure."""
        return len(self.of("pass")) / max(self.in_scope, 1)

    @property
    def ran_pass_rate(self) -> float:
        return len(self.of("pass")) / max(self.ran, 1)


# ----- collecting cases ----------------------------------------------------------------------


def _shipped_dir() -> Path:
    return Path(onnx.__file__).parent / "backend" / "test" / "data" / "node"


def collect() -> tuple[str, list[NodeCase]]:
    """Every node test case, from the shipped files or generated in memory."""
    data_dir = _shipped_dir()
    if data_dir.is_dir() and any(data_dir.iterdir()):
        return f"shipped files in {data_dir}", list(_load_shipped(data_dir))
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the generators overflow on purpose in some casts
        cases = collect_testcases(None)
    out = [
        NodeCase(c.name, c.model, _arrays(c.data_sets or []), float(c.rtol), float(c.atol))
        for c in cases
        if c.model is not None
    ]
    return f"onnx {onnx.__version__} test-case generators (onnx.backend.test.case.node)", out


def _arrays(data_sets: list) -> list[tuple[list[np.ndarray], list[np.ndarray]]]:  # type: ignore[type-arg]
    """Some generators store expected values as TensorProtos (e.g. int16 outputs)."""

    def arr(v: object) -> np.ndarray:
        return numpy_helper.to_array(v) if isinstance(v, onnx.TensorProto) else v  # type: ignore[return-value]

    return [([arr(v) for v in ins], [arr(v) for v in outs]) for ins, outs in data_sets]


def _load_shipped(data_dir: Path) -> Iterator[NodeCase]:
    for case_dir in sorted(p for p in data_dir.iterdir() if (p / "model.onnx").exists()):
        model = onnx.load(str(case_dir / "model.onnx"))
        sets = []
        for set_dir in sorted(glob.glob(str(case_dir / "test_data_set_*"))):
            ins = [_read_pb(p) for p in sorted(glob.glob(os.path.join(set_dir, "input_*.pb")))]
            outs = [_read_pb(p) for p in sorted(glob.glob(os.path.join(set_dir, "output_*.pb")))]
            sets.append((ins, outs))
        yield NodeCase(case_dir.name, model, sets)


def _read_pb(path: str) -> np.ndarray:
    tensor = onnx.TensorProto()
    with open(path, "rb") as f:
        tensor.ParseFromString(f.read())
    return numpy_helper.to_array(tensor)


# ----- scoping -------------------------------------------------------------------------------


def _ops(model: onnx.ModelProto) -> set[str]:
    return {
        n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}::{n.op_type}"
        for n in model.graph.node
    }


def _default_opset(model: onnx.ModelProto) -> int:
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx"):
            return int(o.version)
    return int(onnx.defs.onnx_opset_version())


def retarget_opset(model: onnx.ModelProto) -> tuple[onnx.ModelProto | None, str]:
    """The model declared at an opset Tandem imports, when its ops are identical there."""
    opset = _default_opset(model)
    target = min(max(opset, MIN_OPSET), MAX_OPSET)
    if target == opset:
        return model, ""
    changed = []
    for node in model.graph.node:
        op = node.op_type
        try:
            here = onnx.defs.get_schema(op, opset)
            there = onnx.defs.get_schema(op, target)
        except onnx.defs.SchemaError:
            changed.append(op)
            continue
        if here.since_version != there.since_version and not _same_meaning(here, there, node):
            changed.append(f"{op}-{here.since_version}")
    changed = sorted(set(changed))
    if changed:
        return None, (
            f"opset {opset}: {', '.join(changed)} differ(s) from the opset-{target} definition"
        )
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    for o in copy.opset_import:
        if o.domain in ("", "ai.onnx"):
            o.version = target
    return copy, ""


def _same_meaning(
    here: onnx.defs.OpSchema, there: onnx.defs.OpSchema, node: onnx.NodeProto
) -> bool:
    """Does ``node`` mean the same under both schema versions of its op?

    Versions 22-28 of many ops only widened the element types (bfloat16, int4, float8...) or
    added an attribute whose default keeps the old behaviour (Cast ``round_mode``, Range
    ``stash_type``, QuantizeLinear ``precision``...). So: same inputs and outputs, same
    defaults for shared attributes, and the node sets no attribute that only one version has.
    The element types a case really uses are checked apart (``_not_run_types``).
    ``Upsample`` is only *deprecated* after opset 9; the importer translates that definition.
    """
    if [(i.name, int(i.option)) for i in here.inputs] != [
        (i.name, int(i.option)) for i in there.inputs
    ] or [(o.name, int(o.option)) for o in here.outputs] != [
        (o.name, int(o.option)) for o in there.outputs
    ]:
        return False
    used = {a.name for a in node.attribute}
    for name in set(here.attributes) | set(there.attributes):
        a, b = here.attributes.get(name), there.attributes.get(name)
        if a is None or b is None:
            if name in used or (a or b).required:  # type: ignore[union-attr]
                return False
        elif a.default_value.SerializeToString() != b.default_value.SerializeToString():
            return False
    return True


def _not_run_types(model: onnx.ModelProto) -> list[str]:
    """Non-tensor graph values and element types without an IR dtype name, if any."""
    names = []
    values = list(model.graph.input) + list(model.graph.output) + list(model.graph.value_info)
    for vi in values:
        if not vi.type.HasField("tensor_type"):
            names.append(f"{vi.name}: {vi.type.WhichOneof('value')}")
            continue
        elem = vi.type.tensor_type.elem_type
        if elem and elem not in ONNX_TO_NUMPY:
            names.append(onnx.TensorProto.DataType.Name(elem).lower())
    for init in model.graph.initializer:
        if init.data_type not in ONNX_TO_NUMPY:
            names.append(onnx.TensorProto.DataType.Name(init.data_type).lower())
    for n in model.graph.node:
        for a in n.attribute:
            if a.type == onnx.AttributeProto.TENSOR and a.t.data_type not in ONNX_TO_NUMPY:
                names.append(onnx.TensorProto.DataType.Name(a.t.data_type).lower())
            if a.name in ("to", "output_dtype") and a.type == onnx.AttributeProto.INT:
                if a.i and a.i not in ONNX_TO_NUMPY:
                    names.append(onnx.TensorProto.DataType.Name(a.i).lower())
    return sorted(set(names))


def _narrow_types(model: onnx.ModelProto) -> list[str]:
    """Element types of the case's graph values beyond numpy's own (ml_dtypes, strings)."""
    codes = {vi.type.tensor_type.elem_type for vi in
             list(model.graph.input) + list(model.graph.output) + list(model.graph.value_info)}
    codes |= {i.data_type for i in model.graph.initializer}
    for n in model.graph.node:
        codes |= {a.i for a in n.attribute if a.name in ("to", "output_dtype") and
                  a.type == onnx.AttributeProto.INT}  # fmt: skip
    names = [ONNX_TO_NUMPY[c] for c in codes if c in ONNX_TO_NUMPY]
    return sorted(n for n in names if n in NARROW_FLOATS or n in SUB_BYTE_INTS or n == "object")


# ----- running -------------------------------------------------------------------------------


def run_case(case: NodeCase) -> Outcome:
    """Import and run one in-scope case; the outcome says pass / fail (with the reason)."""
    model, why = retarget_opset(case.model)
    if model is None:
        return Outcome(case.name, "fail", why + f"; Tandem imports opsets {MIN_OPSET}..{MAX_OPSET}")
    try:
        graph = import_onnx(model)
    except TandemError as err:
        return Outcome(case.name, "fail", f"import: {_short(err)}{_direct_note(case)}")
    except Exception as err:  # an importer crash is a failure to report, not to hide
        return Outcome(case.name, "fail", f"import crashed: {type(err).__name__}: {_short(err)}")
    in_names = [vi.name for vi in case.model.graph.input]
    init_names = {i.name for i in case.model.graph.initializer}
    in_names = [n for n in in_names if n not in init_names]
    out_names = [vi.name for vi in case.model.graph.output]
    try:
        with CpuRunner(graph) as runner:
            for index, (ins, expected) in enumerate(case.data_sets):
                feeds = {n: np.asarray(v) for n, v in zip(in_names, ins)}
                got = runner.infer(feeds)
                problem = _compare(out_names, got, expected, case.rtol, case.atol,
                                   spec_undefined(case.model, ins))
                if problem:
                    known = KNOWN_DIVERGENCES.get(case.name)
                    why = f"data set {index}: {problem}" + (f"; {known}" if known else "")
                    return Outcome(case.name, "fail", why)
    except TandemError as err:
        known = KNOWN_UNREPRODUCIBLE.get(case.name)
        return Outcome(case.name, "fail", f"run: {_short(err)}" + (f"; {known}" if known else ""))
    except Exception as err:
        return Outcome(case.name, "fail", f"run crashed: {type(err).__name__}: {_short(err)}")
    return Outcome(case.name, "pass")


def _direct_note(case: NodeCase) -> str:
    """For a one-node case the importer refuses: does ``evaluate_node`` alone get it right?"""
    if len(case.model.graph.node) != 1 or not case.data_sets:
        return ""
    onnx_node = case.model.graph.node[0]
    graph = Graph("direct")
    ins = [graph.add_input(f"in{i}", None) if name else None for i, name in
           enumerate(onnx_node.input)]  # fmt: skip
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in onnx_node.attribute}
    attrs = {k: v.decode() if isinstance(v, bytes) else v for k, v in attrs.items()}
    node = graph.add_node(onnx_node.op_type, ins, len(onnx_node.output), attrs, name="n")
    feeds = iter(case.data_sets[0][0])
    args = [next(feeds) if t is not None else None for t in ins]
    try:
        got = evaluate_node(node, args)
    except TandemError as err:
        return f" (evaluate_node on the raw node fails too: {_short(err)})"
    names = [o.name for o in case.model.graph.output]
    problem = _compare(names, dict(zip(names, got)), case.data_sets[0][1], case.rtol, case.atol)
    if problem:
        return f" (evaluate_node on the raw node fails too: {problem})"
    return " (the CPU backend alone passes it: `evaluate_node` on the raw node matches)"


def spec_undefined(model: onnx.ModelProto, inputs: list[np.ndarray]) -> np.ndarray | None:
    """Output elements of a one-node float -> fixed-point Cast / CastLike that fall out of the
    target type's range (NaN and inf included): "undefined if OOR" in the ONNX Cast spec."""
    nodes = model.graph.node
    if len(nodes) != 1 or nodes[0].op_type not in ("Cast", "CastLike") or not inputs:
        return None
    x = np.asarray(inputs[0])
    if not (x.dtype.kind == "f" or x.dtype.name in NARROW_FLOATS):
        return None
    out_type = model.graph.output[0].type.tensor_type.elem_type
    target = np.dtype(ONNX_TO_NUMPY.get(out_type, "object"))
    if target.name in SUB_BYTE_INTS:  # ml_dtypes' int4 / int2 are numpy kind "V"
        info: ml_dtypes.iinfo | np.iinfo = ml_dtypes.iinfo(target)
    elif target.kind in "iu":
        info = np.iinfo(target)
    else:
        return None
    x = x.astype(np.float64)
    with np.errstate(invalid="ignore"):
        inside = np.isfinite(x) & (x >= int(info.min)) & (x <= int(info.max))
    return None if inside.all() else ~inside


def _compare(
    names: list[str], got: dict[str, np.ndarray], expected: list[np.ndarray], rtol: float,
    atol: float, undefined: np.ndarray | None = None,
) -> str:
    for index, (name, want) in enumerate(zip(names, expected)):
        if name not in got:
            return f"output '{name}' missing"
        have = np.asarray(got[name])
        want = np.asarray(want)
        if have.dtype != want.dtype:
            return f"output '{name}': dtype {have.dtype}, expected {want.dtype}"
        if have.shape != want.shape:
            return f"output '{name}': shape {have.shape}, expected {want.shape}"
        if index == 0 and undefined is not None and undefined.shape == want.shape:
            have, want = have[~undefined], want[~undefined]  # values the spec leaves open
        if want.dtype.name in NARROW_FLOATS:
            # ml_dtypes floats: compare the values they stand for, NaN == NaN (float8 casts
            # produce NaN on purpose); rounding is exact in these types, so compare exactly
            have, want = have.astype(np.float32), want.astype(np.float32)
            bad = ~((have == want) | (np.isnan(have) & np.isnan(want)))
            if bad.any():
                return f"output '{name}': {int(bad.sum())}/{want.size} values differ"
        elif want.dtype.kind in "fc":
            bad = ~np.isclose(have, want, rtol=rtol, atol=atol, equal_nan=True)
            if bad.any():
                diff = np.abs(have.astype(np.float64) - want.astype(np.float64))
                return (
                    f"output '{name}': {int(bad.sum())}/{want.size} values off, "
                    f"max abs diff {np.nanmax(np.where(bad, diff, 0)):.3g}"
                )
        elif not np.array_equal(have, want):
            return f"output '{name}': {int((have != want).sum())}/{want.size} values differ"
    return ""


def _short(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text if len(text) <= 200 else text[:197] + "..."


def run_all(limit_to: set[str] | None = None) -> Summary:
    start = time.perf_counter()
    source, cases = collect()
    summary = Summary(source, len(cases))
    for case in cases:
        if limit_to is not None and case.name not in limit_to:
            continue
        ops = _ops(case.model)
        if not ops <= SUPPORTED_OPS | set(RENAMED_OPS):
            summary.outcomes.append(
                Outcome(case.name, "unsupported",
                        ", ".join(sorted(ops - SUPPORTED_OPS - set(RENAMED_OPS))))
            )
            continue
        types = _not_run_types(case.model)
        if types:
            reason = f"{', '.join(types)}: Tandem's IR holds tensors only"
            summary.outcomes.append(Outcome(case.name, "notrun", reason))
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            outcome = run_case(case)
        outcome.narrow = ", ".join(_narrow_types(case.model))
        summary.outcomes.append(outcome)
    summary.seconds = time.perf_counter() - start
    return summary


# ----- report --------------------------------------------------------------------------------


def render(summary: Summary) -> str:
    passed, failed, notrun = summary.of("pass"), summary.of("fail"), summary.of("notrun")
    narrow = [o for o in summary.outcomes if o.narrow and o.status in ("pass", "fail")]
    narrow_pass = sum(o.status == "pass" for o in narrow)
    lines = [
        BEGIN,
        "",
        f"Generated by `.venv/bin/python bench/onnx_node_tests.py` on "
        f"{datetime.date.today().isoformat()} ({platform.machine()}, Python "
        f"{platform.python_version()}, numpy {np.__version__}, onnx {onnx.__version__}, "
        f"ml_dtypes {ml_dtypes.__version__}); "
        f"took {summary.seconds:.0f} s.",
        "",
        f"- Source: {summary.source}; {summary.total} node test cases.",
        f"- In scope (every op in `SUPPORTED_OPS`): **{summary.in_scope}**.",
        f"- Passed **{len(passed)}** of the {summary.in_scope} in-scope cases -> pass rate "
        f"**{100 * summary.pass_rate:.1f} %** (a case not run counts as a failure).",
        f"- Ran {summary.ran} ({len(passed)} passed, {len(failed)} failed: "
        f"{100 * summary.ran_pass_rate:.1f} % of those run); not run {len(notrun)} (graph values "
        "that are not tensors).",
        f"- Of the cases run, {len(narrow)} use bfloat16 / float8 / float4 / int4 / int2 / string "
        f"element types ({narrow_pass} pass).",
        f"- Out of scope (an op outside `SUPPORTED_OPS`): {len(summary.of('unsupported'))}.",
        "",
        f"Cases written for an opset outside {MIN_OPSET}..{MAX_OPSET} run re-declared at the "
        "nearest opset in that range when every op they use means the same there (same inputs, "
        "outputs and attribute "
        "defaults, no attribute set that only one version has); otherwise they fail with that "
        "reason. Outputs are compared at the ONNX backend runner's tolerances (rtol 1e-3, atol "
        "1e-7, or the case's own); bfloat16 / float8 / float4 outputs exactly, NaN equal to NaN. "
        "Values the spec leaves undefined are not compared: a float -> fixed-point Cast / "
        "CastLike out of the target's range (the generators take them from ml_dtypes, whose "
        "int4 conversion wraps in 0.5 and writes 0 in 0.7).",
        "",
        "### Failures",
        "",
        "| test | reason |",
        "|---|---|",
    ]
    lines += [f"| `{o.name}` | {o.reason.replace('|', '/')} |" for o in failed] or ["| - | - |"]
    lines += ["", "### Not run", "", "| test | reason |", "|---|---|"]
    lines += [f"| `{o.name}` | {o.reason.replace('|', '/')} |" for o in notrun] or ["| - | - |"]
    lines += ["", END, ""]
    return "\n".join(lines)


def write_report(summary: Summary, path: Path = REPORT) -> None:
    body = render(summary)
    if path.exists():
        text = path.read_text(encoding="utf-8")
        if BEGIN in text and END in text:
            head, rest = text.split(BEGIN, 1)
            tail = rest.split(END, 1)[1].lstrip("\n")
            path.write_text(head + body + tail, encoding="utf-8")
            return
    header = (
        "# ONNX backend node tests on the CPU reference backend\n\n"
        "The section below is generated; edit `bench/onnx_node_tests.py`, not this text.\n\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + body, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--print", action="store_true", help="print the report, write nothing")
    parser.add_argument("tests", nargs="*", help="only these test names")
    args = parser.parse_args(argv)
    summary = run_all(set(args.tests) if args.tests else None)
    if args.print or args.tests:
        print(render(summary))
    else:
        write_report(summary)
        print(
            f"{len(summary.of('pass'))}/{summary.in_scope} in-scope cases passed "
            f"({100 * summary.pass_rate:.1f} %; {len(summary.of('notrun'))} not run); "
            f"wrote {REPORT.relative_to(ROOT)}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
