"""``--associations auto``: the policy against simulated receivers, on its own clock.

A simulated receiver stores ``per_association`` instances per second on each
association up to its knee and no more beyond (so, by Little's law, response
times rise past the knee); it may refuse associations beyond a limit, as
"local limit exceeded", and answer 0xA7xx beyond some number open. A simulated
transport obeys the pacing as the real one does: it opens up to the number
asked (a refused one is reported and not opened), retires the rest, and hands
over a sample every :data:`SAMPLE_EVERY` seconds.
"""

import logging
import random
from dataclasses import dataclass, field

import pytest

from fw_gear_dicom_send.settings import AUTO_ASSOCIATIONS
from fw_gear_dicom_send.transport.adaptive import Adaptive, pacing_for
from fw_gear_dicom_send.transport.pacing import SAMPLE_EVERY, Fixed, Refusal, Sample

LIMIT_REASON = "receiver rejected the association: local limit exceeded"
CPUS = 2


@dataclass
class Receiver:
    """What a receiver does with n associations open."""

    per_association: float = 45.0
    """Instances per second one association gets (a 20 ms round trip)."""
    knee: int = 6
    """Beyond this many, the rate stays flat."""
    limit: int | None = None
    """Associations at once: one more is refused."""
    busy_beyond: int | None = None
    """Beyond this many open, a tenth of the answers are 0xA7xx."""
    noise: float = 0.0
    """Each half second's rate is off by up to this share, either way."""
    cpu_per_instance: float | None = None
    """CPU-seconds each instance stored costs this machine (sender and, if it
    runs here, receiver), which has ``CPUS``; None: the load is unknown."""

    def rate(self, n: int) -> float:
        rate = self.per_association * min(n, self.knee)
        if self.cpu_per_instance:  # no faster than the CPUs can go
            rate = min(rate, CPUS / self.cpu_per_instance)
        return rate


@dataclass
class Run:
    """What the simulated transport saw."""

    open: list[tuple[float, int]] = field(default_factory=list)
    """(time, associations open) at each tick."""
    asked: list[tuple[float, int]] = field(default_factory=list)
    """(time, associations the pacing asked for) at each tick."""
    refused_at: float | None = None
    out_of_resources: int = 0
    seconds: float = 0.0


def simulate(
    pacing: Adaptive | Fixed, receiver: Receiver, items: int = 20_000, seed: int = 0
) -> Run:
    """Send ``items`` into ``receiver`` as ``pacing`` says; what happened."""
    tick, noise = 0.01, random.Random(seed)
    run, wanted, opened = Run(), pacing.start(), 0
    stored = answered = response = cpu_seconds = 0.0
    cpus = CPUS if receiver.cpu_per_instance is not None else 0
    factor, ticks = 1.0, 0
    while stored < items:
        while opened < wanted:  # open one at a time, as the transport does
            if receiver.limit is not None and opened >= receiver.limit:
                if run.refused_at is None:
                    run.refused_at = ticks * tick
                wanted = pacing.refused(Refusal(LIMIT_REASON, opened))
                break
            opened += 1
        opened = min(opened, wanted)  # retire the rest
        rate = receiver.rate(opened) * factor
        answers = rate * tick
        busy = receiver.busy_beyond is not None and opened > receiver.busy_beyond
        refusals = answers / 10 if busy else 0.0
        stored += answers - refusals
        answered += answers
        response += answers * opened / rate  # Little's law: n in flight
        cpu_seconds += answers * (receiver.cpu_per_instance or 0.0)
        run.out_of_resources += 1 if busy and ticks % 5 == 0 else 0
        ticks += 1
        run.open.append((ticks * tick, opened))
        run.asked.append((ticks * tick, wanted))
        if ticks % round(SAMPLE_EVERY / tick) == 0:
            factor = 1 + noise.uniform(-receiver.noise, receiver.noise)
            sample = Sample(
                elapsed=ticks * tick,
                open=opened,
                stored=int(stored),
                answered=int(answered),
                response_seconds=response,
                out_of_resources=run.out_of_resources,
                waiting=max(0, items - int(answered) - opened),
                busy=cpu_seconds,
                cpus=cpus,
            )
            wanted = pacing.sample(sample)
    run.seconds = ticks * tick
    return run


