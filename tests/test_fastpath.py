"""The fast path fenced: the only module on pynetdicom's internals, checked at its
first use, with pynetdicom's own ``send_c_store`` behind the same interface as its
fallback, and a switch (``DICOM_SEND_FAST_PATH``) that forces the fallback."""

import ast
import io
import logging
import os
import re
import subprocess
import sys
import threading
import tomllib
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import ExternalPeer, run_storescp
from faults import FaultyReceiver
from multiframe import write_multiframe
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.dimse_primitives import C_STORE

import fw_gear_dicom_send
from fw_gear_dicom_send import RunResult, SendRequest, send
from fw_gear_dicom_send.dicom.samples import copy_as_new, write_series
from fw_gear_dicom_send.dicom.transcode import part10_header
from fw_gear_dicom_send.pacs.receiver import StorageReceiver
from fw_gear_dicom_send.status import InstanceStatus
from fw_gear_dicom_send.transport import fallback as fallback_module
from fw_gear_dicom_send.transport import fastpath
from fw_gear_dicom_send.transport.association import Client, release
from fw_gear_dicom_send.transport.channel import ChannelClosed
from fw_gear_dicom_send.transport.contexts import Proposal
from fw_gear_dicom_send.transport.fallback import FallbackChannel
from fw_gear_dicom_send.transport.fastpath import FastChannel, held
from fw_gear_dicom_send.transport.peer import AssociationSettings, Peer
from fw_gear_dicom_send.transport.retry import RetryPolicy

ROOT = Path(fw_gear_dicom_send.__file__).parent.parent
PACKAGE = ROOT / "fw_gear_dicom_send"
FASTPATH = PACKAGE / "transport" / "fastpath.py"
FALLBACK = PACKAGE / "transport" / "fallback.py"
FALLBACK_SETTINGS = {"STORE_SEND_CHUNKED_DATASET", "dimse_timeout"}
"""pynetdicom's documented settings that the fallback changes (and puts back)."""
FALLBACK_SWAPS = {"to_provider_queue"}
"""The one attribute of pynetdicom's that the fallback swaps for an object of its
own: the DUL's outgoing queue (a ``_Throttle``)."""
SENT = InstanceStatus.SENT
FAILED = InstanceStatus.FAILED
WARNING = InstanceStatus.WARNING
FALLBACK_LINE = "C-STORE through pynetdicom's send_c_store"


# The fence ------------------------------------------------------------------


def _pynetdicom_private_names() -> set[str]:
    """Names of pynetdicom's private attributes and methods (``_x``, not dunder)."""
    import pynetdicom

    names: set[str] = set()
    for path in Path(pynetdicom.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            name = ""
            if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                name = node.attr
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                name = node.name
            if name.startswith("_") and not name.startswith("__"):
                names.add(name)
    return names


def _violations(path: Path, private: set[str]) -> list[str]:
    """Uses of pynetdicom internals in one module of ours.

    A private pynetdicom name read off anything but ``self``/``cls``, a private
    pynetdicom module imported (``pynetdicom._config``, its documented settings,
    excepted), a DUL state name (``Sta1`` ...) or an attribute the fast path needs
    named in a string.
    """
    tree = ast.parse(path.read_text())
    ours = {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.ctx, ast.Store)
        and isinstance(node.value, ast.Name)
        and node.value.id in ("self", "cls")
    }
    ours |= {
        n.name
        for n in ast.walk(tree)
        if isinstance(n, ast.FunctionDef | ast.ClassDef | ast.AsyncFunctionDef)
    }
    needed = {
        part
        for need in fastpath.PRIVATE_NEEDS
        for part in need.split(" ")[0].split(".")
        if part.startswith("_")
    }
    found = []
    for node in ast.walk(tree):
        where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Attribute) and node.attr in private:
            on_self = isinstance(node.value, ast.Name) and node.value.id in (
                "self",
                "cls",
            )
            if node.attr in needed or not (on_self or node.attr in ours):
                found.append(f"{where}: .{node.attr}")
        elif isinstance(node, ast.ImportFrom) and node.module:
            module = node.module
            names = [a.name for a in node.names]
            if module.startswith("pynetdicom._") or (
                module == "pynetdicom"
                and any(n.startswith("_") and n != "_config" for n in names)
            ):
                found.append(f"{where}: from {module} import {', '.join(names)}")
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and (re.fullmatch(r"Sta\d{1,2}", node.value) or node.value in needed)
        ):
            found.append(f"{where}: {node.value!r}")
    return found


