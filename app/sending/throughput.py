"""MISSIVE_SEND_RATE: one cap on messages per second shared by every worker.

Messages are paced, not counted per clock second: each window reserves the next free slot on
one shared schedule (a "theoretical arrival time" that advances by 1/rate per message) and
waits for it. So no second of the clock sees more than the cap plus one window, however many
workers share it, and a late worker never catches up with a burst. With Redis the schedule is
one key, advanced by a script on Redis's own clock (so workers' clocks may disagree or jump);
without it (the embedded default runs one worker) it is kept in the process.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from app.config import get_settings
from app.ratelimit import redis_client

# KEYS[1]: the schedule; ARGV[1]: seconds per message; ARGV[2]: messages in this window.
# Returns the seconds to wait (as a string: Lua numbers lose their fraction on the way out).
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local start = tonumber(redis.call('GET', KEYS[1]) or '0')
if start < now then start = now end
local after = start + tonumber(ARGV[1]) * tonumber(ARGV[2])
redis.call('SET', KEYS[1], string.format('%.6f', after), 'PX',
           math.ceil((after - now) * 1000) + 60000)
return string.format('%.6f', start - now)
"""

_local_lock = threading.Lock()
_local_next = 0.0


def window_size(configured: int) -> int:
    """Messages per window under the cap: a tenth of a second's worth, so a window landing at a
    second's edge adds little to that second."""
    rate = get_settings().send_rate
    if rate <= 0:
        return configured
    return max(1, min(configured, int(rate) // 10))


def _reserve(count: int, interval: float) -> float:
    settings = get_settings()
    if settings.redis_url:
        client = redis_client(settings.redis_url)
        key = f"{settings.redis_prefix}send-rate:schedule"
        reserve = client.register_script(_RESERVE)  # EVALSHA, loading the script once
        return float(reserve(keys=[key], args=[repr(interval), str(count)]))
    global _local_next
    with _local_lock:
        now = time.monotonic()
        start = max(now, _local_next)
        _local_next = start + interval * count
        return start - now


def acquire(count: int, stop: Callable[[], bool] | None = None) -> bool:
    """Block until `count` messages may go out under the global rate (at once if uncapped) and
    return True; return False if `stop()` turns true while waiting (the slot is then unused)."""
    rate = get_settings().send_rate
    if rate <= 0 or count <= 0:
        return True
    deadline = time.monotonic() + _reserve(count, 1.0 / rate)
    while True:
        if stop is not None and stop():
            return False
        left = deadline - time.monotonic()
        if left <= 0:
            return True
        time.sleep(min(left, 0.25))
