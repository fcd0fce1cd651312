"""The dispatcher: leases tasks, routes each to a pool, runs it there as an attempt.

`Dispatcher` (dispatcher.py) runs the lease loop and the periodic jobs; `Attempt` (attempt.py)
runs one task in one pool; `Reconciler` makes the queue agree with the store; `Pools` are the
worker's pools and their capacity; `route` (routing.py) is the policy that picks a task's pool
or makes it wait; `PoolMonitor` is what routing and `GET /v1/pools` know of the pools;
`expire_artifacts` (retention.py) deletes expired videos; `WorkerMetrics` (metrics.py) is the
worker's Prometheus registry, fed by its journal. What an attempt's end means for its
task is decided in `wanserve.domain.settlement`, and every change is written by
`wanserve.journal`. See docs/architecture/03-dispatcher.md.
"""

from wanserve.dispatch.attempt import Attempt, DispatchContext
from wanserve.dispatch.config import DispatchConfig
from wanserve.dispatch.dispatcher import Dispatcher
from wanserve.dispatch.metrics import WorkerMetrics
from wanserve.dispatch.monitor import PoolMonitor
from wanserve.dispatch.pools import Pool, PoolKind, Pools
from wanserve.dispatch.reconciler import Reconciler
from wanserve.dispatch.retention import expire_artifacts
from wanserve.dispatch.routing import PoolView, Route, RoutingPolicy, route

__all__ = [
    "Attempt",
    "DispatchConfig",
    "DispatchContext",
    "Dispatcher",
    "Pool",
    "PoolKind",
    "PoolMonitor",
    "PoolView",
    "Pools",
    "Reconciler",
    "Route",
    "RoutingPolicy",
    "WorkerMetrics",
    "expire_artifacts",
    "route",
]