def test_only_the_fast_path_touches_pynetdicom_internals() -> None:
    private = _pynetdicom_private_names()
    assert {"_reactor_checkpoint", "_is_paused", "_run_loop_delay"} <= private
    found = [
        use
        for path in sorted(PACKAGE.rglob("*.py"))
        if path != FASTPATH
        for use in _violations(path, private)
    ]
    assert found == []
    # ... and the check finds what the fast path does.
    assert len(_violations(FASTPATH, private)) >= 6


def _pynetdicom_attributes() -> set[str]:
    """Names that pynetdicom gives its objects: attributes it sets, methods and
    properties; not those every thread has (``daemon``...)."""
    import pynetdicom

    names: set[str] = set()
    for path in Path(pynetdicom.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                names.add(node.name)
    return names - set(dir(threading.Thread))


def _set_on_pynetdicom(path: Path) -> set[str]:
    """Attributes one module of ours sets on pynetdicom's objects and modules.

    An attribute set (``x.name = ...`` or ``setattr(x, "name", ...)``) on anything
    but ``self``, whose name pynetdicom gives its objects and the module's own
    classes do not; or anything set on ``_config``, pynetdicom's settings.
    """
    tree = ast.parse(path.read_text())
    ours = {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.ctx, ast.Store)
        and isinstance(node.value, ast.Name)
        and node.value.id in ("self", "cls")
    }
    theirs = _pynetdicom_attributes() - ours
    found = set()
    for node in ast.walk(tree):
        target: tuple[ast.expr, str] | None = None
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            target = (node.value, node.attr)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "setattr"
            and isinstance(node.args[1], ast.Constant)
        ):
            target = (node.args[0], str(node.args[1].value))
        if target is None:
            continue
        owner, name = target
        on_self = isinstance(owner, ast.Name) and owner.id in ("self", "cls")
        on_config = isinstance(owner, ast.Name) and owner.id == "_config"
        if on_config or (not on_self and name in theirs):
            found.add(name)
    return found


def test_the_fallback_swaps_one_attribute_of_pynetdicom() -> None:
    """Besides documented settings, the fallback replaces one public attribute of
    pynetdicom's (the DUL's outgoing queue), and its docstring says so: a second
    one would be noticed here."""
    assert "to_provider_queue" in _pynetdicom_attributes()  # the check sees it
    assert _set_on_pynetdicom(FALLBACK) == FALLBACK_SETTINGS | FALLBACK_SWAPS
    doc = fallback_module.__doc__ or ""
    for name in FALLBACK_SETTINGS | FALLBACK_SWAPS:
        assert name in doc, name
    assert "swaps one public attribute" in " ".join(doc.split())


def test_the_pinned_version_is_the_one_the_project_pins() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    pins = [d for d in project["project"]["dependencies"] if d.startswith("pynetdicom")]
    assert pins == [f"pynetdicom=={fastpath.PINNED_PYNETDICOM}"]
    lock = (ROOT / "docker" / "requirements.lock").read_text().splitlines()
    assert f"pynetdicom=={fastpath.PINNED_PYNETDICOM}" in lock


def test_one_part10_header_for_the_fallback_and_stow() -> None:
    """The header of the fallback's copies and of STOW-RS's parts: the same bytes,
    but a UID with a backslash, which only the fallback writes as UT (one value
    read back, as pynetdicom takes it)."""
    plain = ("1.2.840.10008.5.1.4.1.1.2", "1.2.3.4", "1.2.840.10008.1.2.1")
    assert part10_header(*plain) == part10_header(*plain, whole_uids=True)
    header = part10_header(*plain)
    assert header[:132] == bytes(128) + b"DICM"
    odd = ("1.2.840.10008.5.1.4.1.1.2", "1.2.3\\4.5", "1.2.840.10008.1.2")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom's on the UI value
        as_ui = part10_header(*odd)
    as_ut = part10_header(*odd, whole_uids=True)
    assert b"UI" + len(b"1.2.3\\4.5\0").to_bytes(2, "little") in as_ui
    for header, kept in ((as_ut, "1.2.3\\4.5"), (as_ui, ["1.2.3", "4.5"])):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            meta = dcmread(io.BytesIO(header)).file_meta
        assert meta.MediaStorageSOPInstanceUID == kept
        assert meta.TransferSyntaxUID == "1.2.840.10008.1.2"


