"""The bundled DLA emulator: loadables, DLA numerics, calibration, latency model."""
