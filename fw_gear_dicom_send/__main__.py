"""``python -m fw_gear_dicom_send``: the dicom-send command line."""

import sys

from .cli.main import main

sys.exit(main())
