#!/usr/bin/env python
"""The gear's entry point: config.json -> settings -> send -> exit status.

The gear folder is ``$FLYWHEEL`` (``/flywheel/v0`` by default): ``config.json``,
``manifest.json``, ``input/``, ``output/``, ``work/``. A job with an api-key input
talks to Flywheel through fw-gear's ``GearContext``
(:func:`fw_gear_dicom_send.gear.flywheel.connect`, imported in :func:`main` for that
job only); one without (a local run) never imports fw-gear or the Flywheel SDK.
"""

import logging
import os
import sys
from pathlib import Path

import fw_gear_dicom_send.blas  # noqa: F401 - before anything imports numpy

# isort: split
from fw_gear_dicom_send import collector, stopping
from fw_gear_dicom_send.errors import DicomSendError, UsageError
from fw_gear_dicom_send.gear import job
from fw_gear_dicom_send.gear.config import parse_config, read_config
from fw_gear_dicom_send.logs import configure_logging
from fw_gear_dicom_send.status import ExitStatus

log = logging.getLogger("fw_gear_dicom_send.run")
PREFIX = "dicom-send"


def main() -> ExitStatus:
    """Run the gear in ``$FLYWHEEL``; return its exit status.

    SIGINT and SIGTERM (a cancelled job) stop it as :mod:`.stopping` says: the
    reports are written, and the exit status is 130 or 143.
    """
    configure_logging(0, False, prefix=PREFIX, timestamps=True, stream=sys.stdout)
    with stopping.handling():
        return stopping.exit_status(_run())


def _run() -> ExitStatus:
    folder = Path(os.environ.get("FLYWHEEL", "/flywheel/v0"))
    try:
        config = read_config(folder / "config.json")
        settings = parse_config(
            config.options,
            config.inputs,
            config.destination,
            output_dir=_made(folder / "output"),
            work_dir=_made(folder / "work"),
        )
        if settings.debug:
            configure_logging(
                2, False, prefix=PREFIX, timestamps=True, stream=sys.stdout
            )
        flywheel = None
        if config.has_api_key:
            with collector.importing():  # fw-gear and the SDK
                from fw_gear_dicom_send.gear.flywheel import connect  # noqa: PLC0415

            flywheel = connect(folder)
        return job.run(settings, flywheel)
    except UsageError as exc:
        log.error("error: %s", exc)
        return ExitStatus.USAGE
    except DicomSendError as exc:
        log.error("error: %s", exc)
        return ExitStatus.NOTHING_SENT
    except KeyboardInterrupt:
        log.error("interrupted by %s", stopping.name() or "SIGINT")
        return ExitStatus.INTERRUPTED


def _made(path: Path) -> Path:
    """``path``, a folder made if missing (as GearContext makes output/ and work/).

    Raises:
        UsageError: It cannot be made.
    """
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot make {path}: {exc.strerror}") from None
    return path


if __name__ == "__main__":
    sys.exit(main())
