"""Artifact storage: a local directory (embedded) or S3-compatible storage (production)."""