def settled(run: Run) -> int:
    """Associations open at the end."""
    return run.open[-1][1]


def test_it_settles_near_the_knee() -> None:
    pacing = Adaptive(16)
    run = simulate(pacing, Receiver(knee=6))
    assert 5 <= settled(run) <= 7
    # 4 -> 16 gave 1.5x: it tried the number that gain was worth, 6
    assert "16 did not raise the rate further" in pacing.summary()


@pytest.mark.parametrize("knee", [3, 5, 6, 7, 10, 12])
@pytest.mark.parametrize("seed", range(4))
def test_near_the_knee_with_noisy_rates(knee: int, seed: int) -> None:
    """Rates off by up to 4% either way: apart by less than the margin (10%)."""
    run = simulate(Adaptive(16), Receiver(knee=knee, noise=0.04), seed=seed)
    # the ceiling is kept when the gain to it was worth three quarters of it
    top = 16 if knee >= 0.75 * 16 else max(knee + 2, 4)
    assert max(knee - 1, 4) <= settled(run) <= top
    assert max(n for _, n in run.open) <= 4 * max(knee, 4)


def test_never_more_than_the_limit_after_the_first_refusal() -> None:
    pacing = Adaptive(16)
    run = simulate(pacing, Receiver(knee=12, limit=3))
    assert run.refused_at is not None
    asked = [n for t, n in run.asked if t >= run.refused_at]
    assert max(asked) <= 3
    assert settled(run) == 3
    assert pacing.summary() == (
        "up to 3 associations (the receiver rejected a 4th: local limit exceeded)"
    )


def test_a_refusal_says_the_receiver_s_reason() -> None:
    pacing = Adaptive(16)
    pacing.start()
    reason = (
        "association rejected by PACS@10.0.0.5:104 (Rejected Transient, "
        "Service Provider (Presentation): Local limit exceeded)"
    )
    assert pacing.refused(Refusal(reason, 1)) == 1
    assert pacing.refused(Refusal(reason, 1)) == 1
    assert pacing.summary() == (
        "up to 1 association (the receiver rejected a 2nd: Local limit exceeded)"
    )


def test_a_limit_reached_while_doubling_keeps_all_it_allows() -> None:
    pacing = Adaptive(16)
    run = simulate(pacing, Receiver(knee=16, limit=6))
    assert settled(run) == 6
    assert pacing.summary().startswith(
        "up to 6 associations (the receiver rejected a 7th"
    )


def test_it_steps_back_on_out_of_resources() -> None:
    pacing = Adaptive(16)
    run = simulate(pacing, Receiver(knee=16, busy_beyond=5))
    assert settled(run) <= 5
    late = [n for t, n in run.open if t >= run.seconds / 2]
    assert max(late) <= 5
    assert "out of resources" in pacing.summary()


def test_out_of_resources_at_one_association_is_said_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="fw_gear_dicom_send.transport.adaptive")
    pacing = Adaptive(16)
    run = simulate(pacing, Receiver(knee=16, busy_beyond=0), items=5000)
    assert settled(run) == 1
    said = [r.message for r in caplog.records if "growing no more" in r.message]
    at_one = [m for m in said if m.startswith("associations: 1, growing no more")]
    assert at_one == said[-1:]  # not again at each window, all send long
    assert "the receiver answered out of resources with 2" in at_one[0]


def test_a_receiver_that_does_not_reward_more_keeps_what_it_started_with() -> None:
    pacing = Adaptive(16)
    run = simulate(pacing, Receiver(knee=1))
    assert settled(run) == 4
    assert max(n for _, n in run.open) <= 16
    assert pacing.summary() == (
        "4 associations (the receiver saturated at 16: response times rose, "
        "the rate did not)"
    )


