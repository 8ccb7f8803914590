"""A pydicom decoder plugin: 12-bit JPEG Extended (Process 4) by python-gdcm.

pydicom's own GDCM plugin declines JPEG Extended with 12-bit samples, and Pillow
decodes only 8-bit JPEG; GDCM's 12-bit IJG codec decodes it (its output equals
DCMTK's ``dcmdjpeg``). :func:`register` adds this plugin after pydicom's plugins for
that syntax, so 8-bit JPEG Extended still goes the usual way.

python-gdcm is imported only when a frame is decoded: every sending process
imports this module, and few ever decode a 12-bit JPEG.
"""

import logging
from typing import cast

from pydicom.pixels.decoders.base import DecodeRunner, get_decoder
from pydicom.uid import JPEGExtended12Bit

log = logging.getLogger(__name__)

LABEL = "gdcm-12bit"
DECODER_DEPENDENCIES = {JPEGExtended12Bit: ("gdcm>=3.0",)}


def is_available(uid: str) -> bool:
    """Whether this plugin decodes ``uid`` here (python-gdcm is installed)."""
    if uid != JPEGExtended12Bit:
        return False
    try:
        import gdcm  # noqa: F401, PLC0415 - see the module docstring
    except ImportError:
        return False
    return True


def decode_frame(src: bytes, runner: DecodeRunner) -> bytes:
    """One frame of 12-bit JPEG Extended, decoded.

    Raises:
        ValueError: Not 12-bit data (another plugin serves it), or GDCM cannot
            decode it.
    """
    import gdcm  # noqa: PLC0415 - see the module docstring

    bits_stored = runner.bits_stored
    if bits_stored <= 8:
        raise ValueError("8-bit JPEG Extended is left to the other plugins")
    fragment = gdcm.Fragment()
    fragment.SetByteStringValue(src)
    fragments = gdcm.SequenceOfFragments.New()
    fragments.AddFragment(fragment)
    element = gdcm.DataElement(gdcm.Tag(0x7FE0, 0x0010))
    element.SetValue(fragments.__ref__())

    image = gdcm.Image()
    image.SetNumberOfDimensions(2)
    image.SetDimensions((runner.columns, runner.rows, 1))
    image.SetDataElement(element)
    kind = gdcm.PhotometricInterpretation.GetPIType(runner.photometric_interpretation)
    image.SetPhotometricInterpretation(gdcm.PhotometricInterpretation(kind))
    if runner.samples_per_pixel > 1:
        image.SetPlanarConfiguration(runner.planar_configuration)
    syntax = gdcm.TransferSyntax.GetTSType(str.__str__(JPEGExtended12Bit))
    image.SetTransferSyntax(gdcm.TransferSyntax(syntax))
    # 12 bits allocated picks GDCM's 12-bit codec at once (it still returns 16-bit
    # words); with 16 it would first try its 16-bit codec, which fails and says so
    # on stderr, then fall back to the 12-bit one.
    image.SetPixelFormat(
        gdcm.PixelFormat(
            runner.samples_per_pixel,
            12,
            bits_stored,
            bits_stored - 1,
            runner.pixel_representation,
        )
    )
    buffer = image.GetBuffer()
    if buffer is None:
        raise ValueError("GDCM cannot decode this 12-bit JPEG")
    frame = cast(str, buffer).encode("utf-8", "surrogateescape")
    expected = (
        runner.rows
        * runner.columns
        * runner.samples_per_pixel
        * (runner.bits_allocated // 8)
    )
    if len(frame) != expected:
        raise ValueError(
            f"GDCM decoded {len(frame)} bytes of a {expected}-byte 12-bit JPEG frame"
        )
    return frame


def register() -> None:
    """Add the plugin to pydicom's JPEG Extended decoder (once)."""
    decoder = get_decoder(JPEGExtended12Bit)
    if LABEL not in decoder.available_plugins and is_available(JPEGExtended12Bit):
        decoder.add_plugin(LABEL, (__name__, "decode_frame"))
