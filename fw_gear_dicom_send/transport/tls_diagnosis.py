"""Why a TLS connection failed, found by one more handshake, in one line.

A peer that does not speak TLS, refuses our client certificate, shares no version
or cipher suite with our profile, or presents a certificate we do not trust
(expired, not yet valid, for another host, from an unknown CA) is named as such.
"""

import socket
import ssl
from typing import TYPE_CHECKING

from .tls import TlsSettings, section
from .tls_context import ssl_reason

if TYPE_CHECKING:  # cryptography is imported where used: only a diagnosis needs it
    from cryptography import x509

_NOT_TLS = frozenset(
    {
        "WRONG_VERSION_NUMBER",
        "UNKNOWN_PROTOCOL",
        "RECORD_LAYER_FAILURE",
        "PACKET_LENGTH_TOO_LONG",
        "UNEXPECTED_EOF_WHILE_READING",
        "HTTP_REQUEST",
    }
)
_CLIENT_CERT_REFUSED = frozenset(
    {
        "TLSV1_ALERT_UNKNOWN_CA",
        "SSLV3_ALERT_BAD_CERTIFICATE",
        "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
        "SSLV3_ALERT_CERTIFICATE_EXPIRED",
        "TLSV13_ALERT_CERTIFICATE_REQUIRED",
        "TLSV1_ALERT_ACCESS_DENIED",
        "TLSV1_ALERT_DECRYPT_ERROR",
    }
)
_NOTHING_IN_COMMON = frozenset(
    {
        "SSLV3_ALERT_HANDSHAKE_FAILURE",
        "NO_SHARED_CIPHER",
        "TLSV1_ALERT_PROTOCOL_VERSION",
        "UNSUPPORTED_PROTOCOL",
        "NO_PROTOCOLS_AVAILABLE",
        "NO_CIPHERS_AVAILABLE",
        "TLSV1_ALERT_INSUFFICIENT_SECURITY",
    }
)
_EXPIRED, _NOT_YET_VALID = 10, 9
_HOSTNAME_MISMATCH, _IP_MISMATCH = 62, 64
_AFTER_HANDSHAKE_WAIT = 2.0


def explain_failure(
    host: str,
    port: int,
    settings: TlsSettings,
    context: ssl.SSLContext,
    timeout: float,
) -> str | None:
    """Why a TLS association to ``host:port`` failed, found by one more handshake.

    Returns:
        A one-line reason, or None if the TCP connection itself fails (the caller
        says why) or TLS is not the problem.
    """
    where = f"{host}:{port}"
    try:
        raw = socket.create_connection((host, port), timeout=timeout)
    except OSError:
        return None
    with raw:
        try:
            with context.wrap_socket(raw, server_hostname=host) as conn:
                return _after_handshake(conn, where, settings)
        except ssl.SSLCertVerificationError as exc:
            return _untrusted(exc, host, port, timeout)
        except ssl.SSLEOFError:
            return (
                f"the peer at {where} does not speak TLS (it hung up on the handshake)"
            )
        except ssl.SSLError as exc:
            return _handshake_error(exc, where, settings)
        except TimeoutError:
            return (
                f"the peer at {where} does not speak TLS (no answer to the TLS "
                f"handshake within {timeout:g} s)"
            )
        except OSError as exc:
            return (
                f"the peer at {where} does not speak TLS (the connection failed "
                f"during the handshake: {exc.strerror or exc})"
            )


def _after_handshake(
    conn: ssl.SSLSocket, where: str, settings: TlsSettings
) -> str | None:
    # In TLS 1.3 the server judges our certificate after our side of the handshake
    # is done: its verdict arrives as an alert on the first read. A server that
    # accepted us just waits for the association request.
    conn.settimeout(_AFTER_HANDSHAKE_WAIT)
    try:
        conn.recv(1)
    except TimeoutError:
        return None
    except ssl.SSLError as exc:
        return _handshake_error(exc, where, settings)
    except OSError:
        pass
    return f"the peer at {where} closed the connection right after the TLS handshake"


def _handshake_error(exc: ssl.SSLError, where: str, settings: TlsSettings) -> str:
    reason = exc.reason or ""
    if reason in _NOT_TLS:
        return f"the peer at {where} does not speak TLS ({ssl_reason(exc)})"
    if reason in _CLIENT_CERT_REFUSED:
        if settings.cert is None:
            return (
                f"the peer at {where} requires a client certificate "
                f"({ssl_reason(exc)}): give a certificate and key"
            )
        return (
            f"the peer at {where} refused our client certificate {settings.cert} "
            f"({ssl_reason(exc)})"
        )
    if reason in _NOTHING_IN_COMMON:
        extra = "" if settings.cert else ", or it requires a client certificate"
        return (
            f"no TLS version or cipher suite in common with the peer at {where} "
            f"under the profile {settings.profile.value} "
            f"(PS3.15 {section(settings.profile)}){extra}"
        )
    return f"TLS handshake with the peer at {where} failed: {ssl_reason(exc)}"


def _unverified_context() -> ssl.SSLContext:
    """A client context that accepts any certificate: to look, never to send."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _peer_certificate(
    host: str, port: int, timeout: float
) -> "x509.Certificate | None":
    """The peer's certificate, fetched without verifying it (to describe it)."""
    context = _unverified_context()
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=host) as conn,
        ):
            der = conn.getpeercert(binary_form=True)
    except (OSError, ValueError):
        return None
    from cryptography import x509  # noqa: PLC0415

    return x509.load_der_x509_certificate(der) if der else None


def _names(cert: "x509.Certificate") -> str:
    from cryptography import x509  # noqa: PLC0415

    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return "no subject alternative name"
    names = [f"DNS:{n}" for n in sans.value.get_values_for_type(x509.DNSName)]
    names += [f"IP:{n}" for n in sans.value.get_values_for_type(x509.IPAddress)]
    return ", ".join(names) or "no host name"


def _untrusted(
    exc: ssl.SSLCertVerificationError, host: str, port: int, timeout: float
) -> str:
    where = f"{host}:{port}"
    cert = _peer_certificate(host, port, timeout)
    who = (
        f"subject {cert.subject.rfc4514_string()}, issuer "
        f"{cert.issuer.rfc4514_string()}"
        if cert is not None
        else "certificate not readable"
    )
    why = exc.verify_message or ssl_reason(exc)
    code = exc.verify_code
    if code == _EXPIRED and cert is not None:
        when = cert.not_valid_after_utc
        return (
            f"the certificate of the peer at {where} expired on "
            f"{when:%Y-%m-%d %H:%M} UTC ({who})"
        )
    if code == _NOT_YET_VALID and cert is not None:
        when = cert.not_valid_before_utc
        return (
            f"the certificate of the peer at {where} is not valid before "
            f"{when:%Y-%m-%d %H:%M} UTC ({who}); check the clocks"
        )
    if code in (_HOSTNAME_MISMATCH, _IP_MISMATCH):
        names = _names(cert) if cert is not None else "unknown names"
        return (
            f"the certificate of the peer at {where} is not valid for {host!r}: it "
            f"names {names} ({who})"
        )
    return (
        f"the certificate of the peer at {where} is not trusted: {why} ({who}); "
        "add the CA that issued it"
    )


def speaks_tls(host: str, port: int, timeout: float) -> bool:
    """Whether the peer answers a TLS handshake (with anything TLS: even a refusal)."""
    context = _unverified_context()
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=host),
        ):
            return True
    except ssl.SSLError as exc:
        return "ALERT" in (exc.reason or "")
    except OSError:
        return False
