"""The attempts loop every transport shares, and the rows made once from outcomes."""

import ctypes
import multiprocessing
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from fw_gear_dicom_send.dicom.probe import probe
from fw_gear_dicom_send.dicom.samples import write_series
from fw_gear_dicom_send.sending.report import Row
from fw_gear_dicom_send.sending.tally import NOT_SENT, Tally, account, maybe_stored
from fw_gear_dicom_send.status import InstanceStatus
from fw_gear_dicom_send.transport.attempts import LOST_ASSOCIATION, Attempts, pause
from fw_gear_dicom_send.transport.interface import Ended, Unsent, unsent
from fw_gear_dicom_send.transport.outcome import Outcome, SendItem, association_lost
from fw_gear_dicom_send.transport.retry import Retrier, Retry, RetryPolicy

FAILED = InstanceStatus.FAILED
SENT = InstanceStatus.SENT
NO_WAIT = RetryPolicy(budget=60, first_wait=0.0, max_wait=0.0)


@pytest.fixture(scope="module")
def items(tmp_path_factory: pytest.TempPathFactory) -> list[SendItem]:
    folder = tmp_path_factory.mktemp("series")
    paths = write_series(folder, 4)
    return [
        SendItem(index, str(path), probe(path, 0x0021), ())
        for index, path in enumerate(paths)
    ]


def rows_of(items: list[SendItem]) -> list[Row]:
    return [
        Row(Path(item.path).name, FAILED, "", item.info.sop_instance_uid)
        for item in items
    ]


@pytest.mark.parametrize(
    "lost",
    [LOST_ASSOCIATION, "a connection broke after the request went out"],
)
def test_an_ambiguous_attempt_then_stored_says_it_may_have_arrived_twice(
    items: list[SendItem], lost: str
) -> None:
    attempts = Attempts(Retrier(NO_WAIT), lost)
    first = attempts.judge(items[0], association_lost("no answer", Retry.AMBIGUOUS))
    assert first.wait is not None
    final = attempts.judge(items[0], Outcome(SENT, 0x0000))
    assert final.wait is None
    assert final.outcome.reason == (
        f"sent again (2 attempts): {lost}, so the receiver may have received it twice"
    )


def test_a_transient_failure_then_stored_names_the_first(items: list[SendItem]) -> None:
    attempts = Attempts(Retrier(NO_WAIT))
    busy = Outcome(FAILED, 0xA700, "refused: busy", retry=Retry.TRANSIENT)
    assert attempts.judge(items[1], busy).wait is not None
    assert attempts.judge(items[1], busy).wait is not None
    final = attempts.judge(items[1], Outcome(SENT, 0x0000)).outcome
    assert final.reason == "stored after 3 attempts; first: refused: busy"


def test_retries_given_up_once_the_budget_is_spent(items: list[SendItem]) -> None:
    attempts = Attempts(Retrier(RetryPolicy(budget=0)))
    busy = Outcome(FAILED, 0xA700, "refused: busy", retry=Retry.TRANSIENT)
    verdict = attempts.judge(items[2], busy)
    assert verdict.wait is None
    assert verdict.outcome.reason == "refused: busy"  # a single attempt: no history


def _store_one(policy: RetryPolicy, shared: Any) -> None:
    Retrier(policy, shared).stored()


def test_a_store_by_another_process_starts_the_budget_again() -> None:
    """Workers share when the run last stored: each one's budget starts again."""
    context = multiprocessing.get_context("fork")
    shared = context.RawValue(ctypes.c_double, 0.0)
    policy = RetryPolicy(budget=2, first_wait=0.1, max_wait=0.1)
    waiting = Retrier(policy, shared)
    assert not waiting.has_stored
    time.sleep(1.5)
    other = context.Process(target=_store_one, args=(policy, shared))
    other.start()
    other.join()
    assert other.exitcode == 0
    time.sleep(1.0)  # 2.5 s since the waiting one started, 1 s since the store
    assert waiting.has_stored
    assert waiting.left > 0
    assert next(waiting.waits(), None) is not None


