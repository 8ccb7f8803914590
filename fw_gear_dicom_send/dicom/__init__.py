"""DICOM files themselves: probing, the provenance element, transcoding, samples."""
