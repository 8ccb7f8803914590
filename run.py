#!/usr/bin/env python
"""The gear's entry point: gear context -> settings -> send -> exit status.

The gear folder is ``$FLYWHEEL`` (``/flywheel/v0`` by default): ``config.json``,
``manifest.json``, ``input/``, ``output/``, ``work/``.
"""

import gc
import logging
import os
import sys
from pathlib import Path

# The imports (fw_gear brings the Flywheel SDK, pydantic and numpy) make some 80,000
# objects and no garbage: with the collector on they took 170 ms of collections,
# and every later full collection, here and in the forked sender, would scan them
# again. So: off while importing, then frozen out of its sight.
gc.disable()
import fw_gear_dicom_send.blas  # noqa: F401 - first: fw_gear imports numpy

# isort: split
from fw_gear import GearContext
from fw_gear.context import GearContextError

from fw_gear_dicom_send import gear
from fw_gear_dicom_send.errors import DicomSendError, UsageError
from fw_gear_dicom_send.fwapi import describe
from fw_gear_dicom_send.logs import configure_logging
from fw_gear_dicom_send.parser import parse_config
from fw_gear_dicom_send.status import ExitStatus

gc.freeze()
gc.enable()
log = logging.getLogger("fw_gear_dicom_send.run")
PREFIX = "dicom-send"


def main() -> ExitStatus:
    """Run the gear in ``$FLYWHEEL``; return its exit status."""
    configure_logging(0, False, prefix=PREFIX, timestamps=True, stream=sys.stdout)
    # GearContext logs a failed client construction with a traceback; the error
    # is reported below, in one line.
    logging.getLogger("fw_gear.context").setLevel(logging.CRITICAL)
    folder = Path(os.environ.get("FLYWHEEL", "/flywheel/v0"))
    try:
        with GearContext(
            gear_path=str(folder),
            manifest_path=str(folder / "manifest.json"),
            config_path=str(folder / "config.json"),
        ) as context:
            settings = parse_config(
                context.config.opts,
                context.config.inputs,
                context.config.destination,
                output_dir=context.output_dir,
                work_dir=context.work_dir,
            )
            if settings.debug:
                configure_logging(
                    2, False, prefix=PREFIX, timestamps=True, stream=sys.stdout
                )
            return gear.run(settings, context.client)
    except UsageError as exc:
        log.error("error: %s", exc)
        return ExitStatus.USAGE
    except GearContextError as exc:
        cause = exc.__cause__ or exc
        log.error("error: cannot use the api-key input: %s", describe(cause))
        return ExitStatus.USAGE
    except RuntimeError as exc:  # GearContext: config.json is not JSON
        log.error("error: %s", exc)
        return ExitStatus.USAGE
    except DicomSendError as exc:
        log.error("error: %s", exc)
        return ExitStatus.NOTHING_SENT
    except KeyboardInterrupt:
        log.error("interrupted")
        return ExitStatus.INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
