"""What a process remembers of a Redis that failed, so that an outage costs requests no waiting.

The shared cache, the rate limiter and the log-in throttle each only save work or protect capacity: when their
Redis fails they go on without it. Each keeps one `Outage`: after a failure it is not asked again for
`retry_seconds` (so a dead or hanging Redis costs one timeout now and then, not one per request), and the failure
is logged when an outage begins and at most once per `log_seconds` while it lasts, and its end once.
"""

import logging
import time

# What redis-py raises when Redis is down, unreachable or too slow (timeouts included), and the OS's errors when a
# socket cannot be opened.
from redis.exceptions import RedisError

REDIS_ERRORS = (RedisError, OSError)


class Outage:
    def __init__(
        self, name: str, *, means: str, retry_seconds: float, log_seconds: float = 60.0, logger: logging.Logger
    ):
        self.name = name  # e.g. "the rate limiter"
        self.means = means  # what a failure means, for the log: e.g. "rate limits not checked"
        self.retry_seconds = retry_seconds
        self.log_seconds = log_seconds
        self.logger = logger
        self.reset()

    def reset(self) -> None:
        """Forget a past failure (tests)."""
        self.until = 0.0
        self.logged = float("-inf")
        self.down = False

    def usable(self) -> bool:
        """False for `retry_seconds` after a failure."""
        return time.monotonic() >= self.until

    def failed(self, exc: BaseException) -> None:
        """Note a failure (logged, never raised)."""
        now = time.monotonic()
        self.until = now + self.retry_seconds
        if not self.down or now - self.logged >= self.log_seconds:
            self.logged = now
            self.logger.warning("%s: Redis failed (%r) and %s until it answers again", self.name, exc, self.means)
        self.down = True

    def answered(self) -> None:
        """Note a success: an outage that was logged is logged as over."""
        if self.down:
            self.down = False
            self.logger.info("%s: Redis answers again", self.name)
