"""Graph IR, ONNX import/export, passes, device policy and partitioning. Knows no hardware."""
