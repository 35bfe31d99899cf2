"""Jetson board catalog, cross-build for a target, board inventory, SSH deploy and benchmark."""
