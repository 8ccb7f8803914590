"""DICOMweb STOW-RS: into Orthanc's DICOMweb plugin, and into a test endpoint that
fails instances, answers errors, requires a token, or speaks TLS."""

import io
import json
import re
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from checks import provenance
from conftest import CI, ExternalPeer, MixedZip, run_orthanc
from multiframe import write_multiframe
from pki import Pki
from pydicom import dcmread
from stowserver import StowServer
from test_send import read_report

from fw_gear_dicom_send import SendRequest, send
from fw_gear_dicom_send.cli.main import main
from fw_gear_dicom_send.dicom.samples import write_series
from fw_gear_dicom_send.errors import UsageError
from fw_gear_dicom_send.status import ExitStatus, InstanceStatus
from fw_gear_dicom_send.transport.peer import StowSettings, parse_auth
from fw_gear_dicom_send.transport.retry import RetryPolicy
from fw_gear_dicom_send.transport.stow_response import parse_response

DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")


def run_dicomweb_orthanc(tmp_path: Path) -> Iterator[ExternalPeer]:
    """Orthanc with Debian's DICOMweb plugin (orthanc-dicomweb)."""
    if not DICOMWEB_PLUGIN.exists():
        message = "orthanc-dicomweb not installed (apt-get install orthanc-dicomweb)"
        if CI:
            pytest.fail(f"{message}: .ci/run must install it")
        pytest.skip(message)
    yield from run_orthanc(
        tmp_path,
        Plugins=[str(DICOMWEB_PLUGIN)],
        DicomWeb={"Enable": True, "Root": "/dicom-web/"},
    )


@pytest.fixture
def dicomweb(tmp_path: Path) -> Iterator[ExternalPeer]:
    yield from run_dicomweb_orthanc(tmp_path)


def stow_url(orthanc: ExternalPeer) -> str:
    return f"http://127.0.0.1:{orthanc.http_port}/dicom-web"


@pytest.mark.peer
def test_the_mixed_zip_by_stow_into_orthanc(
    dicomweb: ExternalPeer, mixed_zip: MixedZip, tmp_path: Path
) -> None:
    """Acceptance 1: 23 instances stored with the provenance element; 27 rows."""
    report = tmp_path / "report.csv"
    args = ["-q", "send", str(mixed_zip.path), "--stow", stow_url(dicomweb)]
    assert main([*args, "--report", str(report)]) == ExitStatus.INCOMPLETE
    rows = read_report(report)
    assert len(rows) == 27
    statuses = [row["status"] for row in rows]
    assert statuses.count("sent") == 23
    assert statuses.count("skipped") == 3  # junk
    assert statuses.count("failed") == 1  # the truncated file, never sent
    instances = dicomweb.rest_json("/instances")
    assert isinstance(instances, list)
    assert len(instances) == 23
    sent = {row["sop_instance_uid"] for row in rows if row["status"] == "sent"}
    for orthanc_id in instances:
        ds = dcmread(io.BytesIO(dicomweb.rest(f"/instances/{orthanc_id}/file")))
        assert str(ds.SOPInstanceUID) in sent
        assert provenance(ds) == [b"DICOM Send"]


