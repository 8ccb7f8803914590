"""The main process's queue of a send over workers: who is given what, and when."""

from dataclasses import replace

from fw_gear_dicom_send.dicom.probe import DicomInfo
from fw_gear_dicom_send.status import InstanceStatus
from fw_gear_dicom_send.transport.outcome import Outcome, SendItem
from fw_gear_dicom_send.transport.retry import Retry
from fw_gear_dicom_send.transport.work_queue import State, WorkQueue

CT = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"


def _item(index: int, series: str = "1.2.3") -> SendItem:
    info = DicomInfo(CT, f"1.2.3.{index}", EXPLICIT, 0, 100, None, (), 0, series)
    return SendItem(index, f"/in/{index}.dcm", info, None)


def _queue(items: int, hold: int = 4) -> WorkQueue:
    queue = WorkQueue(hold=hold)
    for index in range(items):
        queue.add(_item(index))
    return queue


def test_a_worker_is_given_items_once_its_association_is_open() -> None:
    queue = _queue(10)
    queue.start(1)
    assert queue.top_up(1) == []
    queue.ready(1)
    assert [item.index for item in queue.top_up(1)] == [0, 1, 2, 3]
    assert queue.waiting == 6


def test_what_a_worker_hands_back_waits_in_front_and_it_is_given_nothing() -> None:
    queue = _queue(10)
    for number in (1, 2):
        queue.start(number)
        queue.ready(number)
    first = queue.top_up(1)  # 0-3
    assert [item.index for item in queue.top_up(2)] == [4, 5, 6, 7]
    queue.sent(1)  # gone out, then its association was lost
    lost = Outcome(InstanceStatus.FAILED, reason="lost", retry=Retry.AMBIGUOUS)
    queue.hand_back(1, [replace(first[1], earlier=(lost,)), *first[2:], first[0]])
    share = queue.shares[1]
    assert (share.lost, share.series, share.held, share.flying) == (True, "", {}, {})
    assert share.state is State.SENDING  # not a worker refused its first
    assert queue.top_up(1) == []  # nothing until its next association is open
    assert queue.top_up(2) == []  # it still holds more than half
    for index in (4, 5, 6):
        queue.answered(index)
    given = queue.top_up(2)
    assert [item.index for item in given] == [0, 1, 2]
    assert given[1].earlier == (lost,)  # the history came with it
    assert queue.unsent == 3 + 4  # 3, 8 and 9 waiting; 7, 0, 1 and 2 held by 2
    queue.ready(1)
    assert [item.index for item in queue.top_up(1)] == [3, 8, 9]


def test_items_handed_back_by_a_worker_that_no_longer_holds_them_are_ignored() -> None:
    queue = _queue(4)
    queue.start(1)
    queue.ready(1)
    given = queue.top_up(1)
    queue.answered(given[0].index)
    queue.hand_back(1, given[:1])  # answered meanwhile: not sent again
    assert queue.waiting == 0
    assert queue.item(given[0].index) is None


def test_a_series_handed_back_goes_to_another_worker_before_a_new_series() -> None:
    queue = WorkQueue(hold=4)
    for index in range(12):
        queue.add(_item(index, series=f"1.2.{index // 4}"))  # three series of 4
    for number in (1, 2):
        queue.start(number)
        queue.ready(number)
    first = queue.top_up(1)  # series 0
    second = queue.top_up(2)  # series 1
    queue.hand_back(1, first)
    for item in second:
        queue.answered(item.index)
    assert [item.index for item in queue.top_up(2)] == [0, 1, 2, 3]


def test_an_instance_a_lost_worker_keeps_is_still_to_send() -> None:
    """Flying with a worker whose association was lost, kept to be tried again
    there: the send is not over, and it counts until that worker is ready."""
    queue = _queue(2)
    queue.start(1)
    queue.ready(1)
    queue.top_up(1)  # 0 and 1
    queue.sent(0)
    queue.answered(1)
    assert queue.unsent == 0  # 0 went out: the worker answers for it
    queue.hand_back(1, [])  # lost; it keeps 0
    assert queue.unsent == 1
    assert not queue.done
    queue.ready(1)  # it tried 0 on its new association
    assert queue.unsent == 0
