"""Standard Webhooks signatures: `webhook-signature: v1,<base64 HMAC-SHA256>` of
`{webhook-id}.{webhook-timestamp}.{body}`, keyed with the bytes of a `whsec_<base64>` secret.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

__all__ = ["SECRET_PREFIX", "headers", "secret_key", "sign"]

SECRET_PREFIX = "whsec_"  # noqa: S105 (the prefix of every secret, not one)
_KEY_BYTES = (24, 64)  # what the specification recommends


def secret_key(secret: str) -> bytes:
    """The key bytes of `secret` (`whsec_` + base64); ValueError naming the rule otherwise."""
    rule = (
        f"must be {SECRET_PREFIX} followed by the base64 of {_KEY_BYTES[0]} to {_KEY_BYTES[1]} "
        'random bytes (e.g. python -c "import base64, os; '
        "print('whsec_' + base64.b64encode(os.urandom(32)).decode())\")"
    )
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"webhooks.secret {rule}")
    try:
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"webhooks.secret is not base64: it {rule}") from None
    if not _KEY_BYTES[0] <= len(key) <= _KEY_BYTES[1]:
        raise ValueError(f"webhooks.secret has {len(key)} bytes: it {rule}")
    return key


def sign(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value of `body` sent as `message_id` at `timestamp` (seconds)."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return f"v1,{base64.b64encode(digest).decode()}"


def headers(key: bytes, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers of one attempt."""
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(key, message_id, timestamp, body),
    }
