"""The project's own CUDA kernels, NVRTC compilation per arch, tactics, autotuning."""