# Switch and self-check -------------------------------------------------------


@pytest.fixture
def fallback(switch: Callable[[str | None], None]) -> None:
    switch("off")


class BytesReceiver:
    """A pynetdicom Storage SCP that keeps the data set bytes it receives."""

    def __init__(self, syntaxes: list[str] | None = None) -> None:
        self.arrivals: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self._ae = AE(ae_title="STORE-SCP")
        for context in AllStoragePresentationContexts:
            sop = str(context.abstract_syntax)
            if syntaxes is None:
                self._ae.add_supported_context(sop)
            else:
                self._ae.add_supported_context(sop, syntaxes)
        self.port = 0

    def __enter__(self) -> "BytesReceiver":
        server = self._ae.start_server(
            ("127.0.0.1", 0),
            block=False,
            evt_handlers=[(evt.EVT_C_STORE, self._on_store)],
        )
        assert server is not None
        self._server = server
        self.port = int(self._server.server_address[1])
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()

    def _on_store(self, event: evt.Event) -> int:
        request = event.request
        assert isinstance(request, C_STORE) and request.DataSet is not None
        with self._lock:
            self.arrivals[str(request.AffectedSOPInstanceUID)] = (
                request.DataSet.getvalue()
            )
        return 0x0000


def send_to(folder: Path, port: int, ae: str = "STORE-SCP", **kw: float) -> RunResult:
    return send(
        SendRequest(
            paths=(folder,),
            peer=Peer("127.0.0.1", port, ae),
            association=AssociationSettings(dimse_timeout=kw.get("dimse_timeout", 30)),
            retry=RetryPolicy(
                budget=kw.get("budget", 20), first_wait=0.1, max_wait=0.5
            ),
        )
    )


@pytest.fixture
def mixed(tmp_path: Path) -> Path:
    """A series, and files in other syntaxes (big endian, deflated, JPEG)."""
    folder = tmp_path / "mixed"
    write_series(folder, 3, seed="fastpath", rows=64, columns=64)
    for name in ("MR_small_bigendian.dcm", "image_dfl.dcm", "SC_rgb_jpeg_dcmtk.dcm"):
        source = get_testdata_file(name)
        assert source is not None
        copy_as_new(Path(source), folder / name, seed=name)
    return folder


def channel_class(port: int, folder: Path) -> type:
    """The class of channel ``held`` yields for an association to ``port``."""
    ds = dcmread(next(folder.glob("*.dcm")), stop_before_pixels=True)
    client = Client(Peer("127.0.0.1", port, "STORE-SCP"), AssociationSettings())
    syntax = str(ds.file_meta.TransferSyntaxUID)
    assoc = client.associate([Proposal(str(ds.SOPClassUID), (syntax,))])
    try:
        with held(assoc, client.settings) as channel:
            kind = type(channel)
        with pytest.raises(ChannelClosed):
            channel.store(None, None)  # type: ignore[arg-type]
    finally:
        release(assoc)
    return kind


