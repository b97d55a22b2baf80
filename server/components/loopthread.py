"""A thread that runs its own asyncio event loop: the poll thread and the field-safety thread.

    loop, thread = start_loop_thread("field-safety")   # returns once the loop runs (RuntimeError after 10 s)
    asyncio.run_coroutine_threadsafe(coro, loop)       # work for that loop, from any thread
    await stop_loop_thread(loop, thread)               # stop the loop, join the thread (bounded)
"""

from __future__ import annotations

import asyncio
import contextlib
import threading


def start_loop_thread(name: str, timeout_s: float = 10.0) -> tuple[asyncio.AbstractEventLoop, threading.Thread]:
    """Start a daemon thread running a new event loop; RuntimeError if it is not running within ``timeout_s``
    (a loaded machine, a failing event-loop policy)."""
    ready = threading.Event()
    box: list[asyncio.AbstractEventLoop] = []

    def run() -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        box.append(loop)
        ready.set()
        try:
            loop.run_forever()
        finally:
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    ready.wait(timeout_s)
    if not box:
        raise RuntimeError(f"{name}: the event loop thread did not start within {timeout_s:g} s")
    return box[0], thread


async def stop_loop_thread(loop: asyncio.AbstractEventLoop | None, thread: threading.Thread | None,
                           timeout_s: float = 10.0) -> None:
    """Stop ``loop`` (from another thread) and wait for its thread, at most ``timeout_s``."""
    if loop is not None:
        loop.call_soon_threadsafe(loop.stop)
    if thread is not None:
        await asyncio.to_thread(thread.join, timeout_s)
