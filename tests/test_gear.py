"""The gear end to end: ``python run.py`` in a gear folder, the real flywheel-sdk
client talking HTTP to the stand-in Flywheel API, a real Storage SCP receiving."""

import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from checks import assert_tagged_copy
from conftest import MixedZip, free_port, sha256
from faults import QueryableReceiver
from gearjob import Gear, Site, old_gear_config, series_zip
from pydicom import dcmread
from standin import DROP, SECRET
from test_stow import run_dicomweb_orthanc

from fw_gear_dicom_send.dicom.samples import write_series
from fw_gear_dicom_send.pacs.receiver import StorageReceiver
from fw_gear_dicom_send.status import ExitStatus


def test_file_input_zip_as_configured_for_the_old_gear(
    gear: Gear, site: Site, receiver: StorageReceiver
) -> None:
    """Acceptance 1: a zip input and a config.json written for the 4.x gear."""
    acquisition = site.standin.acquisition(site.session, "CT Chest")
    series = series_zip(gear.folder.parent, 12, "chest")
    gear.add_file_input("file", series, acquisition)
    gear.config = old_gear_config(receiver.port)
    gear.destination = {"type": "acquisition", "id": acquisition}
    before = sha256(gear.folder / "input" / "file" / series.name)

    result = gear.run()

    assert result.returncode == ExitStatus.SUCCESS, result.stdout
    assert len(receiver.received) == 12
    for received in receiver.received:
        ds = dcmread(received.path)
        assert ds.get_private_item(0x0021, 0x00, "Flywheel").value == "DICOM Send"
        assert received.calling_ae == "flywheel"
    (report,) = gear.reports()
    assert report.name.startswith("dicom-send_report-Baseline_CT_Chest_")
    assert gear.report_rows() == [
        {
            "Acquisition ID": acquisition,
            "FW Path": f"radiology/Trial 7/P-001/Baseline/CT Chest/files/{series.name}",
            "Filename": series.name,
            "Images in Series": "12",
            "Images Sent": "12",
            "Status": "Complete",
        }
    ]
    (upload,) = site.standin.uploads
    assert (upload.container_type, upload.container_id) == ("session", site.session)
    assert upload.name == report.name
    assert upload.content == report.read_bytes()
    assert sha256(gear.folder / "input" / "file" / series.name) == before
    assert len(gear.instance_rows()) == 12
    *_, files, instances, stored = result.stdout.splitlines()  # the log ends so
    assert files.endswith("summary: 1 file: 1 Complete, 0 Incomplete, 0 Failed")
    assert "summary: 12 files: 12 sent" in instances
    assert "summary: 12 of 12 instances stored" in stored


def test_mixed_zip_input_reports_what_was_not_sent(
    gear: Gear, site: Site, mixed_zip: MixedZip, receiver: StorageReceiver
) -> None:
    acquisition = site.standin.acquisition(site.session, "Mixed")
    path = gear.add_file_input("file", mixed_zip.path, acquisition)
    gear.config = old_gear_config(receiver.port)
    gear.destination = {"type": "acquisition", "id": acquisition}

    result = gear.run()

    assert result.returncode == ExitStatus.INCOMPLETE
    (row,) = gear.report_rows()
    # 24 DICOM files, the truncated one the only one not stored; 3 junk files.
    assert (row["Images in Series"], row["Images Sent"], row["Status"]) == (
        "24",
        "23",
        "Incomplete",
    )
    instances = gear.instance_rows()
    assert len(instances) == 27
    truncated = [r for r in instances if r["file"].endswith(mixed_zip.truncated)]
    assert truncated[0]["status"] == "failed"
    assert f"{path.name}!{mixed_zip.truncated}" in truncated[0]["file"]
    by_uid = {r.sop_instance_uid: r.path for r in receiver.received}
    for uid, source in mixed_zip.sources.items():
        assert_tagged_copy(by_uid[uid], source)


@dataclass
class Session:
    """A session's DICOM files in the stand-in, by name, and the instances in them."""

    id: str
    files: dict[str, Path] = field(default_factory=dict)
    instances: int = 0


