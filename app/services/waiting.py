"""Pausing a service loop without missing a stop."""

from __future__ import annotations

import asyncio


async def wait_any(until: asyncio.Event, seconds: float, *also: asyncio.Event) -> None:
    """Sleep up to `seconds`, returning early when any of the events is set."""
    waiters = [asyncio.ensure_future(e.wait()) for e in (until, *also)]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
