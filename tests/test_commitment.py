"""Storage Commitment (``send --commit``, ``dicom-send commit``) against real peers.

Orthanc (>= 1.6) is the SCP: it answers the N-ACTION, then opens an association of
its own to the AE its ``DicomModalities`` names for our AE title, our listener on
``--commit-port``, and sends the N-EVENT-REPORT there. DCMTK's storescp has no
Storage Commitment. Two in-process pynetdicom SCPs stand for PACSs Orthanc does
not imitate: one that never reports, one that reports on the association of the
request.
"""

import csv
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ExternalPeer, free_port, run_orthanc
from gearjob import Gear, Site, old_gear_config, series_zip
from pydicom import dcmread
from pydicom.dataset import Dataset
from pynetdicom import evt

from fw_gear_dicom_send.dicom.samples import write_series
from fw_gear_dicom_send.pacs.receiver import StorageReceiver
from fw_gear_dicom_send.status import ExitStatus

ME = "DICOM-SEND"
STORAGE_COMMITMENT_PUSH = "1.2.840.10008.1.20.1"
WELL_KNOWN_INSTANCE = "1.2.840.10008.1.20.1.1"
NOT_SUPPORTED = "Storage Commitment Push Model SOP Class (1.2.840.10008.1.20.1)"


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "fw_gear_dicom_send", "-v", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result


def send_args(folder: Path, port: int, called_ae: str, *extra: str) -> list[str]:
    return [
        "send",
        str(folder),
        "--host=127.0.0.1",
        f"--port={port}",
        f"--called-ae={called_ae}",
        f"--calling-ae={ME}",
        *extra,
    ]


def report_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture
def commit_port() -> int:
    return free_port()


@pytest.fixture
def pacs(tmp_path: Path, commit_port: int) -> Iterator[ExternalPeer]:
    """Orthanc that knows our AE title, and reports commitment to our listener."""
    yield from run_orthanc(
        tmp_path,
        DicomModalities={"dicom-send": [ME, "127.0.0.1", commit_port]},
    )


@pytest.fixture
def twenty(tmp_path: Path) -> Path:
    folder = tmp_path / "series"
    write_series(folder, 20, seed="commit", rows=16, columns=16)
    return folder


def test_orthanc_commits_to_all_twenty(
    pacs: ExternalPeer, twenty: Path, tmp_path: Path, commit_port: int
) -> None:
    report = tmp_path / "report.csv"
    result = cli(
        *send_args(twenty, pacs.port, pacs.ae_title),
        "--commit",
        f"--commit-port={commit_port}",
        "--commit-timeout=30",
        f"--report={report}",
    )
    assert result.returncode == ExitStatus.SUCCESS, result.stderr
    rows = report_rows(report)
    assert len(rows) == 20
    assert [row["committed"] for row in rows] == ["yes"] * 20
    assert "20 committed by the receiver, 0 not committed" in result.stdout
    # The transaction, the N-ACTION's status, the event report, in the log.
    assert "transaction 1." in result.stderr
    assert "N-ACTION status 0x0000 (Success)" in result.stderr
    assert "event report (type 1)" in result.stderr
    assert "Retrieve AE Title" in result.stderr


def _delete_instance(pacs: ExternalPeer, sop_instance_uid: str) -> None:
    lookup = urllib.request.Request(
        f"http://127.0.0.1:{pacs.http_port}/tools/lookup",
        data=sop_instance_uid.encode(),
        method="POST",
    )
    with urllib.request.urlopen(lookup, timeout=30) as response:
        found = [r for r in json.load(response) if r["Type"] == "Instance"]
    assert len(found) == 1
    delete = urllib.request.Request(
        f"http://127.0.0.1:{pacs.http_port}/instances/{found[0]['ID']}",
        method="DELETE",
    )
    with urllib.request.urlopen(delete, timeout=30):
        pass


