"""When to try again: the one retry policy of sending.

An outcome is *final* (stored, or refused for good), *transient* (worth another try:
0xA7xx "out of resources", an association rejected as transient, an association lost
before the data set went out) or *ambiguous* (the association was lost after the
data set went out and before the response: the receiver may have stored it). Both of
the latter are tried again; an ambiguous one that then succeeds says so in the report.

Retries stop once nothing has been stored for ``budget`` seconds: a receiver that is
down for good costs one budget for the whole run, not one per instance. Waits grow
exponentially with full jitter (backoff's generators), capped at ``max_wait``.
"""

import enum
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..settings import RETRY_BUDGET, seconds


class Retry(enum.Enum):
    """Whether an outcome is worth another try."""

    FINAL = "final"
    """Stored, or refused for good (0xA9xx, 0xCxxx, a permanent rejection...)."""

    TRANSIENT = "transient"
    """Not stored, and the receiver said or showed it may work later."""

    AMBIGUOUS = "ambiguous"
    """Maybe stored: the data went out, the response never came."""


def retry_of_status(code: int) -> Retry:
    """How to treat a C-STORE response status: 0xA7xx is transient."""
    return Retry.TRANSIENT if code & 0xFF00 == 0xA700 else Retry.FINAL


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How long and how patiently to retry."""

    budget: float = RETRY_BUDGET
    """Seconds without a stored instance after which nothing is retried any more;
    0 turns retries off."""
    first_wait: float = 0.5
    max_wait: float = 10.0

    def __post_init__(self) -> None:
        seconds("retry_time", self.budget, "the retry budget")


class Retrier:
    """Tracks the budget of a run and hands out back-off waits.

    Args:
        policy: How long and how patiently.
        shared: The run's last stored instance, shared with its other senders (a
            ``multiprocessing`` double with a ``value``: the :func:`time.monotonic`
            of the last instance any of them stored, 0 for none). Each sender's
            budget then starts again with any sender's stored instance.
    """

    def __init__(self, policy: RetryPolicy, shared: Any = None) -> None:
        self.policy = policy
        self._progress = time.monotonic()
        self._shared = shared
        self._stored = False

    def _since(self) -> float:
        """When the budget started: the run's last stored instance, or the start."""
        if self._shared is None:
            return self._progress
        return max(self._progress, float(self._shared.value))

    @property
    def left(self) -> float:
        """Seconds of the budget left: from the last stored instance (or the start)."""
        return self.policy.budget - (time.monotonic() - self._since())

    @property
    def has_stored(self) -> bool:
        """Whether this run stored an instance.

        Then the receiver was up, and one that cannot be reached now is
        restarting (worth retrying).
        """
        return self._stored or bool(self._shared is not None and self._shared.value)

    def stored(self) -> None:
        """Note that an instance was stored: the budget starts again."""
        self._progress = time.monotonic()
        self._stored = True
        if self._shared is not None:
            self._shared.value = self._progress

    def waits(self) -> Iterator[float]:
        """Waits before each further attempt, until the budget runs out."""
        import backoff  # noqa: PLC0415 - it imports asyncio, which a send rarely needs

        policy = self.policy
        for wait in backoff.expo(factor=policy.first_wait, max_value=policy.max_wait):
            if wait is None:  # the generator's priming value
                continue
            jittered = backoff.full_jitter(wait)
            if time.monotonic() + jittered - self._since() > policy.budget:
                return
            yield jittered
