"""Resident mode on Ray Serve: warm multi-rank replicas that scale to zero (docs/ray.md)."""
