"""Inference backends: local torchrun process groups, a warm pool of local engines, Kubernetes
PyTorchJobs. Each is an `InferenceBackend` (base.py), built by `make_backend` (factory.py)."""
