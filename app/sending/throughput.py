"""MISSIVE_SEND_RATE: one cap on messages per second shared by every worker.

With Redis, workers count into one key per second; without it (the embedded default runs one
worker) the count is kept in the process.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from app.config import get_settings
from app.ratelimit import redis_client

_local_lock = threading.Lock()
_local: dict[int, int] = {}


def acquire(count: int, stop: Callable[[], bool] | None = None) -> bool:
    """Block until `count` messages may go out under the global rate (at once if uncapped) and
    return True; return False if `stop()` turns true while waiting."""
    settings = get_settings()
    rate = settings.send_rate
    if rate <= 0 or count <= 0:
        return True
    per_second = max(1, int(rate))
    count = min(count, per_second)
    while True:
        if stop is not None and stop():
            return False
        second = int(time.time())
        if settings.redis_url:
            client = redis_client(settings.redis_url)
            key = f"{settings.redis_prefix}send-rate:{second}"
            pipe = client.pipeline()
            pipe.incrby(key, count)
            pipe.expire(key, 5)
            used = int(pipe.execute()[0])
            if used <= per_second:
                return True
            client.decrby(key, count)
        else:
            with _local_lock:
                used = _local.get(second, 0) + count
                if used <= per_second:
                    _local.clear()
                    _local[second] = used
                    return True
        time.sleep(max(0.001, second + 1 - time.time()))
