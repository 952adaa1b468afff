"""Golden vectors: our callback signatures are what Laravel computes (checked by running PHP itself).

The seed's MLCallbackController (and spatie/laravel-webhook-client) verify with
`hash_equals(hash_hmac('sha256', $request->getContent(), $secret), $request->header('X-ML-Signature'))`.
These tests run exactly that in `php`, so a difference in key handling, encoding or hex case fails here.
php-cli is required: `make test` installs it (scripts/test_deps.sh); without it these tests fail rather than skip.
"""

import json
import shutil
import subprocess

import pytest

from callbacks.services import callback_deliver, callback_enqueue, signed_headers
from common.api.signatures import sign_hex, standard_signature
from predictions.models import Prediction
from tests.callbacks.conftest import SECRET

BODY = (
    b'{"id":"6f1c2d3e-0000-4000-8000-000000000001","event":"predictions.updated","occurred_at":"2025-11-03T19:05:01Z",'
    b'"triggered_by":"booking.started","affected_bookings":[{"booking_id":"BK789","predicted_battery":57.3,'
    b'"confidence_interval":{"lower":49.1,"upper":65.5},"prediction_method":"real_time_cascade"}],'
    b'"metadata":{"vehicle_id":"78","trigger_booking_id":"BK123456"}}'
)
# Computed once with PHP 8.2 `hash_hmac('sha256', BODY, SECRET)` and with Python's hmac; both agree.
BODY_HEX = "ff24a4c30687b197debd8a0700e430ba48cda7069d18bb37270b349da6cbac0e"
# A whsec_ secret is used verbatim by PHP's hash_hmac, so X-ML-Signature must not base64-decode it.
WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
BODY_HEX_WHSEC = "ebfd5eafd4fc94063420458a8c92a32b1808ad45929bef7eed973379b4397e1f"

# The seed controller's verifySignature(), verbatim but for reading the request from stdin and the environment.
PHP_VERIFY_SIGNATURE = r"""
$payload = file_get_contents('php://stdin');
$signature = getenv('X_ML_SIGNATURE');
$secret = getenv('ML_WEBHOOK_SECRET');
$expectedSignature = hash_hmac('sha256', $payload, $secret);
echo $expectedSignature, "\n", hash_equals($expectedSignature, $signature) ? 'valid' : 'invalid';
"""

# Standard Webhooks verification written in PHP from the spec: an implementation independent of ours.
PHP_VERIFY_STANDARD = r"""
$payload = file_get_contents('php://stdin');
$secret = getenv('SECRET');
$key = str_starts_with($secret, 'whsec_') ? base64_decode(substr($secret, 6)) : $secret;
$signed = getenv('WEBHOOK_ID') . '.' . getenv('WEBHOOK_TIMESTAMP') . '.' . $payload;
$expected = 'v1,' . base64_encode(hash_hmac('sha256', $signed, $key, true));
echo $expected, "\n", hash_equals($expected, getenv('WEBHOOK_SIGNATURE')) ? 'valid' : 'invalid';
"""


def php(code: str, stdin: bytes, **env: str) -> list[str]:
    """Run PHP code with `stdin` and extra environment variables; return its output lines."""
    binary = shutil.which("php")
    if binary is None:
        pytest.fail(
            "php-cli is not installed, so the Laravel-compatibility golden vectors cannot run: "
            "apt-get install -y php-cli (make test installs it when missing)"
        )
    done = subprocess.run(
        [binary, "-r", code], input=stdin, capture_output=True, env={"PATH": "/usr/bin:/bin", **env}, timeout=30
    )
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode().splitlines()


def test_x_ml_signature_golden_vector_in_python():
    assert sign_hex(SECRET, BODY) == BODY_HEX
    assert sign_hex(WHSEC, BODY) == BODY_HEX_WHSEC


@pytest.mark.parametrize(("secret", "expected"), [(SECRET, BODY_HEX), (WHSEC, BODY_HEX_WHSEC)])
def test_x_ml_signature_golden_vector_in_php_as_the_seed_controller_verifies(secret, expected):
    expected_line, verdict = php(PHP_VERIFY_SIGNATURE, BODY, X_ML_SIGNATURE=expected, ML_WEBHOOK_SECRET=secret)

    assert expected_line == expected
    assert verdict == "valid"


def test_php_rejects_a_tampered_body():
    tampered = BODY.replace(b"57.3", b"97.3")
    _, verdict = php(PHP_VERIFY_SIGNATURE, tampered, X_ML_SIGNATURE=BODY_HEX, ML_WEBHOOK_SECRET=SECRET)
    assert verdict == "invalid"


def test_standard_webhooks_signature_matches_the_spec_example():
    """The example of the Standard Webhooks reference libraries (secret, id, timestamp, payload, signature)."""
    signature = standard_signature(WHSEC, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}')
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


@pytest.mark.parametrize("secret", [SECRET, WHSEC])
def test_standard_webhooks_signature_verifies_in_an_independent_php_implementation(secret):
    headers = signed_headers(
        secret=secret, msg_id="6f1c2d3e-0000-4000-8000-000000000001", timestamp=1762196701, body=BODY
    )

    expected, verdict = php(
        PHP_VERIFY_STANDARD,
        BODY,
        SECRET=secret,
        WEBHOOK_ID=headers["webhook-id"],
        WEBHOOK_TIMESTAMP=headers["webhook-timestamp"],
        WEBHOOK_SIGNATURE=headers["webhook-signature"],
    )

    assert expected == headers["webhook-signature"]
    assert verdict == "valid"


@pytest.mark.django_db
def test_a_real_delivery_verifies_in_php_exactly_as_the_seed_controller_does(receiver, make_predictions):
    row = callback_enqueue(
        predictions=make_predictions(2), triggered_by="booking.started", metadata={"vehicle_id": "78"}
    )
    callback_deliver(outbox_id=row.pk)

    [request] = receiver.received
    assert request.headers["content-type"] == "application/json"
    assert request.body == row.body.encode()  # the stored bytes, unchanged
    _, verdict = php(
        PHP_VERIFY_SIGNATURE, request.body, X_ML_SIGNATURE=request.headers["x-ml-signature"], ML_WEBHOOK_SECRET=SECRET
    )
    assert verdict == "valid"
    _, standard = php(
        PHP_VERIFY_STANDARD,
        request.body,
        SECRET=SECRET,
        WEBHOOK_ID=request.headers["webhook-id"],
        WEBHOOK_TIMESTAMP=request.headers["webhook-timestamp"],
        WEBHOOK_SIGNATURE=request.headers["webhook-signature"],
    )
    assert standard == "valid"
    assert request.headers["webhook-id"] == str(row.pk) == json.loads(request.body)["id"]
    assert Prediction.objects.count() == 2
