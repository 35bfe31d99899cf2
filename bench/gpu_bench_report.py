"""Tables and issue #19's acceptance lines from bench/gpu_vs_torch.py's JSON.

    python bench/gpu_bench_report.py RUN.json [RUN2.json ...] [--out-md FILE]

Several runs (device calls of a few models each) merge into one report: a (model, batch,
precision) row of a later run (by its date) replaces an earlier one; every run's date, device
and command are listed. The acceptance lines (FP16, from the ``b2b_ms`` / ``p50_ms`` numbers):

- batch 1: Tandem's GPU time (b2b) <= torch.compile reduce-overhead's on at least 80 % of the
  models, and Tandem's p50 <= 0.8x reduce-overhead's on all of them;
- batch 32: Tandem's throughput (batch / b2b) >= the best of eager and reduce-overhead on
  resnet50, mobilenetv2, efficientnet_b0 (tv-efficientnet_b0), yolov5s and unet-small.

Each is "pass", "FAIL" (the measured rows already break it) or "incomplete" (they keep it, but a
model lacks a number the line needs: not run, an error, a compile over its cap).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: the repository's packages
    sys.path.insert(0, str(ROOT))

B1_SHARE = 0.8  # b2b <= reduce-overhead on at least this share of the batch-1 models
P50_RATIO = 0.8  # p50 <= this times reduce-overhead's, on every batch-1 model
B32_MODELS = ("resnet50", "mobilenetv2", "tv-efficientnet_b0", "yolov5s", "unet-small")
RO, EAGER, MAX_AUTOTUNE = "compile_reduce-overhead", "eager", "compile_max-autotune"


def _ms(row: dict[str, Any], peer: str, key: str = "b2b_ms") -> float | None:
    res = row.get(peer)
    return res.get(key) if isinstance(res, dict) and key in res else None


def _verdict(broken: list[str], missing: list[str]) -> str:
    return "FAIL" if broken else "incomplete" if missing else "pass"


def acceptance(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Issue #19's three acceptance lines over the FP16 rows: each with its verdict, the models
    that meet it, break it, or lack a number, and a one-line text."""
    fp16 = [r for r in rows if r.get("precision", "fp16") == "fp16"]
    b1 = [r for r in fp16 if r["batch"] == 1]
    measured = [r for r in b1 if _ms(r, "tandem") is not None and _ms(r, RO) is not None]
    missing = [r["model"] for r in b1 if r not in measured]
    faster = [r["model"] for r in measured if _ms(r, "tandem") <= _ms(r, RO)]  # type: ignore[operator]
    slower = [r["model"] for r in measured if r["model"] not in faster]
    share = len(faster) / len(measured) if measured else 0.0
    # below the share even if every missing model turned out faster: already broken
    best_case = (len(faster) + len(missing)) / len(b1) if b1 else 0.0
    b2b = {
        "line": "b1 b2b",
        "verdict": ("incomplete" if not b1 else "FAIL" if best_case < B1_SHARE
                    else "incomplete" if missing else "pass"),  # fmt: skip
        "met": faster, "broken": slower, "missing": missing,
        "text": f"batch 1: Tandem b2b <= reduce-overhead on {len(faster)}/{len(measured)} "
                f"models ({share:.0%}; needs >= {B1_SHARE:.0%})",
    }  # fmt: skip
    p50_ok, p50_bad = [], []
    for r in b1:
        t, ro = _ms(r, "tandem", "p50_ms"), _ms(r, RO, "p50_ms")
        if t is not None and ro is not None:
            (p50_ok if t <= P50_RATIO * ro else p50_bad).append(r["model"])
    p50_missing = [r["model"] for r in b1 if r["model"] not in p50_ok + p50_bad]
    p50 = {
        "line": "b1 p50", "verdict": _verdict(p50_bad, p50_missing if b1 else ["batch 1"]),
        "met": p50_ok, "broken": p50_bad, "missing": p50_missing,
        "text": f"batch 1: Tandem p50 <= {P50_RATIO}x reduce-overhead on "
                f"{len(p50_ok)}/{len(p50_ok) + len(p50_bad)} models (needs all)",
    }  # fmt: skip
    met, broken, lacking = [], [], []
    for name in B32_MODELS:
        row = next((r for r in fp16 if r["model"] == name and r["batch"] == 32), None)
        t = _ms(row, "tandem") if row else None
        peers = [_ms(row, p) for p in (EAGER, RO)] if row else [None, None]
        if t is None or not any(p is not None for p in peers):
            lacking.append(name)
        elif any(p is not None and t > p for p in peers):
            broken.append(name)  # slower than a peer that was measured: broken already
        elif None in peers:
            lacking.append(name)  # faster than the one peer measured; the other is missing
        else:
            met.append(name)
    b32 = {
        "line": "b32 throughput", "verdict": _verdict(broken, lacking),
        "met": met, "broken": broken, "missing": lacking,
        "text": f"batch 32: Tandem throughput >= best of eager and reduce-overhead on "
                f"{len(met)}/{len(B32_MODELS)} of {', '.join(B32_MODELS)}",
    }  # fmt: skip
    return [b2b, p50, b32]