def fill_session(site: Site, session: str, folder: Path, seed: str) -> Session:
    """Two acquisitions: a zipped series beside a NIfTI file; two single files."""
    result = Session(session)
    standin = site.standin
    first = standin.acquisition(session, f"{seed} T1")
    archive = series_zip(folder, 5, f"{seed}-series")
    standin.add_file(first, archive)
    nifti = folder / f"{seed}.nii.gz"
    nifti.write_bytes(b"\x1f\x8b not dicom")
    standin.add_file(first, nifti, kind="nifti")
    second = standin.acquisition(session, f"{seed} Localizer")
    singles = write_series(folder / f"{seed}-singles", 2, seed=f"{seed}-singles")
    for path in singles:
        standin.add_file(second, path)
    result.files = {archive.name: archive} | {p.name: p for p in singles}
    result.instances = 7
    return result


def test_session_mode_sends_every_dicom_file_of_the_session(
    gear: Gear, site: Site, receiver: StorageReceiver, tmp_path: Path
) -> None:
    """Acceptance 2."""
    session = fill_session(site, site.session, tmp_path, "s1")
    gear.config = old_gear_config(receiver.port)
    gear.destination = {"type": "session", "id": site.session}

    result = gear.run()

    assert result.returncode == ExitStatus.SUCCESS, result.stdout
    assert len(receiver.received) == session.instances
    rows = gear.report_rows()
    assert [r["Filename"] for r in rows] == list(session.files)
    assert [r["Images in Series"] for r in rows] == ["5", "1", "1"]
    assert all(r["Images Sent"] == r["Images in Series"] for r in rows)
    assert {r["Status"] for r in rows} == {"Complete"}
    assert not site.standin.downloads("s1.nii.gz")  # the NIfTI file is not fetched
    (report,) = gear.reports()
    assert report.name.startswith("dicom-send_report-Baseline_2")
    # The destination is the session: the platform uploads output/ there, so the
    # gear does not attach the report a second time.
    assert site.standin.uploads == []


def test_subject_destination_reports_per_session(
    gear: Gear, site: Site, receiver: StorageReceiver, tmp_path: Path
) -> None:
    second = site.standin.session(site.subject, "Follow-up")
    fill_session(site, site.session, tmp_path, "s1")
    fill_session(site, second, tmp_path, "s2")
    gear.config = old_gear_config(receiver.port)
    gear.destination = {"type": "subject", "id": site.subject}

    result = gear.run()

    assert result.returncode == ExitStatus.SUCCESS, result.stdout
    assert len(receiver.received) == 14
    names = [p.name for p in gear.reports()]
    assert [n.split("_2")[0] for n in names] == [
        "dicom-send_report-Baseline",
        "dicom-send_report-Follow-up",
    ]
    attached = sorted((u.container_id, u.name) for u in site.standin.uploads)
    assert attached == sorted(zip((site.session, second), names, strict=True))
    assert len(gear.report_rows()) == 6


def test_analysis_destination_takes_the_parent_session(
    gear: Gear, site: Site, receiver: StorageReceiver, tmp_path: Path
) -> None:
    session = fill_session(site, site.session, tmp_path, "s1")
    analysis = site.standin.analysis(site.session)
    gear.config = old_gear_config(receiver.port)
    gear.destination = {"type": "analysis", "id": analysis}

    result = gear.run()

    assert result.returncode == ExitStatus.SUCCESS, result.stdout
    assert len(receiver.received) == session.instances
    (report,) = gear.reports()
    (upload,) = site.standin.uploads
    assert (upload.container_id, upload.name) == (site.session, report.name)


def test_downloads_are_retried(
    gear: Gear, site: Site, receiver: StorageReceiver, tmp_path: Path
) -> None:
    """Acceptance 4, first half: 503 twice, then the file; a cut body, then it."""
    session = fill_session(site, site.session, tmp_path, "s1")
    site.standin.fail("s1-series.zip", 503, 503)
    site.standin.fail("ct-00001.dcm", DROP)
    gear.config = old_gear_config(receiver.port)
    gear.destination = {"type": "session", "id": site.session}

    result = gear.run()

    assert result.returncode == ExitStatus.SUCCESS, result.stdout
    assert [r.status for r in site.standin.downloads("s1-series.zip")] == [
        503,
        503,
        200,
    ]
    assert [r.status for r in site.standin.downloads("ct-00001.dcm")] == [DROP, 200]
    assert len(receiver.received) == session.instances
    assert "download of s1-series.zip failed (HTTP 503" in result.stdout


