"""Decompression, for a receiver that accepts none of a file's compressed syntax.

pydicom's pixel decoders do the work, with these plugins (all offline, none GPL):
pylibjpeg-openjpeg (JPEG 2000), pylibjpeg-rle and pydicom's own RLE decoder, Pillow
(8-bit JPEG Baseline and Extended), pyjpegls (JPEG-LS). JPEG Lossless (Process 14)
and 12-bit JPEG need pylibjpeg-libjpeg, which is GPLv3 and not a dependency: install
it beside dicom-send to decode those too. A lossy source stays marked lossy: pydicom
sets Lossy Image Compression (0028,2110) to "01" when it decodes one.
"""

import logging

from pydicom.dataset import Dataset
from pydicom.pixels.decoders.base import get_decoder
from pydicom.uid import UID

log = logging.getLogger(__name__)


def missing_decoder(syntax: str) -> str | None:
    """Why ``syntax`` cannot be decompressed here, or None if it can."""
    uid = UID(syntax)
    try:
        decoder = get_decoder(uid)
    except NotImplementedError:
        return f"no decoder for {uid.name}"
    if not decoder.is_available:
        missing = ", ".join(sorted(decoder.missing_dependencies)) or "a plugin"
        return f"no decoder for {uid.name} installed (it needs {missing})"
    return None


def decompress(ds: Dataset) -> None:
    """Decompress the dataset's pixel data in place (to Explicit VR Little Endian).

    Raises:
        ValueError: It cannot be decoded; the message says why, in one line.
    """
    syntax = ds.file_meta.TransferSyntaxUID
    missing = missing_decoder(syntax)
    if missing is not None:
        raise ValueError(missing)
    try:
        ds.decompress()
    except Exception as exc:  # the plugins raise what they raise
        first = str(exc).strip().splitlines()
        why = first[-1].strip() if first else type(exc).__name__
        raise ValueError(f"cannot decompress {syntax.name}: {why}") from None
