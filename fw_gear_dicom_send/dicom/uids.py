"""The few UIDs the sending process compares against, as plain strings.

pydicom names all of them; this module exists so that the process that lists,
probes and reports never imports pydicom. ``tests/test_dicomfile.py`` checks them
against pydicom's.
"""

IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1.99"
EXPLICIT_VR_BIG_ENDIAN = "1.2.840.10008.1.2.2"
MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
"""Media Storage Directory Storage: a DICOMDIR."""
VERIFICATION = "1.2.840.10008.1.1"
"""The Verification SOP Class (C-ECHO)."""