def test_started_small_it_settles_below_four_on_such_a_receiver() -> None:
    pacing = Adaptive(16, start=2)
    run = simulate(pacing, Receiver(knee=1))
    assert settled(run) <= 2
    assert max(n for _, n in run.open) <= 8
    assert pacing.summary() == (
        "2 associations (the receiver saturated at 8: response times rose, "
        "the rate did not)"
    )


def test_an_always_rewarding_receiver_gets_the_ceiling_soon() -> None:
    pacing = Adaptive(16)
    run = simulate(pacing, Receiver(knee=100))
    assert settled(run) == 16
    assert pacing.summary() == "16 associations (the ceiling)"
    first = next(t for t, n in run.open if n == 16)
    assert first <= 2.5  # a send of 1000 far images takes about three seconds


def test_a_lower_ceiling_is_kept() -> None:
    run = simulate(Adaptive(5), Receiver(knee=100))
    assert max(n for _, n in run.open) == 5


def test_it_does_not_grow_when_this_machine_s_cpus_are_busy() -> None:
    """A receiver on this machine, sharing its 2 CPUs: 4 keep them busy."""
    pacing = Adaptive(16)
    run = simulate(pacing, Receiver(knee=100, cpu_per_instance=2 / 190))
    assert max(n for _, n in run.open) == 4
    assert pacing.summary() == "4 associations (this machine's CPUs were busy (95%))"


def test_cpus_with_room_let_it_grow_to_the_ceiling() -> None:
    """A far receiver: each instance costs this machine a little CPU."""
    pacing = Adaptive(16)
    run = simulate(pacing, Receiver(knee=100, cpu_per_instance=0.001))
    assert settled(run) == 16
    assert pacing.summary() == "16 associations (the ceiling)"


def test_cpus_that_fill_up_on_the_way_stop_the_growth() -> None:
    """8 associations fill the CPUs: no 16, 32 (the ceiling) even less."""
    pacing = Adaptive(32, start=2)
    run = simulate(pacing, Receiver(knee=100, cpu_per_instance=2 / 380))
    assert max(n for _, n in run.open) == 8
    assert settled(run) == 8
    assert pacing.summary().startswith("8 associations (this machine's CPUs were busy")


def test_busy_cpus_seen_over_the_first_answers_only_are_measured_again() -> None:
    """4 mostly waiting, judged on 2 answers each (0.05 s): its CPUs' load then
    is measured again over a whole window before it stops growing for them."""
    pacing = Adaptive(16)
    assert pacing.sample(Sample(0.1, 4, 0, 0, 0.0, 0, 1000, 0.0, 2)) == 4
    # 8 answers of 22 ms in 0.05 s, the CPUs 90% busy (the workers starting)
    assert pacing.sample(Sample(0.15, 4, 8, 8, 0.176, 0, 1000, 0.09, 2)) == 4
    # a whole window, 30% busy: 4 -> 16
    assert pacing.sample(Sample(0.36, 4, 40, 40, 0.88, 0, 1000, 0.21, 2)) == 16


def test_cpus_busy_over_half_the_time_still_leave_room_to_grow() -> None:
    """A far receiver on a slower machine: 4 keep its CPUs 55% busy; 16 could
    still do more than half as much again (and the rate decides then). Seen over
    the first answers only (0.05 s, 10 clock ticks), 55% might be 75%: it is
    measured again over a whole window first."""
    pacing = Adaptive(16)
    assert pacing.sample(Sample(0.1, 4, 0, 0, 0.0, 0, 1000, 0.0, 2)) == 4
    assert pacing.sample(Sample(0.15, 4, 8, 8, 0.176, 0, 1000, 0.055, 2)) == 4
    assert pacing.sample(Sample(0.36, 4, 40, 40, 0.88, 0, 1000, 0.286, 2)) == 16


def test_first_answers_with_idle_cpus_grow_it_at_once() -> None:
    """A far receiver: 8 answers of 22 ms in 0.04 s, the CPUs 22% busy (47% at
    most, a clock tick per CPU higher): 4 -> 16 without waiting for a window."""
    pacing = Adaptive(16)
    assert pacing.sample(Sample(0.1, 4, 0, 0, 0.0, 0, 1000, 0.0, 2)) == 4
    assert pacing.sample(Sample(0.14, 4, 8, 8, 0.176, 0, 1000, 0.0176, 2)) == 16


