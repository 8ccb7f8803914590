"""Fixtures: sample data, and real DICOM peers on 127.0.0.1 with ephemeral ports."""

import hashlib
import json
import logging
import os
import random
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from faults import AnsweringReceiver
from gearjob import Gear, Site
from pki import Pki, make_pki
from pydicom import dcmread
from pydicom.filewriter import dcmwrite
from pydicom.uid import DeflatedExplicitVRLittleEndian, generate_uid
from standin import StandIn

from fw_gear_dicom_send.dicom.samples import bundled, copy_as_new, write_series
from fw_gear_dicom_send.pacs.receiver import StorageReceiver
from fw_gear_dicom_send.transport import fastpath

CI = os.environ.get("CI", "").lower() == "true"
TRACEBACK = "Traceback (most recent call last)"


def is_ours(args: object) -> bool:
    """Whether a command runs Python (the CLI, the gear, a script around them),
    or runs the CLI or the gear under another program (``unshare``)."""
    if isinstance(args, str | bytes | os.PathLike):
        args = [args]
    argv = [os.fsdecode(arg) for arg in args]  # type: ignore[attr-defined]
    if not argv:
        return False
    if os.path.basename(argv[0]).startswith("python") or argv[0] == sys.executable:
        return True
    return any(a == "fw_gear_dicom_send" or a.endswith("run.py") for a in argv)


def no_traceback(args: object, *outputs: str | bytes | None) -> None:
    """Fail if a process of ours printed a traceback."""
    for output in outputs:
        text = output.decode(errors="replace") if isinstance(output, bytes) else output
        if text and TRACEBACK in text:
            pytest.fail(f"a traceback from {args!r}:\n{text}")


class _CheckedPopen(subprocess.Popen):  # type: ignore[type-arg]
    """Popen whose ``communicate`` (and so ``subprocess.run``) fails the test when
    a Python process of ours printed a traceback on the pipes it captured."""

    def communicate(self, *args: object, **kwargs: object) -> tuple[object, object]:
        out, err = super().communicate(*args, **kwargs)  # type: ignore[arg-type]
        if is_ours(self.args):
            no_traceback(self.args, out, err)
        return out, err


@pytest.fixture(autouse=True)
def _no_traceback_in_subprocesses(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every CLI and gear process the suite runs: no traceback in its output."""
    monkeypatch.setattr(subprocess, "Popen", _CheckedPopen)


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Undo what an in-process ``main()`` configured (handlers, levels)."""
    names = ["", "fw_gear_dicom_send", "pynetdicom", "flywheel", "fw_gear"]
    names += ["httpx2", "httpcore2"]
    saved = {
        n: (logging.getLogger(n).level, logging.getLogger(n).handlers[:]) for n in names
    }
    yield
    for name, (level, handlers) in saved.items():
        logger = logging.getLogger(name)
        logger.setLevel(level)
        logger.handlers[:] = handlers


def need(binary: str, package: str) -> str:
    """The path of a peer's binary; skip locally without it, fail in CI."""
    path = shutil.which(binary)
    if path is None:
        message = f"{binary} not installed (apt-get install {package})"
        if CI:
            pytest.fail(f"{message}: .ci/run must install it")
        pytest.skip(message)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    """Start a peer process, its output going to ``log``, Nagle off (DCMTK, Orthanc)."""
    with open(log, "wb") as out:
        return subprocess.Popen(
            args,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "TCP_NODELAY": "1"},
        )


def wait_for_port(
    port: int, proc: subprocess.Popen[bytes], timeout: float = 30
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{proc.args!r} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"nothing listening on port {port} after {timeout} s")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class MixedZip:
    """The engine issue's zip: 20 CT, 3 MR (one RLE, one deflated), 4 junk files."""

    path: Path
    sources: dict[str, Path] = field(default_factory=dict)
    """SOP Instance UID -> the file that went into the zip."""
    junk: dict[str, str] = field(default_factory=dict)
    """Member name -> expected status."""
    truncated: str = ""


