"""Device kinds (cpu, gpu, dla): support tables, cost models, backends, plan format, runtime."""