def test_the_switch_forces_the_fallback_and_the_same_bytes_arrive(
    switch: Callable[[str | None], None],
    mixed: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    arrived = {}
    for value in (None, "off"):
        switch(value)
        with caplog.at_level(logging.DEBUG), BytesReceiver() as scp:
            kind = channel_class(scp.port, mixed)
            result = send_to(mixed, scp.port)
            assert [r.status for r in result.rows] == [SENT] * 6, result.rows
            arrived[value] = scp.arrivals
        said = [r for r in caplog.records if FALLBACK_LINE in r.getMessage()]
        assert kind is (FallbackChannel if value == "off" else FastChannel)
        assert len(said) == (1 if value == "off" else 0)
        caplog.clear()
    assert len(arrived[None]) == 6
    assert arrived["off"] == arrived[None]


@pytest.mark.parametrize("value", ["0", "False", " no ", "OFF"])
def test_every_way_of_saying_off(
    switch: Callable[[str | None], None], value: str
) -> None:
    switch(value)
    assert not fastpath.switched_on()


@pytest.mark.parametrize("value", ["on", "1", "", "yes", "whatever"])
def test_anything_else_is_on(switch: Callable[[str | None], None], value: str) -> None:
    switch(value)
    assert fastpath.switched_on()


@pytest.mark.parametrize("broken", ["version", "attribute"])
def test_a_failed_self_check_falls_back_with_one_warning(
    switch: Callable[[str | None], None],
    monkeypatch: pytest.MonkeyPatch,
    mixed: Path,
    caplog: pytest.LogCaptureFixture,
    broken: str,
) -> None:
    switch(None)
    if broken == "version":
        monkeypatch.setattr(fastpath, "PINNED_PYNETDICOM", "2.1.1")
    else:
        needs = (*fastpath.PRIVATE_NEEDS, "DULServiceProvider._gone_in_a_release")
        monkeypatch.setattr(fastpath, "PRIVATE_NEEDS", needs)
    with caplog.at_level(logging.WARNING), BytesReceiver() as scp:
        first = send_to(mixed, scp.port)
        second = send_to(mixed, scp.port)
        kind = channel_class(scp.port, mixed)
    assert kind is FallbackChannel
    for result in (first, second):
        assert [r.status for r in result.rows] == [SENT] * 6
    warnings = [r.getMessage() for r in caplog.records if "fast path is off" in r.msg]
    assert len(warnings) == 1, warnings
    why = "2.1.1" if broken == "version" else "_gone_in_a_release"
    assert why in warnings[0]
    assert "\n" not in warnings[0]


# The fallback's outcomes -----------------------------------------------------


@pytest.fixture
def series(tmp_path: Path) -> Path:
    folder = tmp_path / "series"
    write_series(folder, 4, seed="fallback", rows=128, columns=128)
    return folder


@pytest.fixture(params=["fast path", "fallback"])
def either(request: pytest.FixtureRequest, switch: Callable[[str | None], None]) -> str:
    """Each outcome test runs on both paths: the same outcome, word for word."""
    switch(None if request.param == "fast path" else "off")
    return str(request.param)


def test_a_receiver_that_refuses_the_syntax_gets_it_decompressed(
    tmp_path: Path, mixed: Path, either: str
) -> None:
    (tmp_path / "in").mkdir()
    with StorageReceiver(
        tmp_path / "in", transfer_syntaxes=[ExplicitVRLittleEndian]
    ) as scp:
        result = send_to(mixed, scp.port)
        received = {r.sop_instance_uid: dcmread(r.path) for r in scp.received}
    rows = {Path(r.file).name: r for r in result.rows}
    jpeg = rows["SC_rgb_jpeg_dcmtk.dcm"]
    assert jpeg.status is SENT, jpeg.reason
    assert jpeg.reason == (
        "decompressed from JPEG Baseline (Process 1) to Explicit VR Little Endian: "
        "the receiver accepts no JPEG Baseline (Process 1)"
    )
    assert jpeg.transfer_syntax == ExplicitVRLittleEndian
    assert all(r.status is SENT for r in result.rows)
    assert set(received) == {r.sop_instance_uid for r in result.rows}
    for ds in received.values():
        assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert ds[0x0021, 0x0010].value == "Flywheel"  # the provenance element
    assert received[jpeg.sop_instance_uid].LossyImageCompression == "01"


def test_a_warning_status(
    make_receiver: Callable[..., StorageReceiver], series: Path, either: str
) -> None:
    scp = make_receiver(status=0xB000)
    result = send_to(series, scp.port)
    assert [r.status for r in result.rows] == [WARNING] * 4
    assert result.rows[0].dimse_status == 0xB000
    assert result.rows[0].reason == "warning 0xB000 (Coercion of Data Elements)"


def test_a_failure_status_with_its_comment(
    tmp_path: Path, series: Path, either: str
) -> None:
    with FaultyReceiver(tmp_path / "in", answers=[0xA900], comment="PID") as scp:
        result = send_to(series, scp.port)
    assert [r.status for r in result.rows] == [FAILED, SENT, SENT, SENT]
    assert result.rows[0].dimse_status == 0xA900
    assert result.rows[0].reason == (
        "refused: 0xA900 (Data Set Does Not Match SOP Class): PID"
    )
    assert scp.stores == 4


def test_an_abort_by_the_peer_is_retried(
    tmp_path: Path, series: Path, either: str
) -> None:
    with FaultyReceiver(tmp_path / "in", abort_on=[2]) as scp:
        result = send_to(series, scp.port)
    assert [r.status for r in result.rows] == [SENT] * 4
    assert result.rows[1].reason == (
        "sent again (2 attempts): an association was lost after the data went out "
        "and before the response, so the receiver may have received it twice"
    )
    assert scp.associations == 2


def test_an_abort_and_a_silence_in_words(
    tmp_path: Path, series: Path, either: str
) -> None:
    with FaultyReceiver(tmp_path / "a", abort_on=[1]) as scp:
        aborted = send_to(series, scp.port, budget=0)
    with FaultyReceiver(tmp_path / "s", silent_on=[1], silence=2) as scp:
        silent = send_to(series, scp.port, budget=0, dimse_timeout=0.5)
    assert aborted.rows[0].reason == (
        "association lost before the response (A-ABORT, source 0, reason 0)"
    )
    assert silent.rows[0].reason == "no response within 0.5 s (DIMSE timeout)"
    for result in (aborted, silent):
        assert [r.status for r in result.rows] == [FAILED, SENT, SENT, SENT]


@pytest.mark.peer
@pytest.mark.usefixtures("fallback")
def test_the_fallback_into_storescp_and_orthanc(
    storescp: ExternalPeer, orthanc: ExternalPeer, mixed: Path
) -> None:
    for peer in (storescp, orthanc):
        result = send_to(mixed, peer.port, peer.ae_title)
        assert [r.status for r in result.rows] == [SENT] * 6, result.rows
    stored = {dcmread(p).SOPInstanceUID for p in storescp.out_dir.iterdir()}
    assert stored == {r.sop_instance_uid for r in result.rows}
    instances = orthanc.rest_json("/instances")
    assert isinstance(instances, list) and len(instances) == 6


@pytest.fixture(autouse=True)
def _no_leftover_copies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """The fallback's temporary copies, made here, are all removed.

    Not by setting TMPDIR in this process: multiprocessing keeps the first
    temporary folder it sees for the life of the process (a later fork server
    would need this test's folder). The test of the large instance, in a
    subprocess, shows that TMPDIR is where the copies go.
    """
    copies = tmp_path / "tmpdir"
    copies.mkdir()
    monkeypatch.setattr(fallback_module, "COPIES_DIR", str(copies))
    yield
    assert list(copies.glob("dicom-send-*.dcm")) == []


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


@pytest.mark.peer
def test_the_fallback_streams_a_large_instance(tmp_path: Path) -> None:
    """A 300 MB instance goes out through the fallback with the sender's peak RSS
    far below its size, and its temporary copy is gone afterwards."""
    (tmp_path / "in").mkdir()
    path = write_multiframe(tmp_path / "in" / "big.dcm", 300)
    copies = tmp_path / "copies"
    copies.mkdir()
    env = {**os.environ, fastpath.SWITCH: "off", "TMPDIR": str(copies)}
    for peer in run_storescp(tmp_path, "--ignore"):
        done = subprocess.run(
            [sys.executable, "-c", _PEAK, "-q", "send", str(path.parent),
             "--host", "127.0.0.1", "--port", str(peer.port),
             "--called-ae", peer.ae_title],
            capture_output=True, text=True, check=False, env=env,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    peak_mb = int(done.stdout.split()[-1]) / 1024
    assert peak_mb < 150, f"peak RSS {peak_mb:.0f} MB"
    assert list(copies.glob("dicom-send-*.dcm")) == []
