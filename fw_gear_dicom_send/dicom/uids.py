"""The few UIDs the sending process compares against, as plain strings.

pydicom names all of them, but importing pydicom costs a fresh process some 0.2 s
(it imports numpy, Pillow and its pixel decoders): the process that lists, probes
and reports does without it. ``tests/test_dicomfile.py`` checks them against
pydicom's.
"""

IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1.99"
EXPLICIT_VR_BIG_ENDIAN = "1.2.840.10008.1.2.2"
MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
"""Media Storage Directory Storage: a DICOMDIR."""
VERIFICATION = "1.2.840.10008.1.1"
"""The Verification SOP Class (C-ECHO)."""
