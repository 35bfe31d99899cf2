"""Resolve ``auto_pad`` and ConvTranspose ``output_shape`` into explicit pads.

Runs at import and again whenever shapes become static later (``fix_input_shapes``), so the
layers below see explicit ``pads`` wherever the input's spatial dims are known.
"""

from __future__ import annotations

from partitioner.ir import Graph, Node


def _resolve_output_shape(node: Node) -> bool:
    """ConvTranspose ``output_shape`` becomes explicit pads / output_padding (static input)."""
    x = node.inputs[0]
    kernel = node.attrs.get("kernel_shape")
    if x is None or x.shape is None or kernel is None:
        return False
    spatial = x.shape[2:]
    if not all(isinstance(d, int) for d in spatial):
        return False
    k = len(spatial)
    target = list(node.attrs["output_shape"])[-k:]
    strides = node.attrs.get("strides", [1] * k)
    dil = node.attrs.get("dilations", [1] * k)
    out_pad = list(node.attrs.get("output_padding", [0] * k))
    mode = node.attrs.get("auto_pad", "NOTSET")
    begins, ends = [], []
    for i, size in enumerate(spatial):
        eff = (kernel[i] - 1) * dil[i] + 1
        total = strides[i] * (int(size) - 1) + out_pad[i] + eff - int(target[i])  # type: ignore[arg-type]
        if total < 0:  # the requested size is larger: extra rows come from output_padding
            out_pad[i] -= total
            total = 0
        small, large = total // 2, total - total // 2
        begins.append(small if mode == "SAME_UPPER" else large)
        ends.append(large if mode == "SAME_UPPER" else small)
    node.attrs["pads"] = begins + ends
    node.attrs["output_padding"] = out_pad
    del node.attrs["output_shape"]
    node.attrs.pop("auto_pad", None)
    return True


def resolve_auto_pad(graph: Graph) -> bool:
    """Turn ``auto_pad`` SAME_UPPER / SAME_LOWER (and ConvTranspose ``output_shape``) into
    explicit pads where shapes are static."""
    changed = False
    for node in graph.nodes:
        if node.op == "ConvTranspose" and "output_shape" in node.attrs:
            changed = _resolve_output_shape(node) or changed
            continue
        mode = node.attrs.get("auto_pad")
        if node.op not in ("Conv", "ConvTranspose", "MaxPool", "AveragePool") or mode not in (
            "SAME_UPPER",
            "SAME_LOWER",
        ):
            continue
        x = node.inputs[0]
        if x is None or x.shape is None or not all(isinstance(d, int) for d in x.shape[2:]):
            continue
        spatial = [int(d) for d in x.shape[2:]]  # type: ignore[arg-type]
        kernel = node.attrs.get("kernel_shape")
        if kernel is None:
            continue
        strides = node.attrs.get("strides", [1] * len(spatial))
        dil = node.attrs.get("dilations", [1] * len(spatial))
        begins, ends = [], []
        for i, size in enumerate(spatial):
            eff = (kernel[i] - 1) * dil[i] + 1
            if node.op == "ConvTranspose":
                out_pad = node.attrs.get("output_padding", [0] * len(spatial))[i]
                total = max(0, strides[i] * (size - 1) + out_pad + eff - size * strides[i])
            else:
                out = -(-size // strides[i])
                total = max(0, (out - 1) * strides[i] + eff - size)
            small, large = total // 2, total - total // 2
            if mode == "SAME_UPPER":
                begins.append(small)
                ends.append(large)
            else:
                begins.append(large)
                ends.append(small)
        node.attrs["pads"] = begins + ends
        del node.attrs["auto_pad"]
        changed = True
    return changed
