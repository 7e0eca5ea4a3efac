"""Infrastructure shared by every venue adapter.

- ``ratelimit``: rate limits as data and one header-aware limiter per venue;
- ``clock``: the offset to the venue's server time, and the resync-once-retry-once rule on skew;
- ``wsconn``: a reconnecting WebSocket connection (backoff, resubscribe, heartbeats, stall detection);
- ``books``: a local book per symbol on the kernels, with health, resync and staleness;
- ``ids``: engine client order ids.

This package module only holds :func:`cancel_task`; import the rest from the submodules.
"""

from __future__ import annotations

import asyncio

__all__ = ["cancel_task"]


async def cancel_task(task: asyncio.Task[object] | asyncio.Task[None] | None) -> None:
    """Cancel ``task`` and wait for it to finish. A cancellation of the *caller* still propagates."""
    if task is None:
        return
    if not task.done():
        task.cancel()
        await asyncio.wait([task])
    if not task.cancelled() and task.exception() is not None:
        # already logged by the task's own loop; retrieve it so asyncio does not warn
        task.exception()
