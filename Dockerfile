# The dicom-send gear. Base: the official python:3.11 slim image on Debian 12
# (bookworm), the Python and Debian release the test suite runs on. Nothing else
# from the OS is needed at run time (no DCMTK: the gear speaks DICOM itself).
FROM python:3.11.7-slim-bookworm

ENV FLYWHEEL=/flywheel/v0 \
    VENV=/venv \
    PATH=/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1

# Dependencies first, from the lock: this layer is rebuilt only when the lock changes.
COPY docker/install.sh docker/requirements.lock /opt/dicom-send/
RUN sh /opt/dicom-send/install.sh deps /opt/dicom-send/requirements.lock

# Then the package, the gear's entry point and manifest.
COPY pyproject.toml README.md /opt/dicom-send/src/
COPY fw_gear_dicom_send /opt/dicom-send/src/fw_gear_dicom_send
RUN sh /opt/dicom-send/install.sh package /opt/dicom-send/src
WORKDIR ${FLYWHEEL}
COPY run.py manifest.json ${FLYWHEEL}/

# Run as an unprivileged user that owns the gear folder (input/, output/, work/).
RUN useradd --system --uid 1000 --home-dir ${FLYWHEEL} --shell /usr/sbin/nologin gear \
    && chown -R gear ${FLYWHEEL}
USER 1000

ENTRYPOINT ["python", "/flywheel/v0/run.py"]
