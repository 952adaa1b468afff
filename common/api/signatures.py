"""The one place for webhook HMAC helpers, inbound (verifying Laravel's events) and outbound (signing callbacks).

Two schemes are supported because the contract names both (see `shared/ARCHITECTURE.md`, "Signatures"):

- `X-ML-Signature`: lowercase hex HMAC-SHA256 of the exact raw body bytes, which is what the seed's Laravel
  controller and spatie/laravel-webhook-client compute.
- Standard Webhooks (https://www.standardwebhooks.com): `webhook-id`, `webhook-timestamp` and
  `webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, where a secret written as
  `whsec_<base64>` is the base64-decoded key. The timestamp bounds replays of a captured request.

One configured secret serves both: the hex header keys with it as written (as PHP does), the Standard
Webhooks signature with its decoded bytes when it is a `whsec_` secret.

Every comparison uses `hmac.compare_digest` so that timing does not leak how much of a guess was right. It takes
only ASCII strings, so each signature header is first checked to be printable ASCII of a sane length: anything else
(a stray `é`, a megabyte of hex, a 400-digit timestamp that overflows the clock check) is a refused signature, a
401 naming the header, never an exception and a 500 that the sender would retry forever.
"""

import base64
import binascii
import hashlib
import hmac
import re
import time
from collections.abc import Mapping

SIGNATURE_HEADER = "X-ML-Signature"
WEBHOOK_ID_HEADER = "webhook-id"
WEBHOOK_TIMESTAMP_HEADER = "webhook-timestamp"
WEBHOOK_SIGNATURE_HEADER = "webhook-signature"
TIMESTAMP_TOLERANCE_SECONDS = 5 * 60
WHSEC_PREFIX = "whsec_"
# Far above any real value (64 hex characters; a few `v1,<44 base64>` entries during key rotation; 10 digits).
MAX_HEADER_CHARS = 1000
TIMESTAMP = re.compile(r"[0-9]{1,15}")


class SignatureError(Exception):
    """The request's signature is missing or wrong; the message says which, without revealing the expected value.

    `header` names the header to blame (the error body's field).
    """

    def __init__(self, message: str, *, header: str = SIGNATURE_HEADER) -> None:
        super().__init__(message)
        self.header = header


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """The header's value, or None when absent; `SignatureError` naming it unless it is printable ASCII, not huge."""
    value = headers.get(name)
    if not value:
        return None
    if len(value) > MAX_HEADER_CHARS:
        raise SignatureError(f"{name} is longer than {MAX_HEADER_CHARS} characters.", header=name)
    if not (value.isascii() and value.isprintable()):
        raise SignatureError(f"{name} must be printable ASCII.", header=name)
    return value


def standard_key(secret: str) -> bytes:
    """The Standard Webhooks HMAC key: a `whsec_` secret is base64 after the prefix, anything else its UTF-8 bytes."""
    if secret.startswith(WHSEC_PREFIX):
        try:
            return base64.b64decode(secret[len(WHSEC_PREFIX) :], validate=True)
        except (binascii.Error, ValueError):
            # A malformed whsec_ secret is still a usable shared secret; use it verbatim rather than fail closed
            # on a configuration detail the sender may share.
            pass
    return secret.encode()


def sign_hex(secret: str, body: bytes) -> str:
    """The `X-ML-Signature` value: lowercase hex HMAC-SHA256 of the exact body bytes, keyed with the secret as written.

    Exactly PHP's `hash_hmac('sha256', $body, $secret)`, which the seed's MLCallbackController and
    spatie/laravel-webhook-client compute: PHP uses the string verbatim, `whsec_` prefix included.
    """
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def standard_signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value (`v1,<base64>`) for one message, per the Standard Webhooks spec."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(standard_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify_hex(secret: str, body: bytes, signature: str) -> bool:
    """True when `signature` is the hex HMAC of `body` (case-insensitive hex, surrounding spaces ignored)."""
    candidate = signature.strip().lower()
    return candidate.isascii() and hmac.compare_digest(sign_hex(secret, body), candidate)


def verify_standard(
    secret: str,
    msg_id: str,
    timestamp: str,
    signature_header: str,
    body: bytes,
    *,
    now: float | None = None,
    tolerance: int = TIMESTAMP_TOLERANCE_SECONDS,
) -> None:
    """Check a Standard Webhooks signature; raise `SignatureError` saying why it is not acceptable.

    The header may carry several space-separated `v1,<sig>` entries (key rotation); one match suffices. The
    timestamp must be ASCII digits (`int()` would also take `" 1_614_265_330"` or Arabic-Indic digits, which are not
    what the sender signed, and a 400-digit number that overflows the clock arithmetic).
    """
    if not isinstance(timestamp, str) or not TIMESTAMP.fullmatch(timestamp):
        raise SignatureError("webhook-timestamp is not an integer number of seconds.", header=WEBHOOK_TIMESTAMP_HEADER)
    ts = int(timestamp)
    current = time.time() if now is None else now
    if abs(current - ts) > tolerance:
        raise SignatureError(
            "webhook-timestamp is more than 5 minutes away from the server's clock.", header=WEBHOOK_TIMESTAMP_HEADER
        )
    expected = standard_signature(secret, msg_id, ts, body).split(",", 1)[1]
    for entry in signature_header.split():
        version, _, value = entry.partition(",")
        if version == "v1" and value.isascii() and hmac.compare_digest(expected, value):
            return
    raise SignatureError("webhook-signature does not match the body.", header=WEBHOOK_SIGNATURE_HEADER)


def verify_inbound(secret: str, headers: Mapping[str, str], body: bytes, *, now: float | None = None) -> None:
    """Accept a request signed with either scheme; raise `SignatureError` otherwise.

    `headers` must be case-insensitive (Django's `request.headers` is). `X-ML-Signature` is tried first because
    it is what the Laravel side sends; the Standard Webhooks headers are the alternative. An empty secret means
    verification is switched off, which the caller decides; this function always checks.
    """
    hex_signature = _header(headers, SIGNATURE_HEADER)
    standard = _header(headers, WEBHOOK_SIGNATURE_HEADER)
    if hex_signature:
        if verify_hex(secret, body, hex_signature):
            return
        if not standard:
            raise SignatureError(f"{SIGNATURE_HEADER} does not match the body.")
    if standard:
        msg_id = _header(headers, WEBHOOK_ID_HEADER)
        timestamp = _header(headers, WEBHOOK_TIMESTAMP_HEADER)
        if not msg_id or not timestamp:
            raise SignatureError(
                "webhook-signature needs the webhook-id and webhook-timestamp headers.", header=WEBHOOK_SIGNATURE_HEADER
            )
        verify_standard(secret, msg_id, timestamp, standard, body, now=now)
        return
    raise SignatureError(f"The request is not signed: send {SIGNATURE_HEADER} or the Standard Webhooks headers.")
