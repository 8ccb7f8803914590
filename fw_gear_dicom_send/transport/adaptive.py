"""``--associations auto``: as many associations as the receiver rewards.

The policy (:class:`Adaptive`), in the order it applies:

1. Start with ``start`` associations (4, as many as ``--associations`` gives
   by default).
2. Measure each number over a window. It opens at the first sample at least
   ``settle`` seconds (0.1) after the number was asked for with that many open
   (new workers and their associations cost time and CPU at first, retired ones
   until they have released theirs). It lasts ``window`` seconds (0.2) and at
   least ``answers`` answers per association (2); the first number's, only the
   answers if its associations mostly waited for them. While the transport has
   nothing left to give out (the tail of the send) nothing is judged.
3. A number that raised the rate of stored instances by ``margin`` (10%) or more
   over the number before it stays, and grows, up to ``ceiling``: by ``factor``
   (4) if the rate rose in proportion (the rate per association held), answers
   came as fast, and the associations spent most (80%) of their time waiting
   for them; by 2 if it rose in proportion otherwise, or if each association
   added gave at least half of what each gave before. It grows only while this
   machine's CPUs have room for half as much work again: busy two thirds of a
   whole window or more (but for the main process's own work, which does not
   grow with the associations), they would be shared by more associations
   rather than added to (the receiver's too, if it runs here), and it grows no
   more. A first number judged on its first answers grows at once only if its
   load, a clock tick (``tick``) per CPU higher, leaves room; else it is measured
   again over a whole window. At the ceiling, it is kept if the gain was worth
   three quarters of it.
   Else (or at the ceiling), once its best of two windows says so (the first may
   catch its new associations starting), try the number whose share the gain
   was worth (``before x gain`` rounded up: 6 after 4 -> 16 raised the rate
   1.5x), and keep it unless the larger number's rate beat its by ``margin`` in
   two windows.
4. A number that did not raise the rate by ``margin`` in two windows (the best
   counts: a window may catch a stall of the machine): back to the number
   before, or to the number between the two before whose share their gain was
   worth (as in 3); and grow no more. If response times rose by ``margin``
   meanwhile, the receiver was saturated; else the sender or the network was the
   limit. A number whose answers took twice as long as the number before's, at
   no higher rate, is undone as soon as each of its associations has answered
   (saturated), without waiting for its window.
5. A new association refused as transient: as many as were open then, never
   more for the rest of the send.
6. Answers 0xA7xx (out of resources) a window after as many were open as asked
   for (a settle after the last change; those of a larger number still closing
   do not count): back to half (not below the number before the last growth),
   or one fewer once it grows no more; and grow no more.

A send that ends before it settled keeps what it had.
"""

import logging
import math
from dataclasses import dataclass

from ..settings import Associations
from ..words import an_ordinal
from .pacing import Fixed, Pacing, Refusal, Sample

log = logging.getLogger(__name__)

_START = Sample(0.0, 0, 0, 0, 0.0, 0, 0)
_REJECTED = "the receiver rejected"
_OUT_OF_RESOURCES = "the receiver answered out of resources"
_MOSTLY = 0.8
"""The share of the time associations wait for answers that grows them faster."""
_HALF = 0.5
"""What more associations must each add (against each before) to grow further."""
_KEEP = 0.75
"""At the ceiling, a number whose gain was worth this share of it is kept: fewer
would save at most the rest, at the cost of windows at a lower rate."""
_BUSY = 2 / 3
"""CPUs busy this share of a window (but for the main process's own work) leave
no room to grow: the smallest step doubles the associations, whose work (and the
receiver's, if it runs here) could then grow by less than half."""
_SLOWER = 2.0
"""Answers this many times as slow as with fewer associations, at no higher
rate, end a number's window early (step 4)."""


@dataclass(frozen=True, slots=True)
class Measure:
    """What one number of associations gave over its window."""

    rate: float
    """Instances stored per second."""
    response: float
    """Mean seconds from a data set going out to its answer."""
    busy: float | None = None
    """The share of this machine's CPUs that was busy (None: unknown)."""
    seconds: float = 0.0
    """How long it was measured over."""


def measure(first: Sample, last: Sample) -> Measure:
    """The rate, the mean response time and the CPUs' load between two samples."""
    answered = last.answered - first.answered
    response = (last.response_seconds - first.response_seconds) / max(answered, 1)
    seconds = last.elapsed - first.elapsed
    busy = None
    if last.cpus and first.cpus:
        busy = (last.busy - first.busy) / (seconds * last.cpus)
    return Measure((last.stored - first.stored) / seconds, response, busy, seconds)


