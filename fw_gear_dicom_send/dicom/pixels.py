"""Decompression, for a receiver that accepts none of a file's compressed syntax.

pydicom's pixel decoders do the work, with these plugins (all offline, none GPL),
tried in this order for each syntax:

- JPEG Baseline and 8-bit JPEG Extended: python-gdcm, then Pillow;
- 12-bit JPEG Extended: python-gdcm through :mod:`~fw_gear_dicom_send.dicom.gdcm12`
  (pydicom's own GDCM plugin declines it);
- JPEG Lossless (Process 14, and its Selection Value 1): python-gdcm;
- JPEG-LS (lossless and near-lossless): python-gdcm, then pyjpegls;
- JPEG 2000: python-gdcm, then Pillow, then pylibjpeg-openjpeg;
- High-Throughput JPEG 2000: pylibjpeg-openjpeg;
- RLE Lossless: pydicom's own decoder, then pylibjpeg-rle.

When the first plugin that decodes a file fails after decoding (e.g. on a data set
whose attributes contradict the codestream), each plugin is tried on its own. The
retired JPEG processes (hierarchical, spectral selection, progressive) have no
decoder and stay a clear failure. A decompressed instance is the same instance: its
SOP Instance UID and every other element are kept; only what the new encoding needs
changes (Pixel Data, the transfer syntax, Photometric Interpretation and Planar
Configuration when a YCbCr JPEG becomes RGB, Number of Frames), and a source in a
lossy syntax is marked lossy (Lossy Image Compression "01").
"""

import logging

from pydicom.dataset import Dataset
from pydicom.pixels.decoders.base import get_decoder
from pydicom.uid import (
    UID,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLSNearLossless,
)

from . import gdcm12

log = logging.getLogger(__name__)

gdcm12.register()

LOSSY_SYNTAXES = frozenset({JPEGBaseline8Bit, JPEGExtended12Bit, JPEGLSNearLossless})
"""Syntaxes whose pixel data is always lossy. JPEG 2000 and HTJ2K may be either:
their source's own Lossy Image Compression is kept as it is."""


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

    The SOP Instance UID is kept (pydicom would make a new one).

    Raises:
        ValueError: It cannot be decoded; the message says why, in one line.
    """
    syntax = ds.file_meta.TransferSyntaxUID
    missing = missing_decoder(syntax)
    if missing is not None:
        raise ValueError(missing)
    # pydicom logs each plugin that fails before one succeeds: go straight to
    # the only one that decodes 12-bit JPEG Extended.
    twelve_bit = syntax == JPEGExtended12Bit and int(ds.get("BitsStored", 8)) > 8
    plugin = gdcm12.LABEL if twelve_bit else ""
    try:
        ds.decompress(generate_instance_uid=False, decoding_plugin=plugin)
    except Exception as exc:  # the plugins raise what they raise
        if not _with_each_plugin(ds, syntax):
            raise ValueError(f"cannot decompress {syntax.name}: {_why(exc)}") from None
    if syntax in LOSSY_SYNTAXES:
        ds.LossyImageCompression = "01"


def _with_each_plugin(ds: Dataset, syntax: UID) -> bool:
    """Decompress with each available plugin in turn; whether one did it."""
    for plugin in get_decoder(syntax).available_plugins:
        try:
            ds.decompress(generate_instance_uid=False, decoding_plugin=plugin)
        except Exception as exc:
            log.debug("%s cannot decompress %s: %s", plugin, syntax.name, exc)
        else:
            return True
    return False


def _why(exc: Exception) -> str:
    """An exception's message in one line.

    pydicom's "exceptions were raised by all available plugins", followed by one
    line per plugin, becomes those lines joined: ``gdcm: …; pillow: …``.
    """
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].endswith("plugins:"):
        lines = lines[1:]
    return "; ".join(lines) or type(exc).__name__