def test_a_download_that_never_succeeds_fails_alone(
    gear: Gear, site: Site, receiver: StorageReceiver, tmp_path: Path
) -> None:
    """Acceptance 4, second half."""
    fill_session(site, site.session, tmp_path, "s1")
    site.standin.fail("s1-series.zip", forever=500)
    gear.config = old_gear_config(receiver.port, file_download_retry_time=2)
    gear.destination = {"type": "session", "id": site.session}

    result = gear.run()

    assert result.returncode == ExitStatus.INCOMPLETE
    assert len(site.standin.downloads("s1-series.zip")) > 1
    rows = {r["Filename"]: r for r in gear.report_rows()}
    assert rows["s1-series.zip"]["Status"] == "Failed"
    assert rows["s1-series.zip"]["Images Sent"] == "0"
    assert [rows[n]["Status"] for n in ("ct-00000.dcm", "ct-00001.dcm")] == [
        "Complete",
        "Complete",
    ]
    assert len(receiver.received) == 2
    (failed,) = [r for r in gear.instance_rows() if r["status"] == "failed"]
    assert failed["file"].endswith("/files/s1-series.zip")
    assert "download failed: HTTP 500" in failed["reason"]
    assert "s1-series.zip: download failed: HTTP 500" in result.stdout


def test_receiver_down(gear: Gear, site: Site, tmp_path: Path) -> None:
    """Acceptance 3."""
    acquisition = site.standin.acquisition(site.session, "CT")
    gear.add_file_input("file", series_zip(tmp_path, 3, "ct"), acquisition)
    port = free_port()
    gear.config = old_gear_config(port)
    gear.destination = {"type": "acquisition", "id": acquisition}

    result = gear.run()

    assert result.returncode == ExitStatus.NOTHING_SENT
    (row,) = gear.report_rows()
    assert (row["Images in Series"], row["Images Sent"], row["Status"]) == (
        "3",
        "0",
        "Failed",
    )
    why = [line for line in result.stdout.splitlines() if "cannot connect" in line]
    assert why[0].endswith(f"cannot connect to 127.0.0.1:{port} (Connection refused)")


def test_report_false_writes_no_report(
    gear: Gear, site: Site, receiver: StorageReceiver, tmp_path: Path
) -> None:
    acquisition = site.standin.acquisition(site.session, "CT")
    gear.add_file_input("file", series_zip(tmp_path, 2, "ct"), acquisition)
    gear.config = old_gear_config(receiver.port, report=False)
    gear.destination = {"type": "acquisition", "id": acquisition}

    result = gear.run()

    assert result.returncode == ExitStatus.SUCCESS
    assert len(receiver.received) == 2
    assert list((gear.folder / "output").iterdir()) == []
    assert site.standin.uploads == []


def test_old_spellings_of_the_config(
    gear: Gear, site: Site, receiver: StorageReceiver, tmp_path: Path
) -> None:
    """tls_enabled "disabled", group "21", the port as text, the input api_key."""
    acquisition = site.standin.acquisition(site.session, "CT")
    gear.add_file_input("file", series_zip(tmp_path, 2, "ct"), acquisition)
    gear.inputs["api_key"] = gear.inputs.pop("api-key")
    gear.config = old_gear_config(
        str(receiver.port), tls_enabled="disabled", group="21"
    )
    gear.destination = {"type": "acquisition", "id": acquisition}

    result = gear.run()

    assert result.returncode == ExitStatus.SUCCESS, result.stdout
    assert len(receiver.received) == 2
    assert len(site.standin.uploads) == 1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"port": 70000}, "config port must be a whole number from 1 to 65535"),
        ({"port": "abc"}, "config port must be a whole number"),
        ({"called_ae": "A" * 17}, "config called_ae must be 1 to 16 characters"),
        ({"group": "0x0020"}, "config: group 0x0020 is not a private group"),
        ({"tls_enabled": "maybe"}, "config tls_enabled must be true or false"),
        ({"destination": ""}, "config destination is required"),
    ],
)
def test_bad_config_stops_before_sending(
    gear: Gear,
    site: Site,
    receiver: StorageReceiver,
    tmp_path: Path,
    change: dict[str, Any],
    message: str,
) -> None:
    acquisition = site.standin.acquisition(site.session, "CT")
    gear.add_file_input("file", series_zip(tmp_path, 1, "ct"), acquisition)
    gear.config = old_gear_config(receiver.port) | change
    gear.destination = {"type": "acquisition", "id": acquisition}

    result = gear.run()

    assert result.returncode == ExitStatus.USAGE
    errors = [line for line in result.stdout.splitlines() if " error: " in line]
    assert len(errors) == 1
    assert message in errors[0]
    assert receiver.associations == 0
    assert not (gear.folder / "output").exists() or not gear.reports()


