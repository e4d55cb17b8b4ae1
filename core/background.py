"""Work that outlives the request that started it, in one registry per process.

A request's coroutine is cancelled when its client disconnects, and asyncio keeps only weak references to tasks:
whatever must finish regardless (a settle, a hold's release, a batch of rate-limit refunds or after-debit hooks)
runs as a task kept here until it is done, and `drain` waits for all of them (tests; shutdown).
"""

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

T = TypeVar("T")
_tasks: set[asyncio.Task[Any]] = set()


def background(coro: Awaitable[T]) -> asyncio.Task[T]:
    """Run `coro` as a task nobody's cancellation reaches (kept referenced until done)."""
    task: asyncio.Task[T] = asyncio.ensure_future(coro)
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)
    return task


async def shielded(coro: Awaitable[T]) -> T:
    """Await `coro` to completion even if the caller is cancelled meanwhile (it then finishes on its own)."""
    return await asyncio.shield(background(coro))


async def drain() -> None:
    """Wait for every task still running on this event loop, including those they start meanwhile."""
    loop = asyncio.get_running_loop()
    while mine := [task for task in _tasks if task.get_loop() is loop]:
        await asyncio.gather(*mine, return_exceptions=True)
