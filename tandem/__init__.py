"""Tandem: run neural networks on Jetson SoCs split between the GPU and the DLA.

This package is the public Python API and the ``tandem`` CLI; it only wires the layers below.
"""

__version__ = "0.1.0"