def test_a_load_seen_over_less_than_a_clock_tick_is_measured_again() -> None:
    """Loopback: 8 answers of 3.3 ms in 8 ms, less than a clock tick of the CPU
    counters, which read 59% busy then. Over a whole window they are 87% busy:
    4 associations, which the fast first judgement would have made 16."""
    pacing = Adaptive(16)
    assert pacing.sample(Sample(0.1, 4, 0, 0, 0.0, 0, 1000, 0.0, 2)) == 4
    assert pacing.sample(Sample(0.108, 4, 8, 8, 0.0264, 0, 1000, 0.0094, 2)) == 4
    assert pacing.sample(Sample(0.31, 4, 220, 220, 0.7, 0, 1000, 0.3609, 2)) == 4
    assert pacing.summary() == "4 associations (this machine's CPUs were busy (87%))"


def test_busy_cpus_over_a_whole_window_stop_the_growth() -> None:
    pacing = Adaptive(16)
    assert pacing.sample(Sample(0.1, 4, 0, 0, 0.0, 0, 1000, 0.0, 2)) == 4
    assert pacing.sample(Sample(0.15, 4, 8, 8, 0.176, 0, 1000, 0.09, 2)) == 4
    assert pacing.sample(Sample(0.36, 4, 40, 40, 0.88, 0, 1000, 0.468, 2)) == 4
    assert pacing.summary() == "4 associations (this machine's CPUs were busy (90%))"


def test_auto_is_not_slower_than_four_on_these_receivers() -> None:
    receivers = (
        Receiver(knee=6),
        Receiver(knee=100),
        Receiver(knee=2),
        Receiver(knee=100, cpu_per_instance=2 / 190),
    )
    for receiver in receivers:
        auto = simulate(Adaptive(16), receiver, items=2000).seconds
        four = simulate(Fixed(4), receiver, items=2000).seconds
        assert auto <= four * 1.1, receiver


def _opened(pacing: Adaptive) -> Adaptive:
    """Started, with its 2 associations open at 0.1 s (its first window opens)."""
    assert pacing.start() == 2
    assert pacing.sample(Sample(0.1, 2, 0, 0, 0.0, 0, 1000)) == 2
    return pacing


def test_the_first_window_opens_once_its_associations_are_open() -> None:
    """The time before they open (the sender starting up) is not held against them."""
    pacing = Adaptive(16, start=4)
    pacing.start()
    for tenth in range(1, 6):  # nothing open yet
        assert pacing.sample(Sample(tenth / 10, 0, 0, 0, 0.0, 0, 1000)) == 4
    assert pacing.sample(Sample(0.6, 4, 0, 0, 0.0, 0, 1000)) == 4  # all 4 open
    # 200/s over 4, answered in 20 ms: they wait for answers 100% of the time
    assert pacing.sample(Sample(0.8, 4, 40, 40, 0.8, 0, 1000)) == 16


def test_less_than_in_proportion_is_measured_twice_before_fewer_are_tried() -> None:
    pacing = Adaptive(16, start=4)
    pacing.start()
    pacing.sample(Sample(0.1, 4, 0, 0, 0.0, 0, 1000))
    assert pacing.sample(Sample(0.35, 4, 40, 40, 0.8, 0, 1000)) == 16  # 160/s
    assert pacing.sample(Sample(0.5, 16, 40, 40, 0.8, 0, 1000)) == 16  # window opens
    # 16 at first: 1.5x the rate of 4 (its new associations were starting up)
    assert pacing.sample(Sample(0.75, 16, 100, 100, 5.6, 0, 1000)) == 16  # again
    # then 2.5x: 10 would have done as well, if the rate is flat beyond it
    assert pacing.sample(Sample(1.0, 16, 200, 200, 12.0, 0, 1000)) == 10


