"""Optional inbound signatures (ML_INBOUND_SECRET): signed events are applied, others get a 401 and store nothing."""

import base64
import hashlib
import hmac
import json
import time

import pytest
from django.test import override_settings

from bookings.models import Booking, InboundEvent
from common.api.signatures import SignatureError, sign_hex, standard_signature, verify_inbound
from tests.seed_examples import CANCELLED, CREATED, ENDED, MODIFIED, STARTED, URL

pytestmark = pytest.mark.django_db

SECRET = "laravel-shared-secret"
BODY = json.dumps(CREATED).encode()


@pytest.fixture
def send(api):
    """POST exact bytes (what was signed) as JSON with extra headers given as plain names."""

    def _send(url: str, body: bytes = BODY, headers: dict[str, str] | None = None):
        return api.generic("POST", url, body, content_type="application/json", headers=headers or {})

    return _send


def assert_refused(response, reason: str, field: str = "X-ML-Signature") -> None:
    assert response.status_code == 401, response.content
    body = response.json()
    assert body["status"] == "error" and body["error"] == "invalid_signature"
    assert reason in body["detail"]
    assert field in body["fields"], body["fields"]
    assert not InboundEvent.objects.exists() and not Booking.objects.exists()


@override_settings(ML_INBOUND_SECRET=SECRET)
@pytest.mark.parametrize(
    ("event", "payload"),
    [("created", CREATED), ("started", STARTED), ("ended", ENDED), ("modified", MODIFIED), ("cancelled", CANCELLED)],
)
def test_every_event_accepts_a_valid_hex_signature(send, event, payload):
    body = json.dumps(payload).encode()

    response = send(URL[event], body, {"X-ML-Signature": sign_hex(SECRET, body)})

    assert response.status_code == 200, response.json()
    assert InboundEvent.objects.count() == 1


@override_settings(ML_INBOUND_SECRET=SECRET)
def test_signature_covers_the_exact_raw_bytes_not_the_parsed_json(send):
    """Whitespace Laravel sends is part of what it signed: re-serialising the JSON would break the check."""
    body = json.dumps(CREATED, indent=2, separators=(",", " : ")).encode()

    assert send(URL["created"], body, {"X-ML-Signature": sign_hex(SECRET, body)}).status_code == 200
    assert send(URL["created"], body, {"X-ML-Signature": sign_hex(SECRET, json.dumps(CREATED).encode())}).status_code


@override_settings(ML_INBOUND_SECRET=SECRET)
def test_wrong_hex_signature_is_refused(send):
    response = send(URL["created"], BODY, {"X-ML-Signature": sign_hex("another-secret", BODY)})

    assert_refused(response, "X-ML-Signature does not match")


@override_settings(ML_INBOUND_SECRET=SECRET)
def test_body_changed_after_signing_is_refused(send):
    tampered = json.dumps({**CREATED, "current_battery_level": 99.0}).encode()

    assert_refused(send(URL["created"], tampered, {"X-ML-Signature": sign_hex(SECRET, BODY)}), "does not match")


@override_settings(ML_INBOUND_SECRET=SECRET)
def test_missing_signature_is_refused(send):
    assert_refused(send(URL["created"]), "not signed")


@override_settings(ML_INBOUND_SECRET=SECRET)
def test_api_key_is_still_checked_first(client):
    """Without an API key the answer is the usual 401 for the key, not a hint about signatures."""
    response = client.post(URL["created"], BODY, content_type="application/json")

    assert response.status_code == 401
    assert response.json()["error"] != "invalid_signature"


@override_settings(ML_INBOUND_SECRET=SECRET)
def test_valid_standard_webhooks_signature_is_accepted(send):
    now = int(time.time())
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(now),
        "webhook-signature": standard_signature(SECRET, "msg_1", now, BODY),
    }

    assert send(URL["created"], BODY, headers).status_code == 200


@override_settings(ML_INBOUND_SECRET=SECRET)
def test_stale_standard_webhooks_timestamp_is_refused(send):
    """A correctly signed request captured more than 5 minutes ago cannot be replayed."""
    stale = int(time.time()) - 6 * 60
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(stale),
        "webhook-signature": standard_signature(SECRET, "msg_1", stale, BODY),
    }

    assert_refused(send(URL["created"], BODY, headers), "more than 5 minutes", field="webhook-timestamp")


