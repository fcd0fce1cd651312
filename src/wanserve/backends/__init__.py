"""Inference backends: local torchrun processes, Kubernetes PyTorchJobs, Ray Serve, KServe."""
