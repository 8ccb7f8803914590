"""``dicom-send send``: C-STORE (or STOW-RS) files, folders and archives."""

import argparse
import logging
import os
from pathlib import Path

from .. import collector, stopping
from ..dicom.provenance import (
    DEFAULT_CREATOR,
    DEFAULT_GROUP,
    DEFAULT_VALUE,
    ProvenanceTag,
    parse_group,
)
from ..errors import UsageError
from ..sending.early import started
from ..sending.request import SendRequest
from ..settings import (
    DEFAULT_ASSOCIATIONS,
    MAX_ASSOCIATIONS,
    RETRY_BUDGET,
    STOW_BATCH,
    association_count,
    seconds,
    whole,
)
from ..status import ExitStatus
from ..transport.peer import AssociationSettings, StowSettings, parse_auth
from ..transport.retry import RetryPolicy
from . import options

log = logging.getLogger(__name__)

DESCRIPTION = (
    "Send every DICOM instance under PATH... with the provenance "
    "element; write a row per file to --report. What arrives is the original: "
    "the file's data set with the element inserted; for a receiver that refuses "
    "its transfer syntax, the same elements re-encoded, or decompressed (same "
    "pixels), always under the file's SOP Instance UID; a lossy source stays "
    "marked lossy. Decoders: python-gdcm (JPEG, JPEG Lossless, 12-bit JPEG, "
    "JPEG-LS, JPEG 2000), Pillow, pyjpegls, pylibjpeg-openjpeg (JPEG 2000, "
    "HTJ2K), pydicom and pylibjpeg-rle (RLE)."
)
STOW_AUTH_VARIABLE = "DICOM_SEND_STOW_AUTH"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``send``."""
    parser.description = DESCRIPTION
    parser.set_defaults(ahead=None)  # the sender the command line started, if any
    parser.add_argument(
        "paths", nargs="+", type=options.path, metavar="PATH", help=options.PATHS_HELP
    )
    options.add_peer_options(parser, required=False)
    stow = parser.add_argument_group(
        "DICOMweb STOW-RS (instead of --host and --called-ae)"
    )
    stow.add_argument(
        "--stow",
        metavar="URL",
        help="send by STOW-RS to this DICOMweb root (…/dicom-web); https verifies "
        "the server with the --tls-ca/--tls-cert/--tls-key/--tls-no-verify options",
    )
    stow.add_argument(
        "--auth",
        metavar="bearer:TOKEN|basic:USER:PASSWORD",
        help=f"the credential (better: set {STOW_AUTH_VARIABLE})",
    )
    options.add_count(
        stow,
        "--batch",
        STOW_BATCH,
        "N",
        f"instances per request ({STOW_BATCH}); --associations requests at once",
    )
    parser.add_argument("--report", type=options.path, help="write the CSV report here")
    tag = parser.add_argument_group("provenance element")
    group = f"0x{DEFAULT_GROUP:04X}"
    tag.add_argument("--group", default=group, help=f"private group ({group})")
    tag.add_argument(
        "--creator",
        "--identifier",
        default=DEFAULT_CREATOR,
        help=f"private creator ({DEFAULT_CREATOR})",
    )
    tag.add_argument(
        "--value",
        "--tag-value",
        default=DEFAULT_VALUE,
        help=f"the value written into the element ({DEFAULT_VALUE})",
    )
    parser.add_argument(
        "--work-dir",
        type=options.path,
        help="where archives are extracted (system temp)",
    )
    budget = RETRY_BUDGET
    parser.add_argument(
        "--retry-time",
        type=options.decimal,
        default=budget,
        metavar="S",
        help="retry transient failures until nothing has been stored for S seconds "
        f"({budget:g}; 0: no retries)",
    )
    parser.add_argument(
        "--associations",
        type=options.associations,
        default=DEFAULT_ASSOCIATIONS,
        metavar="auto|N",
        help=f"associations at once, each in its own process ({DEFAULT_ASSOCIATIONS};"
        " fewer for small sends); auto: as many as the receiver rewards",
    )
    options.add_count(
        parser,
        "--max-associations",
        MAX_ASSOCIATIONS,
        "N",
        f"the most associations auto opens ({MAX_ASSOCIATIONS})",
    )
    parser.add_argument(
        "--resume",
        type=options.path,
        metavar="REPORT",
        help="skip instances that an earlier run's report says were stored",
    )
    parser.add_argument(
        "--skip-existing",
        action="store_true",
        help="ask the receiver first (C-FIND) and send only what it lacks",
    )
    parser.add_argument(
        "--verify",
        action="store_true",
        help="afterwards, ask the receiver (C-FIND) for every instance stored; "
        "fail if one is missing",
    )
    options.add_commit_options(parser, flag=True)


def run(args: argparse.Namespace) -> ExitStatus:
    """Send; write the report and print the summary."""
    stow = None
    if args.stow:
        stow = stow_settings(args)
        peer, association = None, AssociationSettings(calling_ae=args.calling_ae)
    elif not (args.host and args.called_ae):
        raise UsageError("send needs --host and --called-ae, or --stow URL")
    else:
        peer, association = options.peer(args), options.association(args)
    request = SendRequest(
        paths=tuple(args.paths),
        peer=peer,
        stow=stow,
        association=association,
        tag=ProvenanceTag(parse_group(args.group), args.creator, args.value),
        work_dir=_work_dir(args.work_dir),
        retry=RetryPolicy(
            budget=seconds("retry_time", args.retry_time, "--retry-time")
        ),
        already_stored=_stored(args.resume) if args.resume else frozenset(),
        associations=association_count(args.associations, "--associations"),
        max_associations=whole(
            "max_associations", args.max_associations, "--max-associations"
        ),
        skip_existing=args.skip_existing,
        verify=args.verify,
        commit=options.commit(args) if args.commit else None,
    )
    fixed = stow is not None or isinstance(request.associations, int)
    if fixed and request.max_associations != MAX_ASSOCIATIONS:
        log.warning("--max-associations applies to --associations auto only: ignored")
    with stopping.handling():
        # Started first (by main), the sender imports while the rest of the send
        # is imported (see sending.early); the checks that follow close it if
        # they fail.
        with started(request, args.ahead) as sender:
            with collector.importing():
                from ..sending.engine import send  # noqa: PLC0415 - see above
                from .progress import ProgressPrinter  # noqa: PLC0415 - see above
                from .report import check_writable, finish  # noqa: PLC0415 - see above

            check_writable(args.report, request.paths, replaced=True)
            result = send(request, ProgressPrinter(), sender=sender)
        return finish(result, args.report)


def stow_settings(args: argparse.Namespace) -> StowSettings:
    """``--stow`` and its options; the TLS options apply to an https URL.

    Raises:
        UsageError: A DIMSE or TLS option that does not go with ``--stow``, or a
            bad value.
    """
    if args.host or args.called_ae:
        raise UsageError("--stow sends by DICOMweb: leave out --host and --called-ae")
    if args.tls:
        raise UsageError("--stow takes no --tls: an https URL is TLS")
    secure = args.stow.lower().startswith("https:")
    given = [o for o in options.tls_options_given(args) if o != "--tls-profile"]
    if given and not secure:
        raise UsageError(f"{given[0]} needs an https URL")
    tls = options.tls_of_options(args)
    credential = args.auth or os.environ.get(STOW_AUTH_VARIABLE)
    return StowSettings.parse(
        args.stow,
        auth=parse_auth(credential) if credential else None,
        batch=args.batch,
        parallel=args.associations
        if isinstance(args.associations, int)
        else DEFAULT_ASSOCIATIONS,
        timeout=args.dimse_timeout,
        tls=tls if secure else None,
        labels={"parallel": "--associations", "timeout": "--dimse-timeout"},
    )


def _work_dir(path: Path | None) -> Path | None:
    """``--work-dir``: a folder, made if missing.

    Raises:
        UsageError: It is a file, or cannot be made.
    """
    if path is None:
        return None
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise UsageError(f"--work-dir {path} is not a folder") from None
    except OSError as exc:
        raise UsageError(f"cannot make the --work-dir {path}: {exc.strerror}") from None
    return path


def _stored(report: Path) -> frozenset[str]:
    """``--resume``: the SOP Instance UIDs an earlier run's report says were stored.

    Raises:
        UsageError: The report cannot be read or is not one of ours; given the
            gear's completion report, the error names the per-instance report
            written with it.
    """
    from ..gear_reports import (  # noqa: PLC0415 - only for --resume
        instance_report_of,
        is_completion_report,
    )
    from ..sending.report import read_stored  # noqa: PLC0415 - only for --resume

    try:
        return read_stored(report, "--resume")
    except UsageError:
        if not is_completion_report(report):
            raise
    instead = instance_report_of(report)
    there = "beside it" if instead.is_file() else "written with it (not found)"
    raise UsageError(
        f"--resume {report} is the gear's completion report (a row per Flywheel "
        f"file); give the per-instance report {there}: {instead}"
    )