def test_commit_later_names_the_instance_orthanc_lost(
    pacs: ExternalPeer, twenty: Path, tmp_path: Path, commit_port: int
) -> None:
    report = tmp_path / "report.csv"
    sent = cli(*send_args(twenty, pacs.port, pacs.ae_title), f"--report={report}")
    assert sent.returncode == ExitStatus.SUCCESS, sent.stderr
    before = report_rows(report)
    assert {row["committed"] for row in before} == {""}  # not asked
    lost = before[7]["sop_instance_uid"]
    _delete_instance(pacs, lost)

    result = cli(
        "commit",
        "--host=127.0.0.1",
        f"--port={pacs.port}",
        f"--called-ae={pacs.ae_title}",
        f"--calling-ae={ME}",
        f"--commit-port={commit_port}",
        "--commit-timeout=30",
        f"--report={report}",
    )
    assert result.returncode == ExitStatus.INCOMPLETE, result.stderr
    rows = report_rows(report)
    assert len(rows) == 20
    by_uid = {row["sop_instance_uid"]: row["committed"] for row in rows}
    assert by_uid.pop(lost) == "no: 0x0112 (No such object instance)"
    assert set(by_uid.values()) == {"yes"}
    assert "19 committed by the receiver, 1 not committed" in result.stdout
    assert "event report (type 2)" in result.stderr
    # The rest of the report is as the send wrote it.
    assert [{k: v for k, v in r.items() if k != "committed"} for r in rows] == [
        {k: v for k, v in r.items() if k != "committed"} for r in before
    ]


def test_storescp_has_no_storage_commitment_nothing_is_sent(
    storescp: ExternalPeer, twenty: Path, tmp_path: Path
) -> None:
    report = tmp_path / "report.csv"
    result = cli(
        *send_args(twenty, storescp.port, storescp.ae_title),
        "--commit",
        f"--commit-port={free_port()}",
        f"--report={report}",
    )
    assert result.returncode == ExitStatus.USAGE
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1, result.stderr
    assert NOT_SUPPORTED in errors[0]
    assert not list(storescp.out_dir.iterdir())  # nothing sent
    assert not report.exists()


class CommitmentReceiver(StorageReceiver):
    """A Storage SCP that takes Storage Commitment requests too.

    ``reply`` None: it answers every N-ACTION with success and never reports.
    ``reply`` "same": it reports, after answering, on the association of the
    request, every instance committed but those in ``lost``.
    """

    def __init__(
        self, out_dir: Path, reply: str | None, lost: frozenset[str] = frozenset()
    ) -> None:
        super().__init__(out_dir)
        self._ae.add_supported_context(STORAGE_COMMITMENT_PUSH)
        self.reply = reply
        self.lost = lost
        self.actions: list[Dataset] = []

    def _handlers(self) -> list[evt.EventHandlerType]:
        return [*super()._handlers(), (evt.EVT_N_ACTION, self._on_action)]

    def _on_action(self, event: evt.Event) -> tuple[int, None]:
        request = event.action_information
        self.actions.append(request)
        if self.reply == "same":
            threading.Thread(
                target=self._report, args=(event.assoc, request), daemon=True
            ).start()
        return 0x0000, None

    def _report(self, assoc: object, request: Dataset) -> None:
        time.sleep(0.3)  # after the N-ACTION's answer
        info = Dataset()
        info.TransactionUID = request.TransactionUID
        info.RetrieveAETitle = "STORE-SCP"
        done, failed = [], []
        for ref in request.ReferencedSOPSequence:
            item = Dataset()
            item.ReferencedSOPClassUID = ref.ReferencedSOPClassUID
            item.ReferencedSOPInstanceUID = ref.ReferencedSOPInstanceUID
            if ref.ReferencedSOPInstanceUID in self.lost:
                item.FailureReason = 0x0110
                failed.append(item)
            else:
                done.append(item)
        info.ReferencedSOPSequence = done
        if failed:
            info.FailedSOPSequence = failed
        assoc.send_n_event_report(  # type: ignore[attr-defined]
            info, 2 if failed else 1, STORAGE_COMMITMENT_PUSH, WELL_KNOWN_INSTANCE
        )


