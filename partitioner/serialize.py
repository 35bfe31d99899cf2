"""A Graph as plain data: a JSON-able structure plus named numpy arrays. No pickle.

The plan file stores each segment this way: the structure goes into the plan's JSON header and
every constant (weights, and array-valued attributes) becomes an aligned raw blob, so loading a
plan never executes code and a refit can replace weights by name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from partitioner.errors import GraphError
from partitioner.ir import Constant, Graph

FORMAT = "tandem-ir-1"


def graph_to_data(
    graph: Graph, array_key: Callable[[str], str] | None = None
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(structure, arrays): ``arrays`` maps keys (``array_key(tensor_name)``) to constant values."""
    key = array_key or (lambda name: name)
    arrays: dict[str, np.ndarray] = {}
    tensors = []
    for t in graph.tensors.values():
        entry: dict[str, Any] = {"name": t.name, "shape": _dims(t.shape), "dtype": t.dtype}
        if isinstance(t, Constant):
            entry["array"] = key(t.name)
            arrays[entry["array"]] = t.values
        tensors.append(entry)
    nodes = []
    for n in graph.nodes:
        attrs: dict[str, Any] = {}
        for name, value in n.attrs.items():
            if isinstance(value, np.ndarray):
                arr_key = key(f"{n.name}/attr/{name}")
                arrays[arr_key] = value
                attrs[name] = {"array": arr_key}
            else:
                attrs[name] = {"value": _plain(value, f"layer '{n.name}' attribute '{name}'")}
        nodes.append(
            {
                "name": n.name,
                "op": n.op,
                "domain": n.domain,
                "attrs": attrs,
                "inputs": [t.name if t is not None else None for t in n.inputs],
                "outputs": [t.name for t in n.outputs],
            }
        )
    structure = {
        "format": FORMAT,
        "name": graph.name,
        "opset": graph.opset,
        "tensors": tensors,
        "nodes": nodes,
        "inputs": [t.name for t in graph.inputs],
        "outputs": [t.name for t in graph.outputs],
    }
    return structure, arrays


def graph_from_data(structure: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> Graph:
    """Rebuild a Graph; a structure that does not hang together raises GraphError."""
    try:
        if structure.get("format") != FORMAT:
            raise GraphError(f"graph data format {structure.get('format')!r}, expected {FORMAT!r}")
        g = Graph(str(structure["name"]), int(structure["opset"]))
        for t in structure["tensors"]:
            if "array" in t:
                g.add_constant(t["name"], _array(arrays, t["array"]))
            else:
                shape = None if t["shape"] is None else tuple(t["shape"])
                g.add_variable(t["name"], shape, t["dtype"])
        for name in structure["inputs"]:
            g.inputs.append(g.tensor(name))  # type: ignore[arg-type]
        for n in structure["nodes"]:
            attrs = {
                k: _array(arrays, v["array"]) if "array" in v else _from_plain(v["value"])
                for k, v in n["attrs"].items()
            }
            g.add_node(
                n["op"],
                [g.tensor(name) if name is not None else None for name in n["inputs"]],
                [g.tensor(name) for name in n["outputs"]],
                attrs,
                name=n["name"],
                domain=n.get("domain", ""),
            )
        for name in structure["outputs"]:
            g.mark_output(g.tensor(name))
    except (KeyError, TypeError, ValueError) as err:
        raise GraphError(f"graph data is malformed ({type(err).__name__}: {err})") from None
    g.lint()
    return g


def _array(arrays: Mapping[str, np.ndarray], key: str) -> np.ndarray:
    try:
        return np.asarray(arrays[key])
    except KeyError:
        raise GraphError(f"graph data refers to array '{key}', which is missing") from None


def _dims(shape: tuple[Any, ...] | None) -> list[Any] | None:
    return None if shape is None else list(shape)


def _plain(value: Any, where: str) -> Any:
    """JSON-safe attribute value; tuples become lists, numpy scalars become Python scalars."""
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return {"bytes": value.hex()}
    if isinstance(value, list | tuple):
        return [_plain(v, where) for v in value]
    raise GraphError(f"{where}: value of type {type(value).__name__} cannot be stored in a plan")


def _from_plain(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"bytes"}:
        return bytes.fromhex(value["bytes"])
    return value
