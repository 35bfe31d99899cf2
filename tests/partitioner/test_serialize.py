import json

import numpy as np
import pytest

from devices.cpu import CpuRunner
from partitioner.errors import GraphError
from partitioner.serialize import graph_from_data, graph_to_data
from tandem.api import load_graph
from tests.models import random_inputs


@pytest.mark.parametrize("name", ["resnet18", "yolov5s", "vit-tiny"])
def test_round_trip_through_json_runs_identically(zoo_model, name):
    path = zoo_model(name, **({"depth": 2} if name == "vit-tiny" else {}))
    graph = load_graph(path)
    structure, arrays = graph_to_data(graph)
    rebuilt = graph_from_data(json.loads(json.dumps(structure)), arrays)
    assert [n.name for n in rebuilt.nodes] == [n.name for n in graph.nodes]
    feeds = random_inputs(path)
    with CpuRunner(graph) as a, CpuRunner(rebuilt) as b:
        expected, actual = a.infer(feeds), b.infer(feeds)
    for key in expected:
        np.testing.assert_array_equal(actual[key], expected[key])


def test_missing_array_is_named(zoo_model):
    structure, arrays = graph_to_data(load_graph(zoo_model("resnet18")))
    victim = next(t["array"] for t in structure["tensors"] if "array" in t)
    del arrays[victim]
    with pytest.raises(GraphError, match=f"'{victim}', which is missing"):
        graph_from_data(structure, arrays)


def test_malformed_structure_is_a_graph_error():
    with pytest.raises(GraphError, match="malformed"):
        graph_from_data({"format": "tandem-ir-1", "name": "g"}, {})
