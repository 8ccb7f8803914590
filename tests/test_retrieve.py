"""Retrieves that go partly wrong; C-GET of compressed instances. Against Orthanc."""

import re
from pathlib import Path

import pytest
import test_pacs
from faults import FaultyReceiver
from pydicom import dcmread
from pydicom.filewriter import dcmwrite
from pydicom.uid import generate_uid
from test_pacs import LISTENER, Pacs

from fw_gear_dicom_send import SendRequest, send
from fw_gear_dicom_send.cli.main import main
from fw_gear_dicom_send.dicom.samples import bundled, copy_as_new
from fw_gear_dicom_send.status import ExitStatus
from fw_gear_dicom_send.transport.peer import AssociationSettings, Peer

pytestmark = pytest.mark.peer
pacs = test_pacs.pacs
"""Orthanc holding two patients' studies (a fixture of this module's own)."""


def test_a_move_that_fails_part_way_exits_1_with_the_counts(
    pacs: Pacs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Orthanc stops the move at the third instance, which the destination
    refuses, and answers 0xC000 with zero counts: two were delivered."""
    args = ["move", *pacs.peer_args(), "--level", "study", "--uid", pacs.study_a]
    with FaultyReceiver(
        tmp_path / "in",
        answers=[0, 0, 0xA700],
        ae_title=LISTENER,
        port=pacs.listen_port,
    ) as destination:
        status = main([*args, "--dest-ae", LISTENER])
    captured = capsys.readouterr()
    assert len(destination.received) == 2
    assert status == ExitStatus.INCOMPLETE, captured.err
    assert "move: 2 completed, 3 failed, 0 warning" in captured.out
    assert re.search(
        r"dicom-send: move incomplete: 0xC000 \(.+\) after 2 completed, 3 failed",
        captured.err,
    )
    assert "retrieve" not in captured.err + captured.out


def test_get_of_a_jpeg2000_study_files_every_instance_as_stored_or_counts_it(
    pacs: Pacs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Orthanc cannot transcode JPEG 2000: it sends the instances as it holds them,
    in contexts of their own syntax that C-GET now proposes. One that cannot be
    filed is counted as failed, and the others are kept."""
    study = generate_uid(entropy_srcs=["j2k-study"])
    sources = tmp_path / "j2k"
    for number, name in enumerate(("MR_small_jp2klossless.dcm", "JPEG2000.dcm")):
        path = copy_as_new(
            bundled(name), sources / f"{number}.dcm", seed=f"j2k{number}"
        )
        ds = dcmread(path)
        ds.StudyInstanceUID = study
        dcmwrite(path, ds, enforce_file_format=True)
    loaded = send(
        SendRequest(
            paths=(sources,),
            peer=Peer("127.0.0.1", pacs.orthanc.port, "ORTHANC"),
            association=AssociationSettings(calling_ae="DICOM-SEND"),
        )
    )
    assert loaded.exit_status is ExitStatus.SUCCESS
    out = tmp_path / "got"
    args = [
        "retrieve", *pacs.peer_args(), "--level", "study", "--uid", study,
        "--out", str(out), "--method", "get", "--layout", "flat",
    ]  # fmt: skip
    assert main(args) == ExitStatus.SUCCESS, capsys.readouterr().err
    got = {str(dcmread(p).SOPInstanceUID): dcmread(p) for p in out.glob("*.dcm")}
    assert len(got) == 2
    for path in sources.iterdir():
        original = dcmread(path)
        received = got[str(original.SOPInstanceUID)]
        assert (
            received.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
        )
        assert received.file_meta.TransferSyntaxUID.is_compressed
        assert received.PixelData == original.PixelData

    # Again, into a folder where one of them cannot be written: exit 1, counts.
    again = tmp_path / "again"
    again.mkdir()
    (again / f"{next(iter(got))}.dcm").mkdir()
    args[args.index(str(out))] = str(again)
    assert main(args) == ExitStatus.INCOMPLETE
    assert "retrieve: 1 completed, 1 failed, 0 warning; 1 file written" in (
        capsys.readouterr().out
    )
