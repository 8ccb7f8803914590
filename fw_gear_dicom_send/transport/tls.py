"""DICOM TLS for the sender: an ``ssl.SSLContext`` from settings, failures explained.

Security profiles are those of DICOM PS3.15 Annex B ("Secure Transport Connection
Profiles"), each with the TLS versions and the TLS 1.2 cipher suites it names (as
DCMTK implements them, dcmtls/libsrc/tlsciphr.cc):

- B.9  BCP 195 TLS Secure Transport Connection Profile: the four ECDHE/DHE RSA
  AES-GCM suites, plus TLS_RSA_WITH_AES_128_CBC_SHA for peers of the older AES
  profile.
- B.10 Non-downgrading BCP 195: the four AES-GCM suites only.
- B.11 Extended BCP 195: those four plus the two ECDHE-ECDSA AES-GCM suites; TLS 1.2
  only (no TLS 1.3).
- B.12 BCP 195 RFC 8996: ECDHE only (RSA and ECDSA, AES-GCM), as RFC 9325
  recommends; TLS 1.2 and 1.3.
- B.13 Modified BCP 195 RFC 8996: B.12's suites plus ChaCha20-Poly1305 and AES-CCM
  (Camellia-GCM, also named, is not in OpenSSL's TLS).

No profile goes below TLS 1.2 here: RFC 8996 deprecates TLS 1.0 and 1.1, and
OpenSSL 3 refuses them anyway, so B.9 differs from B.10 only by the extra suite.
TLS 1.3 suites are OpenSSL's defaults (AES-256-GCM, ChaCha20-Poly1305, AES-128-GCM),
all named by the profiles that allow TLS 1.3.

The default profile is B.12, the strictest one that DCMTK 3.6.7 ``storescp`` (with
any of ``+px``, ``+py``, ``+pz``) and Orthanc 1.10 accept: they all offer
TLS_ECDHE_RSA_WITH_AES_*_GCM_*.

The peer is verified by default against the system's CAs *plus* an extra CA file;
its host name is checked. Turning either off is allowed, and logged as a warning.
"""

import enum
import logging
import re
import socket
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UsageError

if TYPE_CHECKING:  # cryptography is imported where used: it costs every start 50 ms
    from cryptography import x509

log = logging.getLogger(__name__)


class Profile(enum.Enum):
    """A DICOM PS3.15 Annex B TLS profile; the value is its name."""

    BCP195 = "BCP 195"
    """PS3.15 B.9."""
    BCP195_ND = "Non-downgrading BCP 195"
    """PS3.15 B.10."""
    BCP195_EXTENDED = "Extended BCP 195"
    """PS3.15 B.11."""
    BCP195_RFC8996 = "BCP 195 RFC 8996"
    """PS3.15 B.12."""
    BCP195_RFC8996_MODIFIED = "Modified BCP 195 RFC 8996"
    """PS3.15 B.13."""


DEFAULT_PROFILE = Profile.BCP195_RFC8996

_GCM_RSA = (
    "ECDHE-RSA-AES128-GCM-SHA256",  # TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
    "DHE-RSA-AES128-GCM-SHA256",  # TLS_DHE_RSA_WITH_AES_128_GCM_SHA256
    "ECDHE-RSA-AES256-GCM-SHA384",  # TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384
    "DHE-RSA-AES256-GCM-SHA384",  # TLS_DHE_RSA_WITH_AES_256_GCM_SHA384
)
_ECDHE_GCM = (
    "ECDHE-RSA-AES128-GCM-SHA256",  # TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
    "ECDHE-ECDSA-AES128-GCM-SHA256",  # TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
    "ECDHE-RSA-AES256-GCM-SHA384",  # TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384
    "ECDHE-ECDSA-AES256-GCM-SHA384",  # TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
)


@dataclass(frozen=True, slots=True)
class _Spec:
    section: str
    ciphers: tuple[str, ...]
    tls13: bool = True


_SPECS = {
    Profile.BCP195: _Spec("B.9", (*_GCM_RSA, "AES128-SHA")),
    Profile.BCP195_ND: _Spec("B.10", _GCM_RSA),
    Profile.BCP195_EXTENDED: _Spec(
        "B.11",
        (
            *_GCM_RSA,
            "ECDHE-ECDSA-AES256-GCM-SHA384",  # TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
            "ECDHE-ECDSA-AES128-GCM-SHA256",  # TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
        ),
        tls13=False,
    ),
    Profile.BCP195_RFC8996: _Spec("B.12", _ECDHE_GCM),
    Profile.BCP195_RFC8996_MODIFIED: _Spec(
        "B.13",
        (
            "ECDHE-ECDSA-AES128-CCM",  # TLS_ECDHE_ECDSA_WITH_AES_128_CCM
            "ECDHE-ECDSA-AES128-CCM8",  # TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8
            *_ECDHE_GCM[:2],
            "ECDHE-RSA-CHACHA20-POLY1305",  # ..._RSA_WITH_CHACHA20_POLY1305_SHA256
            "ECDHE-ECDSA-CHACHA20-POLY1305",  # ..._ECDSA_WITH_CHACHA20_POLY1305_SHA256
            "ECDHE-ECDSA-AES256-CCM",  # TLS_ECDHE_ECDSA_WITH_AES_256_CCM
            "ECDHE-ECDSA-AES256-CCM8",  # TLS_ECDHE_ECDSA_WITH_AES_256_CCM_8
            *_ECDHE_GCM[2:],
        ),
    ),
}

