"""NonMaxSuppression, on the host: greedy per (batch, class), as ONNX Runtime selects.

Candidates are the boxes whose score passes ``score_threshold`` (strictly greater), visited by
score, highest first (the lower box index first among equal scores); a candidate is kept unless
its IoU with a box already kept exceeds ``iou_threshold``. At most
``max_output_boxes_per_class`` boxes per class; the output is ``[num_selected, 3]`` int64 rows
``(batch, class, box)``. Its size depends on the data; it is bounded by the boxes given.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from devices.cpu.registry import check_output_bytes, register
from partitioner.ir import Node


def _scalar(inputs: list[Any], i: int, default: float) -> float:
    if len(inputs) <= i or inputs[i] is None or np.asarray(inputs[i]).size == 0:
        return default
    return float(np.asarray(inputs[i]).reshape(-1)[0])


def _corners(boxes: np.ndarray, center_point_box: int) -> np.ndarray:
    """(..., 4) boxes as (x_min, y_min, x_max, y_max) in float32."""
    b = boxes.astype(np.float32)
    if center_point_box:
        xc, yc, w, h = b[..., 0], b[..., 1], b[..., 2], b[..., 3]
        half_w, half_h = w / np.float32(2), h / np.float32(2)
        return np.stack([xc - half_w, yc - half_h, xc + half_w, yc + half_h], axis=-1)
    y1, x1, y2, x2 = b[..., 0], b[..., 1], b[..., 2], b[..., 3]
    return np.stack([np.minimum(x1, x2), np.minimum(y1, y2),
                     np.maximum(x1, x2), np.maximum(y1, y2)], axis=-1)  # fmt: skip


def _suppressed(box: np.ndarray, kept: np.ndarray, iou_threshold: np.float32) -> bool:
    """True when ``box`` overlaps any of ``kept`` by more than the threshold."""
    if not len(kept):
        return False
    ix0 = np.maximum(box[0], kept[:, 0])
    iy0 = np.maximum(box[1], kept[:, 1])
    ix1 = np.minimum(box[2], kept[:, 2])
    iy1 = np.minimum(box[3], kept[:, 3])
    inter = np.maximum(ix1 - ix0, 0) * np.maximum(iy1 - iy0, 0)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (kept[:, 2] - kept[:, 0]) * (kept[:, 3] - kept[:, 1])
    union = area + areas - inter
    valid = (inter > 0) & (area > 0) & (areas > 0) & (union > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(valid, inter / np.where(valid, union, 1), 0)
    return bool((valid & (iou > iou_threshold)).any())


@register("NonMaxSuppression")
def non_max_suppression(node: Node, inputs: list[Any]) -> np.ndarray:
    boxes, scores = inputs[0], inputs[1]
    if boxes.ndim != 3 or boxes.shape[2] != 4:
        raise ValueError(f"boxes must be [batch, boxes, 4], got {boxes.shape}")
    if scores.ndim != 3 or scores.shape[0] != boxes.shape[0] or scores.shape[2] != boxes.shape[1]:
        raise ValueError(f"scores must be [batch, classes, boxes] = [{boxes.shape[0]}, C, "
                         f"{boxes.shape[1]}], got {scores.shape}")  # fmt: skip
    max_per_class = int(_scalar(inputs, 2, 0))
    iou_threshold = np.float32(_scalar(inputs, 3, 0.0))
    has_score_threshold = len(inputs) > 4 and inputs[4] is not None
    score_threshold = np.float32(_scalar(inputs, 4, 0.0))
    if not 0 <= iou_threshold <= 1:
        raise ValueError(f"iou_threshold {float(iou_threshold)} must be in [0, 1]")
    corners = _corners(boxes, int(node.attrs.get("center_point_box", 0)))
    rows: list[tuple[int, int, int]] = []
    if max_per_class <= 0:
        return np.zeros((0, 3), np.int64)
    most = scores.shape[0] * scores.shape[1] * min(max_per_class, boxes.shape[1])
    check_output_bytes(3 * most, np.int64, f"up to {most} selected boxes")
    for b in range(scores.shape[0]):
        for c in range(scores.shape[1]):
            s = scores[b, c].astype(np.float32)
            candidates = np.flatnonzero(s > score_threshold) if has_score_threshold else \
                np.arange(s.size)  # fmt: skip
            order = candidates[np.argsort(-s[candidates], kind="stable")]
            kept: list[int] = []
            for i in order:
                if len(kept) >= max_per_class:
                    break
                if not _suppressed(corners[b, i], corners[b, kept], iou_threshold):
                    kept.append(int(i))
            rows += [(b, c, i) for i in kept]
    return np.array(rows, np.int64).reshape(-1, 3)