def test_a_pacs_that_never_reports_leaves_unknown_rows_without_hanging(
    tmp_path: Path, twenty: Path
) -> None:
    report = tmp_path / "report.csv"
    with CommitmentReceiver(tmp_path / "scp", reply=None) as scp:
        started = time.monotonic()
        result = cli(
            *send_args(twenty, scp.port, scp.ae_title),
            "--commit",
            f"--commit-port={free_port()}",
            "--commit-timeout=1.5",
            f"--report={report}",
            timeout=60,
        )
        elapsed = time.monotonic() - started
    assert result.returncode == ExitStatus.INCOMPLETE, result.stderr
    assert len(scp.received) == 20
    assert len(scp.actions) == 1
    assert len(scp.actions[0].ReferencedSOPSequence) == 20
    rows = report_rows(report)
    assert [row["status"] for row in rows] == ["sent"] * 20
    assert {row["committed"] for row in rows} == {"unknown: no answer within 1.5 s"}
    assert "0 committed by the receiver, 20 not committed" in result.stdout
    assert elapsed < 30


def test_a_report_on_the_association_of_the_request(
    tmp_path: Path, twenty: Path
) -> None:
    report = tmp_path / "report.csv"
    with CommitmentReceiver(tmp_path / "scp", reply="same") as scp:
        first = cli(*send_args(twenty, scp.port, scp.ae_title), f"--report={report}")
        assert first.returncode == ExitStatus.SUCCESS, first.stderr
        uids = [row["sop_instance_uid"] for row in report_rows(report)]
        scp.lost = frozenset(uids[:2])
        result = cli(
            "commit",
            "--host=127.0.0.1",
            f"--port={scp.port}",
            f"--called-ae={scp.ae_title}",
            f"--calling-ae={ME}",
            "--commit-port=0",
            "--commit-timeout=30",
            f"--report={report}",
            timeout=60,
        )
    assert result.returncode == ExitStatus.INCOMPLETE, result.stderr
    by_uid = {r["sop_instance_uid"]: r["committed"] for r in report_rows(report)}
    assert [by_uid[uid] for uid in uids[:2]] == ["no: 0x0110 (Processing failure)"] * 2
    assert {by_uid[uid] for uid in uids[2:]} == {"yes"}
    assert "Retrieve AE Title STORE-SCP" in result.stderr


def test_gear_counts_only_committed_images(
    gear: Gear, site: Site, tmp_path: Path
) -> None:
    """``storage_commitment: true``: an instance the receiver stored but did not
    commit to is not counted in Images Sent, and the job is incomplete."""
    acquisition = site.standin.acquisition(site.session, "Committed")
    series = series_zip(gear.folder.parent, 6, "committed")
    gear.add_file_input("file", series, acquisition)
    gear.destination = {"type": "acquisition", "id": acquisition}
    with zipfile.ZipFile(series) as z:
        lost = str(dcmread(z.open(sorted(z.namelist())[1])).SOPInstanceUID)
    with CommitmentReceiver(
        tmp_path / "scp", reply="same", lost=frozenset({lost})
    ) as scp:
        gear.config = old_gear_config(
            scp.port, storage_commitment=True, commit_port=0, commit_timeout=30
        )
        result = gear.run()
    assert result.returncode == ExitStatus.INCOMPLETE, result.stdout
    assert len(scp.received) == 6
    (row,) = gear.report_rows()
    assert (row["Images in Series"], row["Images Sent"], row["Status"]) == (
        "6",
        "5",
        "Incomplete",
    )
    committed = {r["sop_instance_uid"]: r["committed"] for r in gear.instance_rows()}
    assert committed.pop(lost) == "no: 0x0110 (Processing failure)"
    assert set(committed.values()) == {"yes"}
    assert "1 instances not committed by the receiver" in result.stdout


