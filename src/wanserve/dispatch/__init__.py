"""The dispatcher: leases tasks, admits them within capacity, runs them on a backend.

`Dispatcher` (dispatcher.py) runs the lease loop and the periodic jobs; `Attempt` (attempt.py)
runs one task on one backend; `Reconciler` makes the queue agree with the store; `Pools` and
`pick_pool` are capacity and routing; `expire_artifacts` (retention.py) deletes expired videos.
What an attempt's end means for its task is decided in `wanserve.domain.settlement`, and every
change is written by `wanserve.journal`. See docs/architecture/03-dispatcher.md.
"""

from wanserve.dispatch.attempt import Attempt, DispatchContext
from wanserve.dispatch.capacity import Pool, Pools
from wanserve.dispatch.config import DispatchConfig
from wanserve.dispatch.dispatcher import Dispatcher
from wanserve.dispatch.reconciler import Reconciler
from wanserve.dispatch.retention import expire_artifacts
from wanserve.dispatch.routing import pick_pool

__all__ = [
    "Attempt",
    "DispatchConfig",
    "DispatchContext",
    "Dispatcher",
    "Pool",
    "Pools",
    "Reconciler",
    "expire_artifacts",
    "pick_pool",
]
