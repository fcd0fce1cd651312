"""Backend `torchserve`: tasks run on TorchServe, in wanserve's handler (wanserve.torchserve)."""
