"""DICOM TLS: profiles, mutual TLS into pynetdicom, DCMTK and Orthanc, and every
failure said in one line. Certificates are made for the run (tests/pki.py)."""

import ssl
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import ExternalPeer, run_orthanc, run_storescp
from gearjob import Gear, Site, old_gear_config, series_zip
from pki import PASSWORD, Pki
from test_cli import run, send_args
from test_send import AbortingReceiver

from fw_gear_dicom_send import RunResult, SendRequest, send
from fw_gear_dicom_send.dicom.samples import write_series
from fw_gear_dicom_send.errors import UsageError
from fw_gear_dicom_send.pacs.receiver import StorageReceiver
from fw_gear_dicom_send.status import ExitStatus
from fw_gear_dicom_send.transport.association import Client
from fw_gear_dicom_send.transport.peer import AssociationSettings, Peer
from fw_gear_dicom_send.transport.tls import (
    DEFAULT_PROFILE,
    Profile,
    TlsSettings,
    section,
)
from fw_gear_dicom_send.transport.tls_context import client_context


@pytest.fixture
def series(tmp_path: Path) -> Path:
    folder = tmp_path / "series"
    write_series(folder, 5, seed="tls")
    return folder


def mutual(pki: Pki, profile: Profile = DEFAULT_PROFILE) -> TlsSettings:
    return TlsSettings(
        profile=profile,
        ca_file=pki.ca,
        cert=pki.client.cert,
        key=pki.client.key,
    )


def send_tls(folder: Path, port: int, called_ae: str, tls: TlsSettings) -> RunResult:
    return send(
        SendRequest(
            paths=(folder,),
            peer=Peer("127.0.0.1", port, called_ae),
            association=AssociationSettings(tls=tls, connect_timeout=5),
        )
    )


# -- the context -------------------------------------------------------------------


@pytest.mark.parametrize("profile", list(Profile))
def test_each_profile_gives_its_versions_and_suites(profile: Profile) -> None:
    context = client_context(TlsSettings(profile=profile))
    assert context.minimum_version is ssl.TLSVersion.TLSv1_2
    tls12 = {c["name"] for c in context.get_ciphers() if c["protocol"] != "TLSv1.3"}
    assert tls12, "no TLS 1.2 suite"
    if profile is Profile.BCP195_EXTENDED:  # PS3.15 B.11: TLS 1.2 only
        assert context.maximum_version is ssl.TLSVersion.TLSv1_2
    if profile in (Profile.BCP195_RFC8996, Profile.BCP195_RFC8996_MODIFIED):
        assert all(name.startswith("ECDHE-") for name in tls12)  # no DHE, no RSA kx
    if profile is Profile.BCP195:
        assert "AES128-SHA" in tls12
    else:
        assert all("GCM" in n or "CCM" in n or "CHACHA" in n for n in tls12)
    assert section(profile).startswith("B.")
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname


def test_verification_is_on_by_default_and_off_only_when_asked() -> None:
    strict = client_context(TlsSettings())
    assert (strict.verify_mode, strict.check_hostname) == (ssl.CERT_REQUIRED, True)
    assert strict.cert_store_stats()["x509_ca"] > 0  # the system's CAs
    lax = client_context(TlsSettings(verify_peer=False))
    assert (lax.verify_mode, lax.check_hostname) == (ssl.CERT_NONE, False)
    named = client_context(TlsSettings(check_hostname=False))
    assert (named.verify_mode, named.check_hostname) == (ssl.CERT_REQUIRED, False)


def test_the_extra_ca_is_added_to_the_system_cas(pki: Pki) -> None:
    before = client_context(TlsSettings()).cert_store_stats()["x509_ca"]
    after = client_context(TlsSettings(ca_file=pki.ca)).cert_store_stats()["x509_ca"]
    assert after == before + 1


