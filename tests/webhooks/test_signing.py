"""Standard Webhooks signatures: the specification's test vector and its reference library."""

from __future__ import annotations

import time

import pytest
from pydantic import SecretStr, ValidationError
from standardwebhooks import Webhook, WebhookVerificationError

from wanserve.settings import WebhookSettings
from wanserve.webhooks.signing import headers, secret_key, sign

# The test vector of the Standard Webhooks specification.
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TIMESTAMP = 1614265330
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_signature_matches_the_specifications_test_vector() -> None:
    key = secret_key(VECTOR_SECRET)
    assert sign(key, VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY) == VECTOR_SIGNATURE


def test_the_reference_library_verifies_our_headers_and_refuses_a_changed_body() -> None:
    key = secret_key(VECTOR_SECRET)
    body = b'{"type":"video.completed"}'
    sent = headers(key, "evt_1", int(time.time()), body)
    assert Webhook(VECTOR_SECRET).verify(body, sent) == {"type": "video.completed"}
    with pytest.raises(WebhookVerificationError):
        Webhook(VECTOR_SECRET).verify(b'{"type":"video.failed"}', sent)


@pytest.mark.parametrize(
    ("secret", "words"),
    [
        ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "must be whsec_"),
        ("whsec_not base64!", "is not base64"),
        ("whsec_c2hvcnQ=", "has 5 bytes"),
    ],
)
def test_a_secret_that_is_not_whsec_base64_of_enough_bytes_is_refused(
    secret: str, words: str
) -> None:
    with pytest.raises(ValueError, match=words):
        secret_key(secret)
    with pytest.raises(ValidationError, match=words):
        WebhookSettings(secret=SecretStr(secret))
