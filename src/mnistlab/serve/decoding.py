"""What every route that reads a picture shares: the limits on what is decoded, how many
pictures are worked on at once, and how a picture's refusal becomes an HTTP status.

    gate = DecodeGate()                          # one per app: /api/predict and the lab's
    answer = await gate.run(data, work, ...)     # work(data, ...) on the thread pool

A picture's bytes are capped before this (``MAX_UPLOAD_BYTES``); its header's pixel count
(``MAX_UPLOAD_PIXELS``) and what is decoded (``MAX_DECODED_PIXELS``) here. Decoding and the
forward pass are CPU work: off the event loop, ``DECODE_SLOTS`` at a time across all routes,
so that concurrent large pictures cannot add up, and the heaps are trimmed after a large one.
"""

from __future__ import annotations

import asyncio
import io
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi.concurrency import run_in_threadpool
from PIL import Image

from mnistlab.inference.preprocess import (
    ImageTooLarge,
    NoInk,
    NotAnImage,
    TooSmall,
    UnsupportedFormat,
)
from mnistlab.serve.guard import release_memory

MAX_UPLOAD_BYTES = 2 * 1024 * 1024      # 2 MiB: a phone JPEG fits, a flood does not
MAX_UPLOAD_PIXELS = 25_000_000          # decompression bombs stop at the header
# What is decoded (a PNG whole, a JPEG at its draft's reduced size): 4096 x 2048, a 4K
# screenshot or a scan at 300 dpi of a quarter page; a digit needs far less. An RGB picture
# this size costs 32 MiB decoded; a 24-megapixel PNG of 73 KB no longer gets 100.
MAX_DECODED_PIXELS = 4096 * 2048
DECODE_SLOTS = 2                        # pictures decoded at once; the others wait their turn
TRIM_AFTER_PIXELS = 1_000_000           # trim the heaps after decoding a picture this large

# a refused picture's status and error code (anything else it raises is 400 "bad_image")
REFUSALS = [(NoInk, 422, "no_ink"), (TooSmall, 422, "too_small"), (ImageTooLarge, 413, "too_large"),
            (UnsupportedFormat, 415, "unsupported_format"), (NotAnImage, 400, "not_an_image")]

T = TypeVar("T")


def refusal(exc: Exception) -> tuple[int, str]:
    """(HTTP status, error code) for a picture that was refused."""
    for cls, status, code in REFUSALS:
        if isinstance(exc, cls):
            return status, code
    return 400, "bad_image"


def declared_pixels(data: bytes) -> int:
    """The pixel count a PNG's or JPEG's header declares (0 if unreadable): read lazily."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            return int(img.size[0] * img.size[1])
    except Exception:  # preprocessing reports what is wrong with it
        return 0


class DecodeGate:
    """At most ``slots`` pictures worked on at once, across every route that shares it."""

    def __init__(self, slots: int = DECODE_SLOTS) -> None:
        self.slots = slots
        # one semaphore per event loop: a semaphore belongs to the loop it first waits in, and
        # an app may be served by several in turn (tests, TestClient)
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop,
                                                 asyncio.Semaphore] = weakref.WeakKeyDictionary()

    async def run(self, data: bytes, work: Callable[..., T], *args: Any) -> T:
        """``work(data, *args)`` on the thread pool when a slot is free."""
        loop = asyncio.get_running_loop()
        slot = self._by_loop.get(loop) or self._by_loop.setdefault(
            loop, asyncio.Semaphore(self.slots))
        async with slot:
            return await run_in_threadpool(_trimmed, data, work, *args)


def _trimmed(data: bytes, work: Callable[..., T], *args: Any) -> T:
    try:
        return work(data, *args)
    finally:
        if declared_pixels(data) >= TRIM_AFTER_PIXELS:
            release_memory()
