"""wanserve's engine as a KServe model server (`python -m wanserve.kserve`; docs/kserve.md)."""