def test_a_final_refusal_is_not_tried_again(items: list[SendItem]) -> None:
    attempts = Attempts(Retrier(NO_WAIT))
    refused = Outcome(FAILED, 0xC000, "refused: 0xC000")
    assert attempts.judge(items[0], refused).wait is None


def test_a_pause_ends_once_stop_turns_true() -> None:
    assert pause(0.05, lambda: False) is False
    assert pause(60, lambda: True) is True  # at once: no wait at all
    stop = threading.Event()
    threading.Timer(0.1, stop.set).start()
    started = time.monotonic()
    assert pause(60, stop.is_set) is True
    assert time.monotonic() - started < 1


def test_a_wait_asked_for_is_cut_to_the_budget_left(items: list[SendItem]) -> None:
    attempts = Attempts(Retrier(RetryPolicy(budget=5, first_wait=0, max_wait=0)))
    assert attempts.asked_wait(None) == 0
    assert attempts.asked_wait(1.5) == 1.5
    assert 4 < attempts.asked_wait(300) <= 5
    assert Attempts(Retrier(RetryPolicy(budget=0))).asked_wait(300) == 0


def test_an_item_left_waiting_after_an_ambiguous_attempt_may_have_arrived(
    items: list[SendItem],
) -> None:
    attempts = Attempts(Retrier(NO_WAIT))
    busy = Outcome(FAILED, None, "HTTP 503", retry=Retry.TRANSIENT)
    attempts.judge(items[0], association_lost("broke", Retry.AMBIGUOUS))
    attempts.judge(items[0], busy)  # an ambiguous attempt, then a refused one
    attempts.judge(items[1], busy)
    assert attempts.may_have_arrived(items[0])
    assert not attempts.may_have_arrived(items[1])
    attempts.judge(items[0], Outcome(SENT, 0x0000))  # final: nothing waits
    assert not attempts.may_have_arrived(items[0])


def test_rows_are_made_from_outcomes_and_the_reasons_of_each_group(
    items: list[SendItem],
) -> None:
    rows = rows_of(items)
    tally = Tally(rows, items, 0.0, None)
    tally.sent(items[0])
    tally.outcome(items[0], Outcome(SENT, 0x0000, transfer_syntax="1.2.840.10008.1.2"))
    tally.sent(items[1])  # in flight when its worker died
    ended = Ended(
        (
            Unsent("worker process 1 ended", frozenset({0, 1})),
            Unsent("worker process 2 ended", frozenset({2})),
        )
    )
    made = account(
        rows, items, tally.outcomes, tally.in_flight, ended, error=ended.error,
        interrupted=False,
    )  # fmt: skip
    assert [row.status for row in made] == [SENT, FAILED, FAILED, FAILED]
    assert made[0].transfer_syntax == "1.2.840.10008.1.2"
    assert made[1].reason == maybe_stored("worker process 1 ended")
    assert made[2].reason == "worker process 2 ended"
    assert made[3].reason == "worker process 1 ended"  # the run's error
    assert rows[0].reason == ""  # the probed rows are left as they were


def test_an_interrupted_run_ignores_the_transport_reasons(
    items: list[SendItem],
) -> None:
    rows = rows_of(items)
    tally = Tally(rows, items, 0.0, None)
    tally.sent(items[2])
    made = account(
        rows, items, {}, tally.in_flight, Ended(), error="interrupted before it was "
        "sent", interrupted=True,
    )  # fmt: skip
    assert made[2].reason == maybe_stored("interrupted")
    assert made[0].reason == "interrupted before it was sent"


def test_without_a_reason_an_unsent_item_says_not_sent(items: list[SendItem]) -> None:
    made = account(
        rows_of(items), items, {}, set(), unsent("no association", items[:1]),
        error=None, interrupted=False,
    )  # fmt: skip
    assert [row.reason for row in made] == ["no association"] + [NOT_SENT] * 3