def test_batches_each_with_its_transaction_and_association(
    tmp_path: Path, twenty: Path
) -> None:
    """20 instances, 7 per N-ACTION: three transactions, each on an association
    of its own and reported there."""
    from fw_gear_dicom_send.pacs.commit_inbox import Inbox
    from fw_gear_dicom_send.pacs.commit_results import Reference
    from fw_gear_dicom_send.pacs.commitment import request_commitment
    from fw_gear_dicom_send.transport.association import Client
    from fw_gear_dicom_send.transport.peer import (
        AssociationSettings,
        Peer,
    )

    references = [
        Reference(str(ds.SOPClassUID), str(ds.SOPInstanceUID))
        for ds in (dcmread(path) for path in sorted(twenty.iterdir()))
    ]
    lost = references[9].sop_instance_uid
    with CommitmentReceiver(
        tmp_path / "scp", reply="same", lost=frozenset({lost})
    ) as scp:
        client = Client(
            Peer("127.0.0.1", scp.port, scp.ae_title), AssociationSettings()
        )
        verdicts = request_commitment(client, references, Inbox(), timeout=30, batch=7)
    assert [len(a.ReferencedSOPSequence) for a in scp.actions] == [7, 7, 6]
    assert len({a.TransactionUID for a in scp.actions}) == 3
    assert scp.associations == 3
    assert list(verdicts) == [r.sop_instance_uid for r in references]
    assert verdicts.pop(lost).text == "no: 0x0110 (Processing failure)"
    assert {v.text for v in verdicts.values()} == {"yes"}


def test_a_report_on_our_association_is_answered_before_it_is_released(
    tmp_path: Path, twenty: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pynetdicom writes the answer to a report after the handler that records it
    returns; the release must wait for that answer, however late it is written."""
    from pynetdicom.dimse import DIMSEServiceProvider
    from pynetdicom.dimse_primitives import N_EVENT_REPORT

    from fw_gear_dicom_send.pacs.commit_inbox import Inbox
    from fw_gear_dicom_send.pacs.commit_results import Reference
    from fw_gear_dicom_send.pacs.commitment import request_commitment
    from fw_gear_dicom_send.transport.association import Client
    from fw_gear_dicom_send.transport.peer import AssociationSettings, Peer

    send_msg = DIMSEServiceProvider.send_msg

    def answer_late(
        self: DIMSEServiceProvider, primitive: object, context_id: int
    ) -> None:
        if isinstance(primitive, N_EVENT_REPORT) and (
            primitive.MessageIDBeingRespondedTo is not None
        ):
            time.sleep(0.5)
        send_msg(self, primitive, context_id)  # type: ignore[arg-type]

    monkeypatch.setattr(DIMSEServiceProvider, "send_msg", answer_late)
    crashed: list[threading.ExceptHookArgs] = []
    monkeypatch.setattr(threading, "excepthook", crashed.append)
    references = [
        Reference(str(ds.SOPClassUID), str(ds.SOPInstanceUID))
        for ds in (dcmread(path) for path in sorted(twenty.iterdir()))
    ]
    with CommitmentReceiver(tmp_path / "scp", reply="same") as scp:
        client = Client(
            Peer("127.0.0.1", scp.port, scp.ae_title),
            AssociationSettings(acse_timeout=20),
        )
        started = time.monotonic()
        verdicts = request_commitment(client, references, Inbox(), timeout=30)
        elapsed = time.monotonic() - started
        deadline = time.monotonic() + 5
        while scp.released + scp.aborted < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert [c.exc_value for c in crashed] == []
    assert {v.text for v in verdicts.values()} == {"yes"}
    assert (scp.released, scp.aborted) == (1, 0)
    assert elapsed < 10