class Adaptive:
    """A pacing that grows while the receiver rewards it (see the module).

    Args:
        ceiling: Never more associations than this.
        start: How many to open first.
        margin: The rise of the rate that counts (0.1: 10%).
        window: Seconds each number is measured over, at least.
        answers: Answers per association each window needs, at least.
        tick: The CPU counters' step, in seconds (``/proc/stat`` counts in
            1/100 s).
    """

    def __init__(
        self,
        ceiling: int = 16,
        *,
        start: int = 4,
        factor: int = 4,
        margin: float = 0.1,
        settle: float = 0.1,
        window: float = 0.2,
        answers: int = 2,
        tick: float = 0.01,
    ) -> None:
        self._ceiling, self._factor, self._margin = ceiling, factor, margin
        self._settle, self._window, self._answers = settle, window, answers
        self._tick = tick
        self._level = max(1, min(start, ceiling))
        self._before: int | None = None
        """The number before the last change (what a step back returns to)."""
        self._probe_of: int | None = None
        """While trying a number below a larger one: the larger one."""
        self._probe_why = ""
        """Why not more than the larger one, if the number tried is no good."""
        self._path = [self._level]
        """The numbers it grew through."""
        self._changed = _START
        """The sample at which the number was last changed."""
        self._since: Sample | None = None
        """The sample at which the window opened (None: not yet)."""
        self._settled: Sample | None = None
        """The first sample, a settle after the last change, with as many open as
        asked for (None: not yet)."""
        self._second = False
        """Whether the number open has been measured a second time."""
        self._last = _START
        self._latest: Measure | None = None
        """The last window measured."""
        self._whole = False
        """Whether the number open is being measured over a whole window (its
        CPUs' load, first seen in a shorter one)."""
        self._tried: dict[int, Measure] = {}
        """The best window of each number."""
        self._why = ""
        """Why it grows no more ("" while it may)."""
        self._most = 0

    def start(self) -> int:
        """The first number: ``start``."""
        return self._level

    def sample(self, sample: Sample) -> int:
        """Judge the number open by what it gave; the number to have now."""
        self._last, self._most = sample, max(self._most, sample.open)
        after = sample.elapsed - self._changed.elapsed
        settling = self._settled is None and after >= self._settle
        if settling and sample.open == self._level:
            self._settled = sample
        # 0xA7xx since as many were open as asked for: those of a larger number,
        # still closing, are not this number's.
        settled = self._settled
        if (
            settled is not None
            and sample.out_of_resources > settled.out_of_resources
            and sample.elapsed - settled.elapsed >= self._window
        ):
            if self._level == 1 and self._why.startswith(_OUT_OF_RESOURCES):
                self._settled = sample
                return 1
            back = self._level - 1
            if not self._why and self._before:  # just grown: half, or as before
                back = min(back, max(self._before, self._level // 2))
            why = f"{_OUT_OF_RESOURCES} with {self._level}"
            return self._stop(max(1, back), why)
        if self._why or not sample.waiting:
            return self._level
        if self._since is None:
            if after >= self._settle and sample.open == self._level:
                self._since = sample
            return self._level
        since = self._since
        # The first number's associations mostly waiting for answers shows as
        # soon as they come: then it is judged at once (it grows 4x).
        long_enough = sample.elapsed - since.elapsed >= self._window or (
            self._before is None
            and not self._whole
            and _waiting(measure(since, sample), self._level)
        )
        enough = sample.answered - since.answered >= self._answers * self._level
        if not (long_enough and enough):
            return self._early(since, sample)
        new, old = measure(since, sample), self._tried.get(self._level)
        self._latest = new
        self._tried[self._level] = new if old is None or new.rate > old.rate else old
        return self._judge(sample)

    def _early(self, since: Sample, sample: Sample) -> int:
        """Before its window is over: back from a number saturating the receiver.

        Its answers take twice as long as the number before's, at no higher rate.
        """
        level, before = self._level, self._before
        was = self._tried.get(before) if before is not None else None
        if was is None or before is None or level <= before:
            return level
        if sample.answered - since.answered < level:  # one answer each, at least
            return level
        now = measure(since, sample)
        if now.response < _SLOWER * was.response or now.rate >= was.rate * (
            1 + self._margin
        ):
            return level
        self._tried[level] = now
        why = (
            f"the receiver saturated at {level}: response times rose, the rate did not"
        )
        return self._stop(before, why)

    def _judge(self, sample: Sample) -> int:
        here, level, before = self._tried[self._level], self._level, self._before
        if self._probe_of is not None:  # between two numbers measured
            larger = self._probe_of
            if here.rate * (1 + self._margin) >= self._tried[larger].rate:
                return self._stop(level, f"{larger} did not raise the rate further")
            if self._again(sample):
                return level
            return self._stop(larger, self._probe_why)
        if before is None:
            return self._grow(self._larger(here, level, True), sample)
        was = self._tried[before]
        gain = here.rate / max(was.rate, 1e-9)
        if gain >= 1 + self._margin:
            worth = math.ceil(before * gain)
            if worth >= level:  # in proportion; 4x if answered as fast as before
                held = here.response <= was.response * (1 + self._margin)
                return self._grow(self._larger(here, level, held), sample)
            if self._again(sample):  # its first window may have caught its start
                return level
            # what each association added, against what each had before
            added = (gain - 1) * before / (level - before)
            if added >= _HALF and level < self._ceiling:
                return self._grow(self._larger(here, level, False), sample)
            if level >= self._ceiling and worth >= level * _KEEP:
                return self._stop(level, "the ceiling")
            why = f"{level} raised the rate less than in proportion"
            why = "the ceiling" if level >= self._ceiling else why
            return self._probe(worth, (before, level), why, sample)
        if self._again(sample):
            return level
        why = f"{_nth(level, before)} did not raise the rate"
        if here.response > was.response * (1 + self._margin):
            why = f"the receiver saturated at {level}: response times rose"
            why += ", the rate did not"
        if len(self._path) >= 3:  # [..., earlier, before, level]
            earlier = self._path[-3]
            gain = self._tried[before].rate / max(self._tried[earlier].rate, 1e-9)
            return self._probe(
                math.ceil(earlier * gain), (earlier, before), why, sample
            )
        return self._stop(before, why)

    def _probe(
        self, worth: int, between: tuple[int, int], why: str, sample: Sample
    ) -> int:
        """Try ``worth`` if it lies between two numbers measured, else the larger.

        ``why``: why no more than the larger, should it be kept.
        """
        smaller, larger = between
        if not smaller < worth < larger:
            return self._stop(larger, why)
        self._probe_of, self._probe_why = larger, why
        return self._change(worth, sample)

    def _again(self, sample: Sample) -> bool:
        """Measure once more before a step back (a window may catch a stall)."""
        again, self._second = not self._second, True
        if again:
            self._since = sample
        return again

    def _larger(self, here: Measure, level: int, in_proportion: bool) -> int:
        """``factor`` times as many, or twice (see the module)."""
        fast = in_proportion and _waiting(here, level)
        return level * (self._factor if fast else 2)

    def _grow(self, wanted: int, sample: Sample) -> int:
        """Grow to ``wanted`` (at most the ceiling) if the CPUs have room.

        A window shorter than ``window`` (a first number's first answers) busy if
        counted a tick per CPU higher is measured again over a whole one.
        """
        if self._level >= self._ceiling:
            return self._stop(self._level, "the ceiling")
        latest = self._latest
        if latest is not None and latest.busy is not None:
            short = latest.seconds < self._window
            if short and latest.busy + self._tick / latest.seconds >= _BUSY:
                self._since, self._whole = sample, True
                return self._level
            if latest.busy >= _BUSY:
                self._tried[self._level] = latest  # the window the reason quotes
                why = f"this machine's CPUs were busy ({min(latest.busy, 1):.0%})"
                return self._stop(self._level, why)
        self._path.append(min(wanted, self._ceiling))
        return self._change(self._path[-1], sample)

    def _change(self, level: int, sample: Sample) -> int:
        log.info("associations: %d -> %d (%s)", self._level, level, self._said())
        self._before, self._level = self._level, level
        self._changed, self._since, self._second = sample, None, False
        self._settled, self._whole = None, False
        return level

    def _said(self) -> str:
        """What each number measured (empty if none was)."""
        return ", ".join(
            f"{n}: {m.rate:.0f}/s, {m.response * 1000:.0f} ms"
            + (f", CPUs {min(m.busy, 1):.0%} busy" if m.busy is not None else "")
            for n, m in sorted(self._tried.items())
        )

    def _stop(self, level: int, why: str) -> int:
        self._why, self._before = why, self._level
        self._level, self._changed, self._since = level, self._last, None
        self._settled = None
        said = self._said()
        why += f"; {said}" if said else ""
        log.info("associations: %d, growing no more (%s)", level, why)
        return level

    def refused(self, refusal: Refusal) -> int:
        """As many as were open when the receiver refused one more, from now on."""
        limit = max(1, min(refusal.open, self._level))
        if not self._why.startswith(_REJECTED) or limit < self._level:
            which = an_ordinal(refusal.open + 1) if refusal.open else "the first"
            detail = refusal.reason.rsplit(": ", 1)[-1].removesuffix(")")
            self._probe_of = None
            self._stop(limit, f"{_REJECTED} {which}: {detail}")
        self._ceiling = min(self._ceiling, limit)
        return self._level

    def summary(self) -> str:
        """How many were used and why no more: ``16 associations (the ceiling)``.

        Before it settled: the most open at once; empty if none ever was.
        """
        level = self._level if self._why else self._most
        if not level:
            return ""  # none was ever open
        plural = "s" if level != 1 else ""
        prefix = "up to " if self._why.startswith(_REJECTED) else ""
        why = self._why or "the send ended before it settled"
        return f"{prefix}{level} association{plural} ({why})"


def _waiting(measure: Measure, level: int) -> bool:
    """Whether ``level`` associations mostly waited for answers (Little's law)."""
    return measure.rate * measure.response / level >= _MOSTLY


def _nth(level: int, before: int) -> str:
    """What was tried beyond ``before``: ``a 4th`` (one more) or ``8``."""
    return an_ordinal(level) if level == before + 1 else str(level)


def pacing_for(associations: Associations, ceiling: int) -> Pacing:
    """The pacing of the settings: ``auto`` (:class:`Adaptive`) or a fixed number.

    Args:
        associations: ``auto``, or how many.
        ceiling: The most ``auto`` opens (``--max-associations``).
    """
    if isinstance(associations, int):
        return Fixed(associations)
    return Adaptive(ceiling)