def build_mixed_zip(folder: Path) -> MixedZip:
    import zipfile

    folder.mkdir(parents=True, exist_ok=True)
    members: dict[str, Path] = {}
    for path in write_series(folder / "ct", 20, seed="mixed", rows=128, columns=128):
        members[f"CT/{path.name}"] = path
    mr = folder / "mr"
    members["MR/mr-explicit.dcm"] = copy_as_new(bundled("MR_small.dcm"), mr / "e.dcm")
    members["MR/mr-rle.dcm"] = copy_as_new(bundled("MR_small_RLE.dcm"), mr / "r.dcm")
    deflated = dcmread(bundled("MR_small.dcm"))
    uid = generate_uid(entropy_srcs=["mixed", "deflated"])
    deflated.SOPInstanceUID = uid
    deflated.file_meta.MediaStorageSOPInstanceUID = uid
    deflated.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    dcmwrite(mr / "d.dcm", deflated, enforce_file_format=True)
    members["MR/mr-deflated.dcm"] = mr / "d.dcm"
    result = MixedZip(folder / "mixed.zip")
    for path in members.values():
        result.sources[str(dcmread(path).SOPInstanceUID)] = path

    junk = folder / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("not an image\n")
    (junk / "random.dcm").write_bytes(random.Random(7).randbytes(4096))
    (junk / "empty.dcm").write_bytes(b"")
    whole = members["CT/ct-00000.dcm"].read_bytes()
    (junk / "truncated.dcm").write_bytes(whole[: len(whole) - 5000])
    for name in ("notes.txt", "random.dcm", "empty.dcm"):
        members[f"junk/{name}"] = junk / name
        result.junk[f"junk/{name}"] = "skipped"
    members["junk/truncated.dcm"] = junk / "truncated.dcm"
    result.junk["junk/truncated.dcm"] = "failed"
    result.truncated = "junk/truncated.dcm"
    with zipfile.ZipFile(result.path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, path in members.items():
            z.write(path, name)
    return result


@pytest.fixture(scope="session")
def mixed_zip(tmp_path_factory: pytest.TempPathFactory) -> MixedZip:
    return build_mixed_zip(tmp_path_factory.mktemp("mixed"))


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[StorageReceiver]:
    """A pynetdicom Storage SCP that prefers Implicit VR Little Endian."""
    with StorageReceiver(tmp_path / "received", ae_title="STORE-SCP") as scp:
        yield scp


@pytest.fixture
def switch(monkeypatch: pytest.MonkeyPatch) -> Callable[[str | None], None]:
    """Set ``DICOM_SEND_FAST_PATH`` (None: unset) as a new process would read it."""

    def set_to(value: str | None) -> None:
        if value is None:
            monkeypatch.delenv(fastpath.SWITCH, raising=False)
        else:
            monkeypatch.setenv(fastpath.SWITCH, value)
        monkeypatch.setattr(fastpath._Verdict, "switched_on", None)
        monkeypatch.setattr(fastpath._Verdict, "usable", None)

    return set_to


@pytest.fixture
def make_receiver(tmp_path: Path) -> Iterator[Callable[..., StorageReceiver]]:
    """Start receivers with other settings; all are stopped at the end.

    ``status=`` makes an :class:`~faults.AnsweringReceiver` that answers it.
    """
    started: list[StorageReceiver] = []

    def make(**kwargs: object) -> StorageReceiver:
        kind = AnsweringReceiver if "status" in kwargs else StorageReceiver
        scp = kind(tmp_path / f"received-{len(started)}", **kwargs)  # type: ignore[arg-type]
        started.append(scp.__enter__())
        return scp

    yield make
    for scp in started:
        scp.__exit__(None, None, None)


@dataclass
class ExternalPeer:
    port: int
    ae_title: str
    out_dir: Path
    proc: subprocess.Popen[bytes]
    http_port: int = 0

    def rest(self, path: str) -> bytes:
        url = f"http://127.0.0.1:{self.http_port}{path}"
        with urllib.request.urlopen(url, timeout=30) as response:
            return bytes(response.read())

    def rest_json(self, path: str) -> object:
        return json.loads(self.rest(path))


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run_storescp(
    tmp_path: Path, *extra: str, name: str = "storescp"
) -> Iterator[ExternalPeer]:
    """DCMTK storescp accepting every transfer syntax it knows, Nagle off."""
    binary = need("storescp", "dcmtk")
    out = tmp_path / name
    out.mkdir()
    port = free_port()
    proc = start(
        [binary, *extra, "+xa", "+B", "-aet", "STORESCP", "-od", str(out), str(port)],
        tmp_path / f"{name}.log",
    )
    try:
        wait_for_port(port, proc)
        yield ExternalPeer(port, "STORESCP", out, proc)
    finally:
        _stop(proc)


@pytest.fixture
def storescp(tmp_path: Path) -> Iterator[ExternalPeer]:
    """DCMTK storescp accepting every transfer syntax it knows, Nagle off."""
    yield from run_storescp(tmp_path)


def run_orthanc(tmp_path: Path, **settings: object) -> Iterator[ExternalPeer]:
    """Orthanc with its own storage, DICOM and HTTP on free ports, no plugins."""
    binary = need("Orthanc", "orthanc")
    storage = tmp_path / "orthanc"
    storage.mkdir()
    port, http_port = free_port(), free_port()
    config = storage / "orthanc.json"
    config.write_text(
        json.dumps(
            {
                "Name": "dicom-send-test",
                "StorageDirectory": str(storage / "db"),
                "IndexDirectory": str(storage / "db"),
                "DicomAet": "ORTHANC",
                "DicomPort": port,
                "HttpPort": http_port,
                "DicomCheckCalledAet": True,
                "RemoteAccessAllowed": False,
                "AuthenticationEnabled": False,
                "Plugins": [],
                **settings,
            }
        )
    )
    proc = start([binary, str(config)], tmp_path / "orthanc.log")
    try:
        wait_for_port(http_port, proc)
        wait_for_port(port, proc)
        yield ExternalPeer(port, "ORTHANC", storage, proc, http_port)
    finally:
        _stop(proc)


@pytest.fixture
def orthanc(tmp_path: Path) -> Iterator[ExternalPeer]:
    """Orthanc with its own storage, DICOM and HTTP on free ports, no plugins."""
    yield from run_orthanc(tmp_path)


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A CA, server and client certificates, and broken ones, made for the run."""
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def tls_receiver(tmp_path: Path, pki: Pki) -> Iterator[StorageReceiver]:
    """A pynetdicom Storage SCP speaking only TLS, requiring a client certificate."""
    with StorageReceiver(
        tmp_path / "received-tls", ae_title="STORE-SCP", tls=pki.server_context()
    ) as scp:
        yield scp


@pytest.fixture
def standin() -> Iterator[StandIn]:
    with StandIn() as server:
        yield server


@pytest.fixture
def site(standin: StandIn) -> Site:
    group = standin.group("radiology")
    project = standin.project(group, "Trial 7")
    subject = standin.subject(project, "P-001")
    session = standin.session(subject, "Baseline")
    return Site(standin, group, project, subject, session)


@pytest.fixture
def gear(tmp_path: Path, standin: StandIn) -> Gear:
    folder = tmp_path / "flywheel-v0"
    folder.mkdir()
    return Gear(folder, standin)
