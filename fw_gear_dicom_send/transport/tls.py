"""DICOM TLS settings: the PS3.15 profiles, and how to speak TLS to a peer.

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

``tls_context`` makes the ``ssl.SSLContext`` of these settings; ``tls_diagnosis``
explains a failed handshake.
"""

import enum
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UsageError
from ..settings import Labels

_NO_LABELS: Labels = {}


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
class ProfileSpec:
    """What a profile allows: its PS3.15 section, TLS 1.2 cipher suites, TLS 1.3."""

    section: str
    ciphers: tuple[str, ...]
    tls13: bool = True


_SPECS = {
    Profile.BCP195: ProfileSpec("B.9", (*_GCM_RSA, "AES128-SHA")),
    Profile.BCP195_ND: ProfileSpec("B.10", _GCM_RSA),
    Profile.BCP195_EXTENDED: ProfileSpec(
        "B.11",
        (
            *_GCM_RSA,
            "ECDHE-ECDSA-AES256-GCM-SHA384",  # TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
            "ECDHE-ECDSA-AES128-GCM-SHA256",  # TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
        ),
        tls13=False,
    ),
    Profile.BCP195_RFC8996: ProfileSpec("B.12", _ECDHE_GCM),
    Profile.BCP195_RFC8996_MODIFIED: ProfileSpec(
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


def spec(profile: Profile) -> ProfileSpec:
    """What the profile allows."""
    return _SPECS[profile]


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


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """How to speak TLS to the peer.

    Raises:
        UsageError: The key password is not UTF-8 text.
    """

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

    def __post_init__(self) -> None:
        if self.key_password is not None:
            check_password(self.key_password, "the TLS key password")

    @classmethod
    def parse(
        cls,
        profile: str | None = None,
        *,
        verify_peer: bool = True,
        check_hostname: bool = True,
        ca_file: Path | None = None,
        cert: Path | None = None,
        key: Path | None = None,
        key_password: str | None = None,
        labels: Labels = _NO_LABELS,
    ) -> "TlsSettings":
        """The settings from a profile as users write it, checked.

        Args:
            profile: A profile name (:func:`parse_profile`); None: the default.
            verify_peer: See the attribute.
            check_hostname: See the attribute.
            ca_file: See the attribute.
            cert: See the attribute.
            key: See the attribute.
            key_password: See the attribute.
            labels: How messages name ``profile`` and ``key_password``.

        Raises:
            UsageError: An unknown profile, or a password that is not UTF-8 text.
        """
        chosen = DEFAULT_PROFILE
        if profile is not None:
            try:
                chosen = parse_profile(profile)
            except UsageError as exc:
                if "profile" not in labels:
                    raise
                raise UsageError(f"{labels['profile']}: {exc}") from None
        if key_password is not None:
            check_password(key_password, labels.get("key_password", "the key password"))
        return cls(
            profile=chosen,
            verify_peer=verify_peer,
            check_hostname=check_hostname,
            ca_file=ca_file,
            cert=cert,
            key=key,
            key_password=key_password,
        )


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
