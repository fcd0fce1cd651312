"""The dispatcher: leases tasks, admits them within capacity, runs them on a backend.

`Dispatcher` (dispatcher.py) runs the lease loop and the periodic jobs; `Attempt` (attempt.py)
runs one task on one backend; `Reconciler` makes the queue agree with the store; `Pools` and
`pick_pool` are capacity and routing. See docs/architecture/03-dispatcher.md.
"""

from wanserve.dispatch.attempt import Attempt, Stop
from wanserve.dispatch.capacity import Pool, Pools
from wanserve.dispatch.config import DispatchConfig
from wanserve.dispatch.dispatcher import Dispatcher
from wanserve.dispatch.reconciler import Reconciler
from wanserve.dispatch.routing import pick_pool

__all__ = [
    "Attempt",
    "DispatchConfig",
    "Dispatcher",
    "Pool",
    "Pools",
    "Reconciler",
    "Stop",
    "pick_pool",
]