def test_a_session_without_dicom_files(
    gear: Gear, site: Site, receiver: StorageReceiver, tmp_path: Path
) -> None:
    acquisition = site.standin.acquisition(site.session, "Notes")
    notes = tmp_path / "notes.txt"
    notes.write_text("no images here")
    site.standin.add_file(acquisition, notes, kind="text")
    gear.config = old_gear_config(receiver.port)
    gear.destination = {"type": "session", "id": site.session}

    result = gear.run()

    assert result.returncode == ExitStatus.NOTHING_SENT
    assert "no file of type dicom found under the destination" in result.stdout
    assert not site.standin.downloads("notes.txt")


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("project", "cannot take DICOM files from a project destination"),
        ("no-api-key", "there is no file input, and without an api-key input"),
        ("flywheel-down", "cannot use the api-key input: "),
        ("bad-json", "as JSON"),
    ],
)
def test_jobs_that_cannot_run_say_why_in_one_line(
    gear: Gear,
    site: Site,
    receiver: StorageReceiver,
    setup: str,
    message: str,
) -> None:
    gear.config = old_gear_config(receiver.port)
    gear.destination = {"type": "session", "id": site.session}
    if setup == "project":
        gear.destination = {"type": "project", "id": site.project}
    elif setup == "no-api-key":
        del gear.inputs["api-key"]
    elif setup == "flywheel-down":
        key = f"127.0.0.1:{free_port()}:__force_insecure:secret"
        gear.inputs["api-key"] = {"base": "api-key", "key": key}

    result = gear.run(config_text="{not json" if setup == "bad-json" else None)

    assert result.returncode == ExitStatus.USAGE, result.stdout
    errors = [line for line in result.stdout.splitlines() if " error: " in line]
    assert len(errors) == 1, result.stdout
    assert message in errors[0]
    assert receiver.associations == 0


def test_a_large_download_is_streamed(
    gear: Gear, site: Site, receiver: StorageReceiver, tmp_path: Path
) -> None:
    """A 256 MB file goes to disk in chunks: the gear's peak memory stays far
    below the file's size. (It is not DICOM, so nothing is sent.)"""
    acquisition = site.standin.acquisition(site.session, "Big")
    big = tmp_path / "big.dcm"
    with open(big, "wb") as f:
        f.truncate(256 * 1024 * 1024)
    site.standin.add_file(acquisition, big)
    gear.config = old_gear_config(receiver.port)
    gear.destination = {"type": "session", "id": site.session}

    result, measured = gear.run_measured()

    assert result.returncode == ExitStatus.NOTHING_SENT
    assert [r.status for r in site.standin.downloads("big.dcm")] == [200]
    (row,) = gear.report_rows()
    assert (row["Images in Series"], row["Status"]) == ("0", "Failed")
    peak = measured.peak
    assert peak < 160 * 1024 * 1024, f"peak RSS {peak / 2**20:.0f} MB"


@pytest.mark.parametrize("flywheel", ["no api-key", "unknown acquisition"])
def test_a_file_input_is_sent_even_when_flywheel_cannot_place_it(
    gear: Gear, site: Site, receiver: StorageReceiver, tmp_path: Path, flywheel: str
) -> None:
    """A local run (README) has no api-key; a lookup that fails costs the report's
    FW Path and its upload, not the send. Without an api-key the gear talks to no
    Flywheel, and imports neither fw-gear nor the SDK (0.3 s)."""
    series = series_zip(tmp_path, 2, "ct")
    gear.add_file_input("file", series, "0" * 24)
    if flywheel == "no api-key":
        del gear.inputs["api-key"]
    gear.config = old_gear_config(receiver.port)
    gear.destination = {"type": "acquisition", "id": "0" * 24}

    result, measured = gear.run_measured()

    assert result.returncode == ExitStatus.SUCCESS, result.stdout
    flywheel_side = {"fw_gear", "flywheel"} & measured.modules
    assert flywheel_side == (
        set() if flywheel == "no api-key" else {"fw_gear", "flywheel"}
    )
    assert len(receiver.received) == 2
    (row,) = gear.report_rows()
    assert (row["FW Path"], row["Status"]) == (series.name, "Complete")
    assert site.standin.uploads == []
    if flywheel == "unknown acquisition":
        assert "cannot read acquisition 000000000000000000000000: HTTP 404" in (
            result.stdout
        )