BAD_FILES: dict[str, tuple[Callable[[Pki], TlsSettings], str]] = {
    "missing certificate": (
        lambda p: TlsSettings(cert=Path("/nonexistent/c.crt"), key=p.client.key),
        "cannot read the client certificate /nonexistent/c.crt: No such file",
    ),
    "key is a folder": (
        lambda p: TlsSettings(cert=p.client.cert, key=Path("/")),
        "cannot read the client key /: Is a directory",
    ),
    "missing CA": (
        lambda p: TlsSettings(ca_file=Path("/nonexistent/ca.crt")),
        "cannot read the CA certificate file /nonexistent/ca.crt: No such file",
    ),
    "CA file is a key": (
        lambda p: TlsSettings(ca_file=p.client.key),
        "cannot load the CA certificate file",
    ),
    "mismatched key": (
        lambda p: TlsSettings(cert=p.client.cert, key=p.stray_key),
        "does not match the certificate",
    ),
    "encrypted key, no password": (
        lambda p: TlsSettings(cert=p.client.cert, key=p.encrypted_client_key),
        "is encrypted: give its password",
    ),
    "encrypted key, wrong password": (
        lambda p: TlsSettings(
            cert=p.client.cert, key=p.encrypted_client_key, key_password="wrong"
        ),
        "cannot decrypt the client key",
    ),
    "key without certificate": (
        lambda p: TlsSettings(key=p.client.key),
        "needs its certificate",
    ),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_tls_files_are_named(pki: Pki, case: str) -> None:
    make, message = BAD_FILES[case]
    with pytest.raises(UsageError) as caught:
        client_context(make(pki))
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_an_encrypted_key_with_its_password(
    pki: Pki, tls_receiver: StorageReceiver
) -> None:
    settings = TlsSettings(
        ca_file=pki.ca,
        cert=pki.client.cert,
        key=pki.encrypted_client_key,
        key_password=PASSWORD,
    )
    peer = Peer("127.0.0.1", tls_receiver.port, "STORE-SCP")
    assert Client(peer, AssociationSettings(tls=settings)).echo() == 0x0000


# -- real peers --------------------------------------------------------------------


@pytest.mark.parametrize("profile", list(Profile))
def test_mutual_tls_into_pynetdicom(
    pki: Pki, tls_receiver: StorageReceiver, series: Path, profile: Profile
) -> None:
    result = send_tls(series, tls_receiver.port, "STORE-SCP", mutual(pki, profile))
    assert result.exit_status is ExitStatus.SUCCESS, result.error
    assert len(tls_receiver.received) == 5
    assert tls_receiver.associations == 1


def test_a_reconnect_is_over_tls_too(pki: Pki, series: Path, tmp_path: Path) -> None:
    """The receiver speaks only TLS and drops the first association: the second,
    opened to send the rest, must be TLS as well."""
    with AbortingReceiver(
        tmp_path / "received", aborts=1, ae_title="STORE-SCP", tls=pki.server_context()
    ) as scp:
        result = send_tls(series, scp.port, "STORE-SCP", mutual(pki))
    assert scp.associations == 2
    assert [row.status.value for row in result.rows] == ["sent"] * 5
    assert "sent again (2 attempts)" in result.rows[0].reason
    assert len(scp.received) == 5


@pytest.fixture(params=["+px", "+py", "+pz"])
def storescp_tls(
    request: pytest.FixtureRequest, tmp_path: Path, pki: Pki
) -> Iterator[ExternalPeer]:
    """DCMTK storescp over TLS with one of its profiles, client certificate required."""
    yield from run_storescp(
        tmp_path,
        "+tls",
        str(pki.server.key),
        str(pki.server.cert),
        "-pw",
        "+cf",
        str(pki.ca),
        str(request.param),
        "-rc",
    )


@pytest.mark.peer
def test_mutual_tls_into_storescp_with_each_profile(
    pki: Pki, storescp_tls: ExternalPeer, series: Path
) -> None:
    result = send_tls(series, storescp_tls.port, "STORESCP", mutual(pki))
    assert result.exit_status is ExitStatus.SUCCESS, result.error
    assert len(list(storescp_tls.out_dir.iterdir())) == 5


@pytest.mark.peer
@pytest.mark.parametrize(
    ("flag", "profile"),
    [
        ("+px", Profile.BCP195),
        ("+py", Profile.BCP195_ND),
        ("+pz", Profile.BCP195_EXTENDED),
    ],
)
def test_storescp_profiles_with_the_same_profile_here(
    pki: Pki, tmp_path: Path, series: Path, flag: str, profile: Profile
) -> None:
    args = ["+tls", str(pki.server.key), str(pki.server.cert), "-pw"]
    for peer in run_storescp(tmp_path, *args, "+cf", str(pki.ca), flag):
        result = send_tls(series, peer.port, "STORESCP", mutual(pki, profile))
        assert result.exit_status is ExitStatus.SUCCESS, result.error
        assert len(list(peer.out_dir.iterdir())) == 5


@pytest.mark.peer
def test_mutual_tls_into_orthanc(pki: Pki, tmp_path: Path, series: Path) -> None:
    for orthanc in run_orthanc(
        tmp_path,
        DicomTlsEnabled=True,
        DicomTlsCertificate=str(pki.server.cert),
        DicomTlsPrivateKey=str(pki.server.key),
        DicomTlsTrustedCertificates=str(pki.ca),
        DicomTlsRemoteCertificateRequired=True,
    ):
        result = send_tls(series, orthanc.port, "ORTHANC", mutual(pki))
        assert result.exit_status is ExitStatus.SUCCESS, result.error
        assert len(orthanc.rest_json("/instances")) == 5  # type: ignore[arg-type]


# -- failures, as the command line says them ----------------------------------------


def tls_args(pki: Pki, *, ca: Path | None = None, key: Path | None = None) -> list[str]:
    return [
        "--tls",
        f"--tls-ca={ca or pki.ca}",
        f"--tls-cert={pki.client.cert}",
        f"--tls-key={key or pki.client.key}",
        "--connect-timeout=5",
    ]


@pytest.fixture
def make_tls_receiver(tmp_path: Path, pki: Pki) -> Iterator[dict[str, StorageReceiver]]:
    """TLS receivers with the broken server certificates, by name."""
    pairs = {
        "other-ca": pki.other_server,
        "expired": pki.expired_server,
        "wrong-host": pki.wrong_host_server,
    }
    started = {
        name: StorageReceiver(
            tmp_path / name, ae_title="STORE-SCP", tls=pki.server_context(pair)
        ).__enter__()
        for name, pair in pairs.items()
    }
    yield started
    for scp in started.values():
        scp.__exit__(None, None, None)


def failure_line(args: list[str], tmp_path: Path) -> tuple[int, str]:
    report = tmp_path / "report.csv"
    result = run(*args, f"--report={report}")
    assert "Traceback" not in result.stderr, result.stderr
    info = ("dicom-send: sending ", "dicom-send: progress")
    lines = [line for line in result.stderr.splitlines() if not line.startswith(info)]
    assert len(lines) == 1, result.stderr
    if report.exists():
        assert ",sent," not in report.read_text()
    return result.returncode, lines[0]


@pytest.mark.parametrize(
    ("server", "expected"),
    [
        (
            "other-ca",
            "is not trusted: unable to get local issuer certificate "
            "(subject CN=localhost,O=dicom-send tests, issuer CN=unrelated CA,"
            "O=dicom-send tests); add the CA that issued it",
        ),
        ("expired", "expired on "),
        (
            "wrong-host",
            "is not valid for '127.0.0.1': it names DNS:pacs.example.org",
        ),
    ],
)
def test_untrusted_server_certificates(
    pki: Pki,
    make_tls_receiver: dict[str, StorageReceiver],
    series: Path,
    tmp_path: Path,
    server: str,
    expected: str,
) -> None:
    scp = make_tls_receiver[server]
    code, line = failure_line(
        [*send_args(series, scp.port, "STORE-SCP"), *tls_args(pki)], tmp_path
    )
    assert code == ExitStatus.NOTHING_SENT
    assert f"the certificate of the peer at 127.0.0.1:{scp.port}" in line
    assert expected in line
    assert scp.associations == 0


def test_tls_to_a_plain_port(
    pki: Pki, receiver: StorageReceiver, series: Path, tmp_path: Path
) -> None:
    code, line = failure_line(
        [*send_args(series, receiver.port, "STORE-SCP"), *tls_args(pki)], tmp_path
    )
    assert code == ExitStatus.NOTHING_SENT
    assert f"the peer at 127.0.0.1:{receiver.port} does not speak TLS" in line


@pytest.mark.peer
def test_tls_to_a_plain_storescp(
    pki: Pki, storescp: ExternalPeer, series: Path, tmp_path: Path
) -> None:
    code, line = failure_line(
        [*send_args(series, storescp.port, "STORESCP"), *tls_args(pki)], tmp_path
    )
    assert code == ExitStatus.NOTHING_SENT
    assert f"the peer at 127.0.0.1:{storescp.port} does not speak TLS" in line


def test_plain_to_a_tls_port(
    tls_receiver: StorageReceiver, series: Path, tmp_path: Path
) -> None:
    code, line = failure_line(
        send_args(series, tls_receiver.port, "STORE-SCP", "--connect-timeout=5"),
        tmp_path,
    )
    assert code == ExitStatus.NOTHING_SENT
    assert line.endswith(
        f"the peer at 127.0.0.1:{tls_receiver.port} speaks TLS: turn TLS on to reach it"
    )


def test_a_key_that_does_not_match_its_certificate(
    pki: Pki, tls_receiver: StorageReceiver, series: Path, tmp_path: Path
) -> None:
    code, line = failure_line(
        [
            *send_args(series, tls_receiver.port, "STORE-SCP"),
            *tls_args(pki, key=pki.stray_key),
        ],
        tmp_path,
    )
    assert code == ExitStatus.USAGE
    assert line == (
        f"dicom-send: error: the client key {pki.stray_key} does not match the "
        f"certificate {pki.client.cert}"
    )
    assert tls_receiver.associations == 0


def test_a_server_that_requires_a_client_certificate(
    pki: Pki, tls_receiver: StorageReceiver, series: Path, tmp_path: Path
) -> None:
    args = [
        *send_args(series, tls_receiver.port, "STORE-SCP"),
        "--tls",
        f"--tls-ca={pki.ca}",
    ]
    code, line = failure_line(args, tmp_path)
    assert code == ExitStatus.NOTHING_SENT
    assert f"the peer at 127.0.0.1:{tls_receiver.port} requires a client cert" in line


def test_no_verify_reaches_a_server_whose_ca_is_not_given(
    pki: Pki, make_tls_receiver: dict[str, StorageReceiver], series: Path
) -> None:
    scp = make_tls_receiver["other-ca"]
    result = run(
        *send_args(series, scp.port, "STORE-SCP"),
        *tls_args(pki),
        "--tls-no-verify",
    )
    assert result.returncode == ExitStatus.SUCCESS, result.stderr
    assert len(scp.received) == 5
    assert "the peer's certificate is NOT verified" in result.stderr


def test_tls_options_need_tls(series: Path, pki: Pki) -> None:
    result = run(*send_args(series, 104, "PACS"), f"--tls-ca={pki.ca}")
    assert result.returncode == ExitStatus.USAGE
    assert result.stderr.strip() == "dicom-send: error: --tls-ca needs --tls"


def test_echo_over_tls(pki: Pki, tls_receiver: StorageReceiver) -> None:
    result = run(
        "echo",
        "--host=127.0.0.1",
        f"--port={tls_receiver.port}",
        "--called-ae=STORE-SCP",
        *tls_args(pki),
    )
    assert result.returncode == ExitStatus.SUCCESS, result.stderr
    assert "Success" in result.stdout


# -- through the gear ----------------------------------------------------------------


def tls_gear(gear: Gear, site: Site, pki: Pki, tmp_path: Path, port: int) -> None:
    """A gear job sending a 3-instance zip with TLS on and the three PEM inputs."""
    acquisition = site.standin.acquisition(site.session, "CT")
    gear.add_file_input("file", series_zip(tmp_path, 3, "ct"), acquisition)
    gear.add_file_input("key", pki.client.key, acquisition)
    gear.add_file_input("cert", pki.client.cert, acquisition)
    gear.add_file_input("add_cert_file", pki.ca, acquisition)
    gear.config = old_gear_config(port, tls_enabled=True)
    gear.destination = {"type": "acquisition", "id": acquisition}


def test_gear_mutual_tls(
    gear: Gear, site: Site, pki: Pki, tls_receiver: StorageReceiver, tmp_path: Path
) -> None:
    tls_gear(gear, site, pki, tmp_path, tls_receiver.port)

    result = gear.run()

    assert result.returncode == ExitStatus.SUCCESS, result.stdout
    assert len(tls_receiver.received) == 3
    assert "over TLS (BCP 195)" in result.stdout  # the 4.x rule's profile, honoured
    (row,) = gear.report_rows()
    assert row["Status"] == "Complete"


@pytest.mark.parametrize(
    ("server", "expected"),
    [
        ("other-ca", "is not trusted: unable to get local issuer certificate"),
        ("expired", "expired on"),
        ("wrong-host", "is not valid for '127.0.0.1'"),
    ],
)
def test_gear_refuses_an_untrusted_server(
    gear: Gear,
    site: Site,
    pki: Pki,
    make_tls_receiver: dict[str, StorageReceiver],
    tmp_path: Path,
    server: str,
    expected: str,
) -> None:
    scp = make_tls_receiver[server]
    tls_gear(gear, site, pki, tmp_path, scp.port)

    result = gear.run()

    assert result.returncode == ExitStatus.NOTHING_SENT
    assert f"the certificate of the peer at 127.0.0.1:{scp.port} {expected}" in (
        result.stdout
    )
    (row,) = gear.report_rows()
    assert (row["Images Sent"], row["Status"]) == ("0", "Failed")
    assert scp.received == []


def test_gear_without_peer_verification_reaches_an_unknown_ca(
    gear: Gear,
    site: Site,
    pki: Pki,
    make_tls_receiver: dict[str, StorageReceiver],
    tmp_path: Path,
) -> None:
    scp = make_tls_receiver["other-ca"]
    tls_gear(gear, site, pki, tmp_path, scp.port)
    del gear.inputs["add_cert_file"]
    gear.config["tls_require_peer_cert"] = False

    result = gear.run()

    assert result.returncode == ExitStatus.SUCCESS, result.stdout
    assert len(scp.received) == 3
    assert "the peer's certificate is NOT verified" in result.stdout


def test_gear_stops_on_a_mismatched_key_before_anything(
    gear: Gear, site: Site, pki: Pki, tls_receiver: StorageReceiver, tmp_path: Path
) -> None:
    tls_gear(gear, site, pki, tmp_path, tls_receiver.port)
    gear.add_file_input("key", pki.stray_key, site.session)

    result = gear.run()

    assert result.returncode == ExitStatus.USAGE
    assert "does not match the certificate" in result.stdout
    assert tls_receiver.associations == 0
    assert not (gear.folder / "output").exists() or not gear.reports()
