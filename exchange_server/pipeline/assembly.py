"""Where the pipeline is put together: the only place that chooses its parts.

``serve`` and the pipeline process, the demo, the tests and the benchmarks all build the
pipeline here, by construction rather than by setting attributes afterwards:

- :func:`node_runner`: the runner over the node's spool with the catalog workflow as its
  router (there is no other production router: no bundle is accepted unreviewed);
- :func:`handover_to` a runner in this process (tests, benchmarks, ``compare``), or
  :func:`handover_to_process` for the ``serve`` front, whose pipeline runs in a child process.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from exchange_server.node import Node, utcnow
from exchange_server.pipeline.handover import Handover
from exchange_server.pipeline.runner import Runner
from exchange_server.pipeline.workflow import Workflow
from exchange_server.spool import Spool

__all__ = ["handover_to", "handover_to_process", "node_runner", "node_spool"]


def node_spool(node: Node) -> Spool:
    """The node's spool, as configured in ``node.toml``."""
    return Spool(node.config.path(node.config.spool))


def node_runner(
    node: Node,
    *,
    clock: Callable[[], dt.datetime] = utcnow,
    workers: int = 2,
    batch_size: int = 32,
) -> Runner:
    """The node's pipeline runner: its spool, the catalog :class:`Workflow`, one clock."""
    spool = node_spool(node)
    return Runner(
        node,
        Workflow(node, spool, clock=clock),
        spool=spool,
        clock=clock,
        workers=workers,
        batch_size=batch_size,
    )


def handover_to(runner: Runner) -> Handover:
    """A hand-over that wakes ``runner`` in this process."""
    return Handover(runner.node, runner.spool, clock=runner.clock, wake=runner.wake)


def handover_to_process(
    node: Node, wake: Callable[[], None], *, clock: Callable[[], dt.datetime] = utcnow
) -> Handover:
    """A hand-over for a front whose pipeline runs elsewhere; ``wake`` tells it there is work."""
    return Handover(node, node_spool(node), clock=clock, wake=wake)