def acceptance_lines(rows: list[dict[str, Any]]) -> list[str]:
    out = []
    for a in acceptance(rows):
        extra = "".join(f"; {k}: {', '.join(a[k])}" for k in ("broken", "missing") if a[k])
        out.append(f"- **{a['verdict']}** {a['text']}{extra}")
    return out


def merge(docs: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(rows, runs): the newest row per (model, batch, precision), in first-seen order; the
    runs oldest first."""
    runs = sorted(docs, key=lambda d: d["date"])  # "YYYY-MM-DD HH:MM UTC" sorts as text
    rows: dict[tuple[str, int, str], dict[str, Any]] = {}
    for doc in runs:
        for r in doc["results"]:
            key = (r["model"], r["batch"], r.get("precision", "fp16"))
            if "not_run" not in r or key not in rows:  # a later run that skipped it keeps ours
                rows[key] = r
    return list(rows.values()), runs


def _cell(r: dict | None) -> str:
    if not r:
        return "-"
    if "error" in r:  # the JSON has the message; the table says which kind
        err = r["error"]
        return "over cap" if "over its cap" in err else "not run" if "not run" in err else "error"
    return f"{r['b2b_ms']:.3f} / {r['p50_ms']:.3f}"


PEER_LABELS = (("tandem", "tandem"), (EAGER, "eager"), (RO, "reduce-overhead"),
               (MAX_AUTOTUNE, "max-autotune"), ("tandem_fp16", "tandem fp16"),
               ("eager_fp16", "eager fp16"))  # fmt: skip


def row_line(row: dict[str, Any]) -> str:
    """One row as the compact line the benchmark prints as it goes (b2b / p50 ms)."""
    head = f"{row['model']} b{row['batch']} {row.get('precision', 'fp16')}:"
    if "not_run" in row or "error" in row:
        return f"{head} {'not run: ' + row['not_run'] if 'not_run' in row else row['error']}"
    parts = []
    for key, label in PEER_LABELS:
        res = row.get(key)
        if isinstance(res, dict):
            parts.append(f"{label} {_cell(res) if 'error' not in res else res['error'][:60]}")
    ratio = _ratio(row, RO)
    tail = f" | tandem/RO b2b {ratio}" if ratio != "-" else ""
    if "torch_error" in row:
        tail += f" | torch: {row['torch_error'][:80]}"
    return f"{head} " + " | ".join(parts) + tail


def _ratio(row: dict[str, Any], peer: str) -> str:
    t, p = _ms(row, "tandem"), _ms(row, peer)
    return f"{t / p:.2f}" if t and p else "-"


FLOAT_HEADER = (
    "| model | input | batch | Tandem b2b / p50 ms | eager | reduce-overhead | max-autotune "
    "| Tandem / RO (b2b) | Tandem / RO (p50) | kernels | rel err vs torch |"
)


def float_table(rows: list[dict[str, Any]], precision: str = "fp16") -> list[str]:
    """The Markdown table of the FP16 (or FP32) rows: Tandem and each peer, b2b / p50 ms."""
    cols = FLOAT_HEADER.count("|") - 1
    lines = [FLOAT_HEADER, "|" + "---|" * cols]
    for r in rows:
        if r.get("precision", "fp16") != precision:
            continue
        head = f"| {r['model']} | {r.get('input', '-')} | {r['batch']} |"
        if "error" in r or "not_run" in r:
            why = f"error: {r['error'][:140]}" if "error" in r else f"not run ({r['not_run']})"
            lines.append(f"{head} {why} |" + " |" * (cols - 4))
            continue
        t, ro = _ms(r, "tandem", "p50_ms"), _ms(r, RO, "p50_ms")
        p50 = f"{t / ro:.2f}" if t and ro else "-"
        err = r.get("max_rel_err_vs_torch")
        lines.append(
            f"{head} {_cell(r.get('tandem'))} | {_cell(r.get(EAGER))} | {_cell(r.get(RO))} | "
            f"{_cell(r.get(MAX_AUTOTUNE))} | {_ratio(r, RO)} | {p50} | {r.get('kernels', '-')} | "
            f"{'-' if err is None else f'{err:.1e}'} |"
        )
    return lines


def markdown(docs: list[dict[str, Any]]) -> str:
    """The BENCHMARKS.md section of one or more runs: runs, the FP16 table, the acceptance."""
    rows, runs = merge(docs)
    lines = ["Runs:"]
    for d in runs:
        stop = f", stopped: {d['stopped']}" if d.get("stopped") else ""
        lines.append(f"- {d['date']}, {d['device']}, torch {d.get('torch', '-')}: "
                     f"`{d.get('command', '-')}`{stop}")  # fmt: skip
    lines += [
        "",
        "FP16, b2b / p50 ms (b2b: calls back to back, GPU time; p50: one call + sync)",
        "",
        *float_table(rows),
        "",
        "Acceptance (issue #19):",
        "",
        *acceptance_lines(rows),
    ]
    return "\n".join(lines) + "\n"


def print_int8_table(doc: dict, sel: list[dict]) -> None:
    if not sel:
        return
    print(
        f"\nINT8 (calibration: {doc.get('calibration_wall_s')} s wall, per model "
        f"{doc.get('calibration_s')})"
    )
    print(
        "| model | batch | Tandem INT8 b2b / p50 ms | Tandem FP16 b2b / p50 ms | eager FP16 "
        "b2b / p50 ms | x Tandem FP16 (b2b) | x eager FP16 (b2b) | cosine vs FP32 | "
        "rel err vs FP32 | kernels |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in sel:
        if "error" in r or "not_run" in r:
            why = r.get("error", f"not run ({r.get('not_run')})")[:120]
            print(f"| {r['model']} | {r['batch']} | {why} | | | | | | | |")
            continue
        sp = [
            r.get(f"speedup_vs_{p}", {}).get("b2b_ms", "-") for p in ("tandem_fp16", "eager_fp16")
        ]
        print(
            f"| {r['model']} | {r['batch']} | {_cell(r.get('tandem'))} | "
            f"{_cell(r.get('tandem_fp16'))} | {_cell(r.get('eager_fp16'))} | {sp[0]} | "
            f"{sp[1]} | {r['cosine_vs_torch_fp32']:.5f} | "
            f"{r['max_rel_err_vs_torch_fp32']:.1e} | {r['kernels']} |"
        )


def print_table(doc: dict) -> None:
    """The console tables of one run (every precision), its profiles and tactic rates."""
    print(f"\n{doc['date']}  {doc['device']}  torch {doc['torch']}  cuDNN {doc['cudnn']}")
    print(
        f"mma.sync peak FP16 {doc.get('mma_sync_peak_tflops', '-')} TFLOPS, INT8 "
        f"{doc.get('mma_sync_int8_peak_tops', '-')} TOPS; cuBLAS FP16 "
        f"{doc.get('cublas_fp16_8192_tflops', '-')} TFLOPS"
    )
    rows = doc["results"]
    for precision in ("fp16", "int8", "fp32"):
        sel = [r for r in rows if r.get("precision", "fp16") == precision]
        if precision == "int8":
            print_int8_table(doc, sel)
        if precision == "int8" or not sel:
            continue
        note = " (eager and compile with TF32 off)" if precision == "fp32" else ""
        print(f"\n{precision.upper()}{note}")
        print("\n".join(float_table(rows, precision)))
    for key, prof in doc.get("profiles", {}).items():
        print(f"profile {key}: sum {prof['sum_ms']} ms by kernel {prof['by_kernel']}")
        for r in prof["top"][:6]:
            print(f"   {r['layer']} {r['kernel']} {r['tactic']} {r['ms']} ms")
    for key, unit in (("conv_tactics", "TFLOPS"), ("conv_tactics_int8", "TOPS")):
        for c in doc.get(key, []):
            print(
                f"conv {c['layer']}: {c['tactic']} {c['gflop']} G(FL)OP {c['ms']} ms "
                f"= {c['tflops']} {unit}"
            )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path, help="JSON files of bench/gpu_vs_torch.py")
    ap.add_argument("--out-md", type=Path, help="write the Markdown here (default: print it)")
    args = ap.parse_args(argv)
    docs = []
    for path in args.runs:
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(doc.get("results"), list) or "date" not in doc:
                raise ValueError("no 'results' list and 'date'")
        except (OSError, ValueError) as err:
            print(f"{path}: {err} (expected the --out JSON of bench/gpu_vs_torch.py)",
                  file=sys.stderr)  # fmt: skip
            return 1
        docs.append(doc)
    text = markdown(docs)
    if args.out_md:
        from partitioner.files import write_atomic

        write_atomic(args.out_md, text.encode())
    else:
        print(text, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
