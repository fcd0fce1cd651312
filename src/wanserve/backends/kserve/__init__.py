"""Resident mode on KServe: wanserve's model server in an InferenceService (docs/kserve.md)."""
