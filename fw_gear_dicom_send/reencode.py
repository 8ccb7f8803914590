"""Read a file to re-encode it: what the decoding paths of C-STORE and STOW-RS share.

pydicom reads a data set whose VR encoding contradicts its transfer syntax (implicit
VR under an explicit syntax, say) in the encoding it finds, but then records the
declared one as the data set's own: its elements, which carry no VR, would then be
written with none. Here the data set keeps the encoding it was read in, so each
element gets its VR from the dictionary when it is written again.
"""

import logging
import os
import warnings

from pydicom import dcmread
from pydicom.dataelem import RawDataElement
from pydicom.dataset import FileDataset

log = logging.getLogger(__name__)


def read_dataset(path: str) -> FileDataset:
    """The whole file, decoded by pydicom (forced: a bare data set too).

    Raises:
        Exception: pydicom cannot read it (whatever pydicom raises).
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = dcmread(path, force=True)
    for warning in caught:  # e.g. the meta contradicts the data set
        log.debug("%s: %s", os.path.basename(path), warning.message)
    raw = next(
        (e for e in ds._dict.values() if isinstance(e, RawDataElement)),
        None,
    )
    if raw is not None and ds.original_encoding != (
        raw.is_implicit_VR,
        raw.is_little_endian,
    ):
        ds.set_original_encoding(
            raw.is_implicit_VR, raw.is_little_endian, ds.original_character_set
        )
    return ds
