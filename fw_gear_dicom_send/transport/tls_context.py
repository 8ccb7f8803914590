"""The ``ssl.SSLContext`` of TLS settings, for a client or a listener of ours.

A context allows the TLS versions and cipher suites of its profile only. Files
that cannot be used (missing, not PEM, a key that does not match its certificate,
a wrong password) are each named in a one-line :class:`UsageError`.
"""

import ssl
from pathlib import Path

from ..errors import UsageError
from .tls import Profile, TlsSettings, spec


def client_context(settings: TlsSettings) -> ssl.SSLContext:
    """The client-side context for these settings.

    Raises:
        UsageError: A file is missing, unreadable or not what it should be, or the
            key does not match the certificate.
    """
    context = _profiled(ssl.PROTOCOL_TLS_CLIENT, settings.profile)
    if settings.verify_peer:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
        if settings.ca_file is not None:
            _load_ca(context, settings.ca_file)
        if not settings.check_hostname:
            context.check_hostname = False
    else:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if settings.cert is not None or settings.key is not None:
        _load_client_certificate(context, settings)
    return context


def _profiled(protocol: ssl._SSLMethod, profile: Profile) -> ssl.SSLContext:
    """A context limited to the profile's TLS versions and cipher suites."""
    allowed = spec(profile)
    context = ssl.SSLContext(protocol)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.maximum_version = (
        ssl.TLSVersion.MAXIMUM_SUPPORTED if allowed.tls13 else ssl.TLSVersion.TLSv1_2
    )
    context.set_ciphers(":".join(allowed.ciphers))
    return context


def server_context(settings: TlsSettings) -> ssl.SSLContext:
    """The server-side context of a listener of ours.

    It presents ``cert`` (and ``key``). With ``ca_file`` it requires a client
    certificate issued by one of those CAs (mutual TLS); without, it asks for
    none.

    Raises:
        UsageError: No certificate, or a file that cannot be used.
    """
    if settings.cert is None:
        raise UsageError("a TLS listener needs its certificate (--tls-cert)")
    context = _profiled(ssl.PROTOCOL_TLS_SERVER, settings.profile)
    _load_client_certificate(context, settings)
    if settings.ca_file is not None:
        _load_ca(context, settings.ca_file)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def _load_ca(context: ssl.SSLContext, ca_file: Path) -> None:
    """Trust the CA certificates of ``ca_file`` too.

    Raises:
        UsageError: The file is missing, unreadable or not PEM certificates.
    """
    _check_readable(ca_file, "CA certificate file")
    try:
        context.load_verify_locations(cafile=str(ca_file))
    except ssl.SSLError as exc:
        raise UsageError(
            f"cannot load the CA certificate file {ca_file}: {ssl_reason(exc)}"
        ) from None


def _check_readable(path: Path, what: str) -> None:
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as exc:
        raise UsageError(f"cannot read the {what} {path}: {exc.strerror}") from None


def _load_client_certificate(context: ssl.SSLContext, settings: TlsSettings) -> None:
    cert, key = settings.cert, settings.key
    if cert is None:
        raise UsageError(f"the client key {key} needs its certificate (the cert input)")
    _check_readable(cert, "client certificate")
    if key is not None:
        _check_readable(key, "client key")
        _check_key(key, settings.key_password)

    def password() -> str:
        if settings.key_password is None:
            raise UsageError(
                f"the client key {key or cert} is encrypted: give its password"
            )
        return settings.key_password

    try:
        context.load_cert_chain(str(cert), str(key) if key else None, password=password)
    except ssl.SSLError as exc:
        reason = exc.reason or ""
        if reason == "KEY_VALUES_MISMATCH":
            message = f"the client key {key} does not match the certificate {cert}"
        elif reason in ("BAD_DECRYPT", "BAD_PASSWORD_READ"):
            message = f"cannot decrypt the client key {key or cert}: wrong password"
        else:
            message = (
                f"cannot load the client certificate {cert} and key {key or cert}: "
                f"{ssl_reason(exc)}"
            )
        raise UsageError(message) from None


def _check_key(key: Path, password: str | None) -> None:
    """Open the private key, to tell a wrong password from a broken file."""
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415 - TLS only

    data = key.read_bytes()
    secret = password.encode() if password is not None else None
    try:
        serialization.load_pem_private_key(data, password=secret)
    except TypeError:
        if secret is None:
            raise UsageError(
                f"the client key {key} is encrypted: give its password"
            ) from None
        # A password for a key that has none: the key is fine.
    except ValueError:
        if secret is not None and b"ENCRYPTED" in data:
            raise UsageError(
                f"cannot decrypt the client key {key}: wrong password"
            ) from None
        raise UsageError(f"the client key {key} is not a PEM private key") from None


def ssl_reason(exc: ssl.SSLError) -> str:
    """OpenSSL's reason for ``exc``, in words (``wrong version number``)."""
    reason = exc.reason or exc.strerror or str(exc)
    return reason.replace("_", " ").lower() if reason.isupper() else str(reason)
