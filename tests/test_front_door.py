"""Hostile input at the front door: the listener, the options, the credentials, the
reports and what reaches a terminal. Real processes where a process is involved."""

import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
from conftest import free_port
from pydicom import dcmread
from pydicom.filewriter import dcmwrite
from pydicom.multival import MultiValue
from pydicom.uid import UID, CTImageStorage, ExplicitVRLittleEndian
from pynetdicom import AE
from test_cli import run, send_args
from test_pacs import LISTENER, start_listener, stop_listener

from fw_gear_dicom_send.engine import SendRequest, send
from fw_gear_dicom_send.peer import Peer
from fw_gear_dicom_send.retry import RetryPolicy
from fw_gear_dicom_send.samples import make_ct
from fw_gear_dicom_send.status import ExitStatus, InstanceStatus


def test_a_traceback_from_a_process_fails_the_test() -> None:
    """The suite-wide check (conftest): any Python process run through
    ``subprocess`` that prints a traceback fails the test that ran it."""
    with pytest.raises(pytest.fail.Exception, match="a traceback from"):
        subprocess.run(
            [sys.executable, "-c", "1 / 0"], capture_output=True, check=False
        )


# Finding 3: the listener's file names are injective.

_UIDS = ["1.2.3.77", "1.2.3.77\\9", ".", "..", "1.2.3.77.", "1.2.3.77.9"]


def test_listen_files_different_uids_under_different_names(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for index, uid in enumerate(_UIDS):
        ds = make_ct(index)
        with warnings.catch_warnings(action="ignore"):  # not a valid UI value
            ds.SOPInstanceUID = UID(uid)
            ds.file_meta.MediaStorageSOPInstanceUID = UID(uid)
            dcmwrite(folder / f"{index}.dcm", ds)
    port = free_port()
    out = tmp_path / "out"
    listener = start_listener(out, port, "--layout", "flat")
    try:
        with warnings.catch_warnings(action="ignore"):
            result = send(SendRequest((folder,), Peer("127.0.0.1", port, LISTENER)))
    finally:
        stop_listener(listener)
    assert [row.status for row in result.rows] == [InstanceStatus.SENT] * len(_UIDS)
    files = sorted(out.rglob("*.dcm"))
    assert len(files) == len(_UIDS)
    with warnings.catch_warnings(action="ignore"):
        got = [dcmread(path)["SOPInstanceUID"].value for path in files]
    assert sorted(
        "\\".join(v) if isinstance(v, MultiValue) else str(v) for v in got
    ) == (sorted(_UIDS))


def _joined(value: object) -> str:
    """A value as it was written: several values joined by backslashes."""
    if isinstance(value, MultiValue):
        return "\\".join(str(v) for v in value)
    return str(value)


_PATIENTS = ["P/1", "P_1", "P\\1", "", "unknown-patient", ".", "..", " P_1"]


def test_listen_files_different_patients_under_different_folders(
    tmp_path: Path,
) -> None:
    """One instance UID, patient IDs that the old mapping made alike."""
    port = free_port()
    out = tmp_path / "out"
    listener = start_listener(out, port, "--layout", "patient")
    ae = AE(ae_title="SENDER")
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    try:
        assoc = ae.associate("127.0.0.1", port, ae_title=LISTENER)
        assert assoc.is_established
        try:
            for patient in _PATIENTS:
                ds = make_ct(1)
                ds.PatientID = patient
                assert assoc.send_c_store(ds).Status == 0
        finally:
            assoc.release()
    finally:
        stop_listener(listener)
    files = sorted(out.rglob("*.dcm"))
    assert len(files) == len(_PATIENTS)
    for path in files:
        assert path.resolve().is_relative_to(out.resolve())
    got = [dcmread(path)["PatientID"].value for path in files]
    assert sorted(
        "\\".join(v) if isinstance(v, MultiValue) else str(v) for v in got
    ) == (sorted(_PATIENTS))


# Finding 9: idle connections do not lock senders out of the listener.


def test_twenty_idle_connections_do_not_lock_out_a_sender(tmp_path: Path) -> None:
    port = free_port()
    listener = start_listener(tmp_path / "out", port, "--layout", "flat")
    path = tmp_path / "ct.dcm"
    dcmwrite(path, make_ct(1), enforce_file_format=True)
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(20)]
    try:
        time.sleep(0.5)  # the listener has taken them all
        started = time.monotonic()
        result = run(*send_args(path, port, LISTENER, "--retry-time=0"))
        took = time.monotonic() - started
    finally:
        for sock in idle:
            sock.close()
        stop_listener(listener)
    assert result.returncode == ExitStatus.SUCCESS, result.stderr
    assert "local limit exceeded" not in result.stderr
    assert took < 10
    assert len(list((tmp_path / "out").glob("*.dcm"))) == 1


def test_a_connection_that_never_asks_is_closed(tmp_path: Path) -> None:
    from fw_gear_dicom_send.receiver import REQUEST_TIMEOUT, StorageReceiver

    with StorageReceiver(tmp_path / "out") as scp:
        with socket.create_connection(("127.0.0.1", scp.port)) as idle:
            idle.settimeout(REQUEST_TIMEOUT + 10)
            started = time.monotonic()
            assert idle.recv(1) == b""  # the listener hung up
            assert time.monotonic() - started < REQUEST_TIMEOUT + 5
        # A sender is still welcome.
        path = tmp_path / "ct.dcm"
        dcmwrite(path, make_ct(2), enforce_file_format=True)
        result = send(
            SendRequest(
                (path,),
                Peer("127.0.0.1", scp.port, scp.ae_title),
                retry=RetryPolicy(budget=0),
            )
        )
    assert result.exit_status is ExitStatus.SUCCESS