def test_the_ceiling_is_kept_when_the_gain_was_worth_three_quarters_of_it() -> None:
    pacing = Adaptive(16, start=4)
    pacing.start()
    pacing.sample(Sample(0.1, 4, 0, 0, 0.0, 0, 1000))
    assert pacing.sample(Sample(0.35, 4, 40, 40, 0.8, 0, 1000)) == 16  # 160/s
    assert pacing.sample(Sample(0.5, 16, 40, 40, 0.8, 0, 1000)) == 16  # window opens
    # 3.2x with 4x as many (worth 13 of 16): measured twice, then kept
    assert pacing.sample(Sample(0.75, 16, 168, 168, 5.9, 0, 1000)) == 16
    assert pacing.sample(Sample(1.0, 16, 296, 296, 11.0, 0, 1000)) == 16
    assert pacing.summary() == "16 associations (the ceiling)"


def test_a_rate_that_does_not_rise_without_longer_answers_is_not_saturation() -> None:
    pacing = _opened(Adaptive(16, start=2))
    assert pacing.sample(Sample(0.6, 2, 50, 50, 1.0, 0, 1000)) == 8  # 100/s
    assert pacing.sample(Sample(1.0, 8, 100, 100, 2.0, 0, 1000)) == 8  # window opens
    # 8: the same rate as 2, the same time for each answer (the sender is the limit)
    assert pacing.sample(Sample(1.5, 8, 150, 150, 3.0, 0, 1000)) == 8  # once more
    assert pacing.sample(Sample(2.0, 8, 200, 200, 4.0, 0, 1000)) == 2
    assert pacing.summary() == "2 associations (8 did not raise the rate)"


def test_one_window_caught_in_a_stall_does_not_stop_the_growth() -> None:
    pacing = _opened(Adaptive(16, start=2))
    assert pacing.sample(Sample(0.6, 2, 50, 50, 1.0, 0, 1000)) == 8
    pacing.sample(Sample(1.0, 8, 100, 100, 2.0, 0, 1000))
    assert pacing.sample(Sample(1.5, 8, 120, 120, 8.0, 0, 1000)) == 8  # a stall
    assert pacing.sample(Sample(2.0, 8, 320, 320, 12.0, 0, 1000)) == 16


@pytest.mark.parametrize(("response", "then"), [(0.05, 32), (0.1, 16)])
def test_answers_slower_than_before_grow_by_two(response: float, then: int) -> None:
    pacing = _opened(Adaptive(32, start=2))
    assert pacing.sample(Sample(0.6, 2, 20, 20, 1.0, 0, 1000)) == 8  # 40/s, 50 ms
    pacing.sample(Sample(1.0, 8, 40, 40, 2.0, 0, 1000))
    # 8: 160/s, in proportion; answered in 50 ms as before, or in 100 ms
    assert pacing.sample(Sample(1.5, 8, 120, 120, 2.0 + 80 * response, 0, 1000)) == then


def test_associations_that_mostly_send_grow_by_two() -> None:
    pacing = _opened(Adaptive(16, start=2))
    # 100/s over 2, answered in 2 ms: each waits a tenth of the time
    assert pacing.sample(Sample(0.6, 2, 50, 50, 0.1, 0, 1000)) == 4


def test_a_window_opens_once_all_asked_for_are_open() -> None:
    pacing = _opened(Adaptive(16, start=2))
    assert pacing.sample(Sample(0.6, 2, 50, 50, 1.0, 0, 1000)) == 8
    assert pacing.sample(Sample(1.0, 5, 80, 80, 1.6, 0, 1000)) == 8  # opening
    assert pacing.sample(Sample(1.5, 8, 110, 110, 2.2, 0, 1000)) == 8  # all open
    # from 1.5 s: 8 gave four times the rate of 2 (100/s): on to the ceiling
    assert pacing.sample(Sample(2.0, 8, 310, 310, 6.2, 0, 1000)) == 16


