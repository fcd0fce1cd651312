"""wanserve on TorchServe: a handler holding the engine and its tasks, and the `.mar` it ships in.

    handler.py  WanHandler: the engine (wanserve's warm engine), the tasks (a TaskBoard), the ops
    entry.py    the module TorchServe loads from the archive: `handle(data, context)`
    archive.py  `wanserve torchserve archive`: the `.mar`, built with torch-model-archiver

The worker's side is wanserve.backends.torchserve. See docs/torchserve.md and decision 0014.
"""