def test_debug_log_keeps_secrets_and_patient_names_out(
    gear: Gear, site: Site, receiver: StorageReceiver, tmp_path: Path
) -> None:
    """With ``debug: true`` (pynetdicom, the SDK, HTTP all at DEBUG) the API key and
    the patient's name still never reach the job log."""
    acquisition = site.standin.acquisition(site.session, "CT")
    gear.add_file_input("file", series_zip(tmp_path, 2, "ct"), acquisition)
    gear.config = old_gear_config(receiver.port, debug=True)
    gear.destination = {"type": "acquisition", "id": acquisition}

    result = gear.run()

    assert result.returncode == ExitStatus.SUCCESS, result.stdout
    log = result.stdout + result.stderr
    assert "DEBUG" in log  # the debug log is really on
    assert SECRET not in log
    assert "Sample^Synthetic" not in log
    assert "Sample" not in log


def test_verify_and_skip_existing(gear: Gear, site: Site, tmp_path: Path) -> None:
    """``verify`` fails the job for an instance the receiver answered for but did
    not keep; a second job with ``skip_existing`` sends only that one."""
    acquisition = site.standin.acquisition(site.session, "Verified")
    series = series_zip(gear.folder.parent, 6, "verified")
    gear.add_file_input("file", series, acquisition)
    gear.destination = {"type": "acquisition", "id": acquisition}
    with zipfile.ZipFile(series) as z:
        lost = str(dcmread(z.open(sorted(z.namelist())[1])).SOPInstanceUID)
    with QueryableReceiver(tmp_path / "scp", forget=[lost]) as scp:
        gear.config = old_gear_config(scp.port, verify=True)
        first = gear.run()
        assert first.returncode == ExitStatus.INCOMPLETE, first.stdout
        (row,) = gear.report_rows()
        assert (row["Images in Series"], row["Images Sent"], row["Status"]) == (
            "6",
            "5",
            "Incomplete",
        )
        (unverified,) = [r for r in gear.instance_rows() if r["verified"] == "no"]
        assert unverified["sop_instance_uid"] == lost
        assert "1 instances not verified on the receiver" in first.stdout

        scp.forget.clear()
        stores = scp.stores
        for output in (gear.folder / "output").iterdir():  # a new job's folder
            output.unlink()
        gear.config = old_gear_config(scp.port, verify=True, skip_existing=True)
        second = gear.run()
        assert second.returncode == ExitStatus.SUCCESS, second.stdout
        assert scp.stores == stores + 1  # only the one it lacked
        assert {r["verified"] for r in gear.instance_rows()} == {"yes"}


@pytest.mark.peer
def test_a_session_by_stow_rs_into_orthanc(
    gear: Gear, site: Site, tmp_path: Path
) -> None:
    """Issue 8, acceptance 3: ``transport: stow-rs`` sends a session, the token
    from the stow_credential input."""
    session = fill_session(site, site.session, tmp_path, "s1")
    credential = tmp_path / "credential.txt"
    credential.write_text("bearer:gear-token\n")
    gear.add_file_input("stow_credential", credential, site.session)
    (tmp_path / "peer").mkdir()
    for orthanc in run_dicomweb_orthanc(tmp_path / "peer"):
        gear.config = old_gear_config(
            "",
            destination="",
            called_ae="",
            transport="stow-rs",
            stow_url=f"http://127.0.0.1:{orthanc.http_port}/dicom-web",
        )
        gear.destination = {"type": "session", "id": site.session}

        result = gear.run()

        assert result.returncode == ExitStatus.SUCCESS, result.stdout
        instances = orthanc.rest_json("/instances")
        assert isinstance(instances, list)
        assert len(instances) == session.instances
    rows = gear.report_rows()
    assert [r["Filename"] for r in rows] == list(session.files)
    assert {r["Status"] for r in rows} == {"Complete"}
    assert "by STOW-RS to http://127.0.0.1:" in result.stdout
    assert "gear-token" not in result.stdout + result.stderr