def test_the_tail_of_a_send_is_not_judged() -> None:
    pacing = _opened(Adaptive(16, start=2))
    assert pacing.sample(Sample(0.6, 2, 50, 50, 1.0, 0, 0)) == 2
    assert pacing.sample(Sample(1.0, 2, 100, 100, 2.0, 0, 0)) == 2
    assert pacing.summary() == "2 associations (the send ended before it settled)"


@pytest.mark.parametrize(
    ("open_", "which"), [(0, "the first"), (3, "a 4th"), (7, "an 8th"), (10, "an 11th")]
)
def test_a_refusal_names_the_one_refused(open_: int, which: str) -> None:
    pacing = Adaptive(16, start=16)
    pacing.start()
    pacing.refused(Refusal(LIMIT_REASON, open_))
    assert f"(the receiver rejected {which}: local limit exceeded)" in pacing.summary()


def test_the_settings_make_the_pacing() -> None:
    assert isinstance(pacing_for(AUTO_ASSOCIATIONS, 16), Adaptive)
    fixed = pacing_for(4, 16)
    assert isinstance(fixed, Fixed)
    assert fixed.start() == 4
    assert Adaptive(1).start() == 1


def test_a_number_that_only_slows_the_answers_is_left_before_its_window_ends() -> None:
    """Flat beyond 4 (a receiver whose threads are all busy): 16 answers four
    times as slowly at the same rate, and is undone once each has answered."""
    pacing = Adaptive(16)
    run = simulate(pacing, Receiver(knee=4))
    at_16 = [t for t, n in run.open if n == 16]
    assert at_16
    assert at_16[-1] - at_16[0] <= 0.3
    assert settled(run) == 4
    assert pacing.summary() == (
        "4 associations (the receiver saturated at 16: response times rose, "
        "the rate did not)"
    )


def test_the_first_number_is_judged_on_its_first_answers() -> None:
    """Before a window's time: whether they mostly wait shows at once."""
    pacing = Adaptive(16, start=4)
    pacing.start()
    assert pacing.sample(Sample(0.1, 4, 0, 0, 0.0, 0, 1000)) == 4  # all 4 open
    # 0.1 s later, four answers each, in 23 ms: they mostly wait for answers
    assert pacing.sample(Sample(0.2, 4, 16, 16, 0.368, 0, 1000)) == 16


def test_out_of_resources_from_associations_still_closing_are_not_counted() -> None:
    pacing = Adaptive(16, start=4)
    pacing.start()
    pacing.sample(Sample(0.1, 4, 0, 0, 0.0, 0, 1000))
    assert pacing.sample(Sample(0.35, 4, 40, 40, 0.8, 0, 1000)) == 16
    pacing.sample(Sample(0.5, 16, 40, 40, 0.8, 0, 1000))  # all 16 open
    assert pacing.sample(Sample(0.75, 16, 160, 170, 5.0, 10, 1000)) == 8  # 0xA7xx
    # the 8 retired finish what is on their wire, answered 0xA7xx too, as they close
    assert pacing.sample(Sample(0.9, 14, 200, 214, 6.0, 14, 1000)) == 8
    assert pacing.sample(Sample(1.1, 10, 260, 278, 7.5, 18, 1000)) == 8
    assert pacing.sample(Sample(1.3, 8, 320, 338, 9.0, 18, 1000)) == 8  # settled
    assert pacing.sample(Sample(1.6, 8, 400, 418, 11.0, 18, 1000)) == 8
    assert pacing.summary() == (
        "8 associations (the receiver answered out of resources with 16)"
    )


def test_a_first_number_that_mostly_sends_is_measured_over_a_whole_window() -> None:
    """Its first answers (the start of the send) would say little of its rate."""
    pacing = Adaptive(16, start=4)
    pacing.start()
    assert pacing.sample(Sample(0.1, 4, 0, 0, 0.0, 0, 1000)) == 4  # all 4 open
    # 0.05 s later, four answers each, in 2 ms: they mostly send
    assert pacing.sample(Sample(0.15, 4, 16, 16, 0.032, 0, 1000)) == 4
    assert pacing.sample(Sample(0.35, 4, 160, 160, 0.32, 0, 1000)) == 8