def test_failed_instances_and_a_retried_batch(tmp_path: Path) -> None:
    """Acceptance 2: 503 (Retry-After: 1) then 202 with one failure, one warning."""
    files = list(write_series(tmp_path / "in", 5, seed="stow", rows=16, columns=16))
    uids = [str(dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in files]
    with StowServer(
        errors=[(503, 1.0)], fail={uids[1]: 0xC000}, warn={uids[3]: 0xB000}
    ) as server:
        started = time.monotonic()
        result = send(
            SendRequest(
                paths=(tmp_path / "in",), stow=StowSettings(server.url, batch=10)
            )
        )
        took = time.monotonic() - started
    assert [r.status for r in server.requests] == [503, 202]
    assert server.requests[0].uids == server.requests[1].uids == uids
    assert took >= 1.0  # Retry-After honoured
    by_uid = {row.sop_instance_uid: row for row in result.rows}
    failed = by_uid[uids[1]]
    assert failed.status is InstanceStatus.FAILED
    assert failed.dimse_status == 0xC000
    assert failed.reason == "refused: 0xC000 (Cannot Understand) (2 attempts)"
    warned = by_uid[uids[3]]
    assert warned.status is InstanceStatus.WARNING
    assert warned.reason.startswith("warning 0xB000 (Coercion of Data Elements)")
    assert (
        "stored after 2 attempts; first: HTTP 503 Service Unavailable" in warned.reason
    )
    assert [by_uid[u].status for u in (uids[0], uids[2], uids[4])] == [
        InstanceStatus.SENT
    ] * 3
    assert result.exit_status is ExitStatus.INCOMPLETE
    assert set(server.stored) == set(uids) - {uids[1]}
    assert set(server.stored.values()) == {"DICOM Send"}


def test_a_server_error_that_lasts_fails_the_batch_with_its_status(
    tmp_path: Path,
) -> None:
    write_series(tmp_path / "in", 3, seed="stow-down", rows=16, columns=16)
    with StowServer(errors=[(500, None)] * 50) as server:
        result = send(
            SendRequest(
                paths=(tmp_path / "in",),
                stow=StowSettings(server.url),
                retry=RetryPolicy(budget=1.0, first_wait=0.1, max_wait=0.2),
            )
        )
    assert result.exit_status is ExitStatus.NOTHING_SENT
    assert len(server.requests) >= 2
    for row in result.rows:
        assert row.status is InstanceStatus.FAILED
        assert re.fullmatch(
            r"HTTP 500 Internal Server Error \(\d+ attempts, retries given up\)",
            row.reason,
        ), row.reason


def test_a_retry_after_longer_than_the_budget_left_is_cut_to_it(
    tmp_path: Path,
) -> None:
    """503 with Retry-After: 300 and a 2 s budget: tried again once the budget
    ends (about 2 s), not 300 s later."""
    write_series(tmp_path / "in", 2, seed="stow-cut", rows=16, columns=16)
    with StowServer(errors=[(503, 300.0)]) as server:
        started = time.monotonic()
        result = send(
            SendRequest(
                paths=(tmp_path / "in",),
                stow=StowSettings(server.url),
                retry=RetryPolicy(budget=2.0, first_wait=0.1, max_wait=0.2),
            )
        )
        took = time.monotonic() - started
    assert [r.status for r in server.requests] == [503, 200]
    assert 1.0 < took < 10
    assert result.exit_status is ExitStatus.SUCCESS
    for row in result.rows:
        assert row.status is InstanceStatus.SENT
        assert row.reason == (
            "stored after 2 attempts; first: HTTP 503 Service Unavailable"
        )


def test_the_token_is_sent_and_never_logged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    write_series(tmp_path / "in", 3, seed="stow-auth", rows=16, columns=16)
    with StowServer(token="s3cr3t-t0ken") as server:
        args = ["-vv", "send", str(tmp_path / "in"), "--stow", server.url]
        assert main([*args, "--auth", "bearer:wrong"]) == ExitStatus.NOTHING_SENT
        assert "HTTP 401 Unauthorized" in capsys.readouterr().err
        monkeypatch.setenv("DICOM_SEND_STOW_AUTH", "bearer:s3cr3t-t0ken")
        assert main(args) == ExitStatus.SUCCESS
    assert server.requests[-1].authorization == "Bearer s3cr3t-t0ken"
    assert server.requests[0].status == 401  # no retry for an error of ours
    assert len(server.requests) == 2
    captured = capsys.readouterr()
    assert "s3cr3t" not in captured.out + captured.err
    assert "wrong" not in captured.err


def test_https_verifies_the_server(
    tmp_path: Path, pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    write_series(tmp_path / "in", 2, seed="stow-tls", rows=16, columns=16)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.server.cert, pki.server.key)
    with StowServer(tls=context) as server:
        args = ["send", str(tmp_path / "in"), "--stow", server.url]
        started = time.monotonic()
        assert main(args) == ExitStatus.NOTHING_SENT  # not trusted
        assert time.monotonic() - started < 10  # not retried
        err = capsys.readouterr().err
        assert "is not trusted" in err
        assert "add the CA that issued it" in err
        assert main([*args, "--tls-ca", str(pki.ca)]) == ExitStatus.SUCCESS
        capsys.readouterr()
        plain = server.url.replace("https:", "http:")
        started = time.monotonic()
        assert main(["send", str(tmp_path / "in"), "--stow", plain]) != 0
        assert time.monotonic() - started < 10
        assert "speaks TLS: use an https URL" in capsys.readouterr().err
    assert len(server.stored) == 2


def test_stow_options_are_checked_before_sending(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_series(tmp_path / "in", 1, seed="stow-usage", rows=16, columns=16)
    base = ["send", str(tmp_path / "in")]
    for extra, message in (
        (["--stow", "ftp://x/dicom-web"], "must be http(s)://host/"),
        (["--stow", "http://x/dicom-web", "--host", "h"], "leave out --host"),
        (["--stow", "http://x/dicom-web", "--tls-ca", "ca.pem"], "needs an https URL"),
        (["--stow", "http://x/dicom-web", "--auth", "token"], "bearer:TOKEN or basic"),
        (["--stow", "http://x/dicom-web", "--batch", "0"], "batch must be 1 to 1000"),
        (["--stow", "http://x/dicom-web", "--verify"], "ask a DIMSE receiver"),
        ([], "needs --host and --called-ae, or --stow URL"),
    ):
        assert main([*base, *extra]) == ExitStatus.USAGE, extra
        err = capsys.readouterr().err
        assert message in err, err
        assert err.count("\n") == 1


def test_credentials() -> None:
    assert parse_auth("bearer:abc").header == "Bearer abc"
    assert parse_auth("basic:user:pa:ss").header == "Basic dXNlcjpwYTpzcw=="
    assert "abc" not in repr(parse_auth("bearer:abc"))
    with pytest.raises(UsageError) as raised:
        parse_auth("basic:nopassword")
    assert "nopassword" not in str(raised.value)


def test_response_parsing() -> None:
    body = json.dumps(
        {
            "00081199": {
                "vr": "SQ",
                "Value": [
                    {"00081155": {"vr": "UI", "Value": ["1.1"]}},
                    {
                        "00081155": {"vr": "UI", "Value": ["1.2"]},
                        "00081196": {"vr": "US", "Value": [0xB007]},
                    },
                ],
            },
            "00081198": {
                "vr": "SQ",
                "Value": [
                    {
                        "00081155": {"vr": "UI", "Value": ["1.3"]},
                        "00081197": {"vr": "US", "Value": [0xA700]},
                    },
                    {"00081155": {"vr": "UI", "Value": ["1.4"]}},
                ],
            },
        }
    ).encode()
    found = parse_response(202, body, ["1.1", "1.2", "1.3", "1.4", "1.5"])
    assert found["1.1"].status is InstanceStatus.SENT
    assert found["1.2"].status is InstanceStatus.WARNING
    assert found["1.2"].dimse_status == 0xB007
    assert found["1.3"].reason == "refused: 0xA700 (Refused: Out of Resources)"
    assert found["1.3"].retry.value == "transient"
    assert found["1.4"].reason == "refused (no FailureReason given)"
    assert found["1.5"].reason == "not in the STOW-RS response (HTTP 202)"
    assert parse_response(200, b"", ["1.9"])["1.9"].status is InstanceStatus.SENT
    assert (
        parse_response(409, b"not json", ["1.9"])["1.9"].status is InstanceStatus.FAILED
    )


# VmHWM, not ru_maxrss: Linux carries ru_maxrss across execve, so a child would
# report the peak of the test process it was forked from.
_PEAK = """
import sys
from fw_gear_dicom_send.cli.main import main
code = main(sys.argv[1:])
status = open("/proc/self/status").read()
print(status.split("VmHWM:")[1].split()[0])
sys.exit(code)
"""


def test_a_large_instance_is_streamed(tmp_path: Path) -> None:
    """A 300 MB instance goes out with the sender's peak RSS far below its size."""
    path = write_multiframe(tmp_path / "big.dcm", 300)
    with StowServer(discard=True) as server:
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                _PEAK,
                "-q",
                "send",
                str(path),
                "--stow",
                server.url,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    peak_mb = int(done.stdout.split()[-1]) / 1024
    assert peak_mb < 150, f"peak RSS {peak_mb:.0f} MB"
    (request,) = server.requests
    assert request.content_length > path.stat().st_size
