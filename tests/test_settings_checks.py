"""The settings types of a send check their numbers themselves (the Python API)."""

import pytest

from fw_gear_dicom_send import Peer, RetryPolicy, SendRequest, UsageError


def test_a_send_request_holds_its_associations_to_the_range() -> None:
    peer = Peer("127.0.0.1", 104, "PACS")
    with pytest.raises(UsageError, match=r"^associations must be a whole number "):
        SendRequest((), peer=peer, associations=33)


def test_a_retry_policy_holds_its_budget_to_the_range() -> None:
    with pytest.raises(UsageError, match=r"^the retry budget must be a number of s"):
        RetryPolicy(budget=-1)