# How users write the profiles, squeezed to lower-case letters and digits.
_ALIASES = {
    "bcp195": Profile.BCP195,
    "b9": Profile.BCP195,
    "bcp195nd": Profile.BCP195_ND,
    "nondowngradingbcp195": Profile.BCP195_ND,
    "bcp195nondowngrading": Profile.BCP195_ND,
    "b10": Profile.BCP195_ND,
    "bcp195ex": Profile.BCP195_EXTENDED,
    "bcp195ext": Profile.BCP195_EXTENDED,
    "bcp195extended": Profile.BCP195_EXTENDED,
    "extendedbcp195": Profile.BCP195_EXTENDED,
    "b11": Profile.BCP195_EXTENDED,
    "bcp195rfc8996": Profile.BCP195_RFC8996,
    "rfc8996": Profile.BCP195_RFC8996,
    "bcp1958996": Profile.BCP195_RFC8996,
    "b12": Profile.BCP195_RFC8996,
    "modifiedbcp195rfc8996": Profile.BCP195_RFC8996_MODIFIED,
    "bcp195rfc8996modified": Profile.BCP195_RFC8996_MODIFIED,
    "bcp195rfc8996mod": Profile.BCP195_RFC8996_MODIFIED,
    "rfc8996mod": Profile.BCP195_RFC8996_MODIFIED,
    "rfc8996modified": Profile.BCP195_RFC8996_MODIFIED,
    "b13": Profile.BCP195_RFC8996_MODIFIED,
}


def parse_profile(text: str) -> Profile:
    """Read a profile name as users write it (``BCP 195``, ``bcp195-nd``, ``B.12``).

    Raises:
        UsageError: Not a known profile.
    """
    squeezed = re.sub(r"[^a-z0-9]", "", text.lower())
    profile = _ALIASES.get(squeezed)
    if profile is None:
        names = ", ".join(p.value for p in Profile)
        raise UsageError(f"unknown TLS security profile {text!r}: use one of {names}")
    return profile


def section(profile: Profile) -> str:
    """The profile's section of DICOM PS3.15 (``B.12``)."""
    return _SPECS[profile].section


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """How to speak TLS to the peer."""

    profile: Profile = DEFAULT_PROFILE
    verify_peer: bool = True
    """Verify the peer's certificate (against the system's CAs plus ``ca_file``)."""
    check_hostname: bool = True
    """Require the certificate to name the host we connect to."""
    ca_file: Path | None = None
    """Extra CA certificates (PEM), trusted besides the system's."""
    cert: Path | None = None
    """Our certificate (PEM), for mutual TLS."""
    key: Path | None = None
    """Its private key (PEM); may be in ``cert`` instead."""
    key_password: str | None = field(default=None, repr=False)


def check_password(password: str, what: str) -> str:
    """A key password that can be handed to OpenSSL (UTF-8 text).

    Raises:
        UsageError: It is not UTF-8 text (the message names ``what``, never the
            password).
    """
    try:
        password.encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError(f"{what} is not UTF-8 text") from None
    return password


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
    spec = _SPECS[profile]
    context = ssl.SSLContext(protocol)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.maximum_version = (
        ssl.TLSVersion.MAXIMUM_SUPPORTED if spec.tls13 else ssl.TLSVersion.TLSv1_2
    )
    context.set_ciphers(":".join(spec.ciphers))
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
            f"cannot load the CA certificate file {ca_file}: {_ssl_reason(exc)}"
        ) from None


def risks(settings: TlsSettings) -> list[str]:
    """What these settings give up, for the log (as warnings)."""
    if not settings.verify_peer:
        return [
            "TLS: the peer's certificate is NOT verified: the connection is "
            "encrypted, but the peer could be anyone"
        ]
    if not settings.check_hostname:
        return ["TLS: the peer's certificate is verified, but not its host name"]
    return []


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
                f"{_ssl_reason(exc)}"
            )
        raise UsageError(message) from None


def _check_key(key: Path, password: str | None) -> None:
    """Open the private key, to tell a wrong password from a broken file."""
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415

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


def _ssl_reason(exc: ssl.SSLError) -> str:
    reason = exc.reason or exc.strerror or str(exc)
    return reason.replace("_", " ").lower() if reason.isupper() else str(reason)


# -- explaining a failed connection ------------------------------------------------

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
        return f"the peer at {where} does not speak TLS ({_ssl_reason(exc)})"
    if reason in _CLIENT_CERT_REFUSED:
        if settings.cert is None:
            return (
                f"the peer at {where} requires a client certificate "
                f"({_ssl_reason(exc)}): give a certificate and key"
            )
        return (
            f"the peer at {where} refused our client certificate {settings.cert} "
            f"({_ssl_reason(exc)})"
        )
    if reason in _NOTHING_IN_COMMON:
        extra = "" if settings.cert else ", or it requires a client certificate"
        return (
            f"no TLS version or cipher suite in common with the peer at {where} "
            f"under the profile {settings.profile.value} "
            f"(PS3.15 {section(settings.profile)}){extra}"
        )
    return f"TLS handshake with the peer at {where} failed: {_ssl_reason(exc)}"


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
    why = exc.verify_message or _ssl_reason(exc)
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