@override_settings(ML_INBOUND_SECRET=SECRET)
def test_standard_webhooks_signature_for_another_message_id_is_refused(send):
    now = int(time.time())
    headers = {
        "webhook-id": "msg_2",
        "webhook-timestamp": str(now),
        "webhook-signature": standard_signature(SECRET, "msg_1", now, BODY),
    }

    assert_refused(send(URL["created"], BODY, headers), "webhook-signature does not match", field="webhook-signature")


def test_whsec_secret_is_base64_decoded_as_the_spec_says():
    """The Standard Webhooks reference vector: key `whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw`."""
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    signature = standard_signature(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body)

    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    headers = {
        "webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
        "webhook-timestamp": "1614265330",
        "webhook-signature": f"v1,bm90LWl0 {signature}",
    }
    verify_inbound(secret, headers, body, now=1614265330 + 10)


@override_settings(ML_INBOUND_SECRET="")
def test_no_secret_configured_accepts_unsigned_events(send):
    assert send(URL["created"]).status_code == 200
    assert InboundEvent.objects.count() == 1


def test_the_hex_header_keys_a_whsec_secret_as_written_as_php_does():
    """PHP's hash_hmac uses the configured string verbatim; only Standard Webhooks decodes `whsec_`."""
    secret = "whsec_" + base64.b64encode(b"raw-key").decode()
    as_php = hmac.new(secret.encode(), BODY, hashlib.sha256).hexdigest()

    verify_inbound(secret, {"X-ML-Signature": as_php}, BODY)
    with pytest.raises(SignatureError):
        verify_inbound(secret, {"X-ML-Signature": sign_hex("raw-key", BODY)}, BODY)


ARABIC_INDIC_DIGITS = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")


def standard_headers_for(timestamp: str, signature: str | None = None, msg_id: str = "msg_1") -> dict[str, str]:
    """Standard Webhooks headers signed for now and msg_id, with the given timestamp header (and signature)."""
    now = int(time.time())
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": timestamp,
        "webhook-signature": signature or standard_signature(SECRET, msg_id, now, BODY),
    }


@override_settings(ML_INBOUND_SECRET=SECRET)
@pytest.mark.parametrize(
    ("headers", "header", "reason"),
    [
        ({"X-ML-Signature": "é" * 64}, "X-ML-Signature", "printable ASCII"),
        ({"X-ML-Signature": "a" * 100_000}, "X-ML-Signature", "longer than 1000"),
        (standard_headers_for(str(int(time.time())), signature="v1,é"), "webhook-signature", "printable ASCII"),
        (
            standard_headers_for(str(int(time.time())), signature="v1," + "A" * 100_000),
            "webhook-signature",
            "longer than 1000",
        ),
        (standard_headers_for("9" * 400), "webhook-timestamp", "not an integer"),
        (
            standard_headers_for(str(int(time.time())).translate(ARABIC_INDIC_DIGITS)),
            "webhook-timestamp",
            "printable ASCII",
        ),
        (standard_headers_for(str(int(time.time())), msg_id="msg_é"), "webhook-id", "printable ASCII"),
    ],
    ids=[
        "non-ascii-hex",
        "long-hex",
        "non-ascii-standard",
        "long-standard",
        "huge-timestamp",
        "non-ascii-digits-timestamp",
        "non-ascii-id",
    ],
)
def test_a_malformed_signature_header_is_a_401_naming_it_never_a_500(send, headers, header, reason):
    """Non-ASCII or absurdly long signature headers used to raise inside the comparison (TypeError) or the clock
    check (OverflowError): a 500, which Laravel retries forever. They are refused like any wrong signature, and so
    are a timestamp in other digits than ASCII and a non-ASCII webhook-id, which `int()` and UTF-8 used to accept
    although over HTTP (Latin-1 headers) they cannot be the bytes the sender signed."""
    response = send(URL["created"], BODY, headers)

    assert_refused(response, reason, field=header)
