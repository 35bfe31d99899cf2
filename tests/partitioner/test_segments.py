"""Segment formation, the prediction formula and the inspect report, on tiny graphs."""

from __future__ import annotations

import json
import re

import pytest

from partitioner.ir import Tensor
from partitioner.report import capability_rows, format_text, layer_rows, to_dot, to_json
from partitioner.segments import form_segments, predict, transfers
from tests.partitioner.partition_fakes import chain, dag, segment_graph_is_acyclic


def _place(spec: str) -> dict[str, str]:
    """``"a:g b:d"`` -> {a: gpu, b: dla0}."""
    short = {"g": "gpu", "d": "dla0", "c": "cpu"}
    return {k: short[v] for k, v in (item.split(":") for item in spec.split())}


SEGMENT_TABLE = [
    # (edges, placement, expected segments as "name=layers")
    ("a>b b>c c>d", "a:d b:d c:d d:d", ["dla0_0=a,b,c,d"]),
    ("a>b b>c c>d", "a:d b:g c:d d:d", ["dla0_0=a", "gpu_1=b", "dla0_2=c,d"]),
    ("a>b b>c c>d", "a:g b:g c:d d:g", ["gpu_0=a,b", "dla0_1=c", "gpu_2=d"]),
    # diamond: both branches on the DLA join one segment
    ("a>b a>c b>d c>d", "a:d b:d c:d d:d", ["dla0_0=a,b,c,d"]),
    # a GPU branch beside a DLA branch: the DLA branch stays one segment
    ("a>b a>c b>d c>d", "a:d b:g c:d d:d", ["dla0_0=a,c", "gpu_1=b", "dla0_2=d"]),
    # parallel independent GPU layers between DLA layers share one GPU segment
    ("a>b a>c b>d c>d", "a:d b:g c:g d:d", ["dla0_0=a", "gpu_1=b,c", "dla0_2=d"]),
    # cpu layers form their own segments
    ("a>b b>c", "a:g b:c c:g", ["gpu_0=a", "cpu_1=b", "gpu_2=c"]),
    # a segment that starts first (an embedding lookup) but reads a host island (a mask from
    # another input) runs after that island: dependency order, not first-layer order
    ("a>b m>b", "a:g m:c b:g", ["cpu_0=m", "gpu_1=a,b"]),
]


@pytest.mark.parametrize("edges, placement, expected", SEGMENT_TABLE)
def test_segments_by_name(edges: str, placement: str, expected: list[str]) -> None:
    g = dag(edges)
    segments, _ = form_segments(g, _place(placement))
    assert [f"{s.name}={','.join(s.nodes)}" for s in segments] == expected
    assert segment_graph_is_acyclic(g, segments)


def test_merge_that_would_form_a_cycle_is_refused_and_logged() -> None:
    # a -> b -> c with a -> c: a and c are both DLA but b (GPU) sits on a path between them
    g = dag("a>b b>c a>c")
    segments, debug = form_segments(g, _place("a:d b:g c:d"))
    assert [s.name for s in segments] == ["dla0_0", "gpu_1", "dla0_2"]
    assert len(debug) == 1
    assert "refused" in debug[0] and "cycle through layer 'b'" in debug[0]
    assert segment_graph_is_acyclic(g, segments)


def test_boundary_tensors_are_listed() -> None:
    g = dag("a>b b>c a>c")
    segments, _ = form_segments(g, _place("a:d b:g c:d"))
    by = {s.name: s for s in segments}
    assert by["dla0_0"].inputs == ("x",) and by["dla0_0"].outputs == ("a_out",)
    assert by["gpu_1"].inputs == ("a_out",) and by["gpu_1"].outputs == ("b_out",)
    assert by["dla0_2"].inputs == ("b_out", "a_out") and by["dla0_2"].outputs == ("c_out",)


def test_segment_precision_is_none_when_mixed() -> None:
    g = chain("a", "b")
    devices = _place("a:g b:g")
    (seg,), _ = form_segments(g, devices, {"a": "fp16", "b": "fp16"})
    assert seg.precision == "fp16"
    (seg,), _ = form_segments(g, devices, {"a": "fp16", "b": "int8"})
    assert seg.precision is None


def test_transfers_once_per_destination_and_io_on_gpu() -> None:
    # x feeds a (dla); a feeds b, c (gpu) and d (dla): a_out is copied to the GPU once
    g = dag("a>b a>c a>d b>e c>e d>e")
    devices = _place("a:d b:g c:g d:d e:g")
    moves = sorted((t.name, s, d) for t, s, d in transfers(g, devices))
    assert moves == [("a_out", "dla0", "gpu"), ("d_out", "dla0", "gpu"), ("x", "gpu", "dla0")]


def test_predict_sums_layers_and_transitions() -> None:
    g = chain("a", "b", "c")
    devices = _place("a:d b:g c:g")
    cost = {"a": 2e-3, "b": 1e-3, "c": 1e-3}

    def tc(t: Tensor, src: str, dst: str) -> float:
        return 0.5e-3 if (src, dst) == ("gpu", "dla") else 0.25e-3

    p = predict(g, devices, lambda n, d: cost[n.name], tc)
    # x -> dla (0.5) + a_out dla -> gpu (0.25)
    assert p.boundaries == 2
    assert p.transfer == pytest.approx(0.75e-3)
    assert p.total == pytest.approx(4.75e-3)
    assert p.per_device == pytest.approx({"dla0": 2e-3, "gpu": 2e-3})
    assert p.period == pytest.approx(2.75e-3)  # GPU busy 2 ms + 0.75 ms of reformats
    assert p.as_ms()["total"] == pytest.approx(4.75)


# ----- report ----------------------------------------------------------------------------------


def _partition():
    from partitioner.assign import partition
    from tests.partitioner.partition_fakes import dla, gpu

    g = chain(
        "c1", "c2", "up", "c3", "c4", "sm", ops={"up": "Resize", "c1": "Conv", "sm": "Softmax"}
    )
    caps = {
        "gpu": gpu(),
        "dla": dla({"Resize": "mode cubic not supported", "Softmax": "axis 1 > 8192"}),
    }
    return g, partition(g, caps)


def test_report_rows_and_json_keys() -> None:
    g, part = _partition()
    rows = layer_rows(g, part)
    assert [(r.name, r.device) for r in rows] == [
        ("c1", "dla0"),
        ("c2", "dla0"),
        ("up", "gpu"),
        ("c3", "dla0"),
        ("c4", "dla0"),
        ("sm", "gpu"),
    ]
    doc = to_json(g, part, target="orin-agx-64gb", power_mode="MAXN")
    json.dumps(doc)  # one serialisable document
    assert {"layers", "segments", "predicted_ms", "target", "power_mode"} <= set(doc)
    assert set(doc["layers"][0]) >= {"name", "op", "device", "precision", "reason"}
    assert doc["segments"][1] == {
        "name": "gpu_1",
        "device": "gpu",
        "layers": ["up"],
        "inputs": ["c2_out"],
        "outputs": ["up_out"],
        "precision": "fp16",
    }
    assert set(doc["predicted_ms"]) >= {"total", "gpu", "dla0"}
    assert doc["boundaries"] == 4  # x->dla, c2->gpu, up->dla, c4->gpu (sm runs on the gpu)


def test_capability_rows_group_by_op_and_reason() -> None:
    from partitioner.assign import partition
    from tests.partitioner.partition_fakes import dla, gpu

    g = chain("a", "up1", "b", "up2", "c", ops={"up1": "Resize", "up2": "Resize"})
    part = partition(g, {"gpu": gpu(), "dla": dla({"Resize": "mode cubic not supported"})})
    (row,) = capability_rows(g, part)
    assert (row.operator, row.count, row.reason, row.layers) == (
        "Resize",
        2,
        "mode cubic not supported",
        ("up1", "up2"),
    )


def test_dot_boxes_segments_and_colours_devices() -> None:
    g, part = _partition()
    dot = to_dot(g, part)
    assert dot.startswith('digraph "test" {') and dot.rstrip().endswith("}")
    assert len(re.findall(r"subgraph cluster_\d", dot)) == len(part.segments) == 4
    # the legend: each device kind used and the boundary edge; each layer's reason as tooltip
    assert "subgraph cluster_legend" in dot and '"legend:dla" [label="DLA layer"' in dot
    assert '"legend:gpu" [label="GPU layer"' in dot and "device boundary" in dot
    assert "tooltip=\"up (Resize): gpu fp16\\nGPU: Resize 'up': mode cubic not supported\"" in dot
    assert 'label="gpu_1 (gpu, 1 layer)"' in dot
    assert '"L:c2" -> "L:up" [label="c2_out", color="#c0392b", penwidth=2];' in dot
    assert '"L:c1" -> "L:c2";' in dot


def test_format_text_has_every_table() -> None:
    g, part = _partition()
    text = format_text(g, part)
    for heading in ("Layers:", "Layers not on the DLA:", "Segments (4 boundaries):", "Predicted"):
        assert heading in text
    assert re.search(r"^Resize +1 +mode cubic not supported +up$", text, re.M)
    assert "up     Resize   gpu     fp16       GPU: Resize 'up': mode cubic not supported" in text
    summary = format_text(g, part, layers=False)
    assert "Layers: " in summary and "GPU: Resize 'up'" not in summary


def test_dot_renders_with_graphviz(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import shutil
    import subprocess

    dot = shutil.which("dot")
    if dot is None:
        pytest.skip("Graphviz 'dot' is not installed (make system-deps installs it)")
    g, part = _partition()
    source = tmp_path / "g.dot"
    source.write_text(to_dot(g, part), encoding="utf-8")
    svg = subprocess.run([dot, "-Tsvg", str(source)], capture_output=True, text=True, check=True)
    assert "<svg" in svg.stdout and "dla0_0 (dla0, 2 layers)" in svg.stdout
