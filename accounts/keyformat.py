"""API key secrets: format, generation, checksum and hashing. Pure functions, no database.

A secret looks like ``sk-tb-<key_id><random><checksum>``:

- ``sk-tb-``: a recognizable prefix, so secret scanners and people can tell what leaked (customer API keys;
  staff REST API tokens use ``st-tb-`` in the same format, see STAFF_PREFIX);
- ``key_id``: 12 base62 characters, public (shown in the UI), the indexed lookup column;
- ``random``: 22 base62 characters from the ``secrets`` module, about 131 bits of entropy;
- ``checksum``: CRC32 of everything before it, 6 base62 characters, so a mistyped or truncated key is rejected
  without touching the database or the cache.
"""

import hashlib
import secrets
import string
import zlib

PREFIX = "sk-tb-"
STAFF_PREFIX = "st-tb-"
ALPHABET = string.digits + string.ascii_letters  # base62
KEY_ID_LENGTH = 12
RANDOM_LENGTH = 22  # 22 * log2(62) = 131 bits
CHECKSUM_LENGTH = 6  # 62**6 > 2**32
SECRET_LENGTH = len(PREFIX) + KEY_ID_LENGTH + RANDOM_LENGTH + CHECKSUM_LENGTH


def _base62(number: int, width: int) -> str:
    chars = []
    for _ in range(width):
        number, digit = divmod(number, 62)
        chars.append(ALPHABET[digit])
    return "".join(reversed(chars))


def _random_base62(length: int) -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(length))


def checksum(body: str) -> str:
    return _base62(zlib.crc32(body.encode()), CHECKSUM_LENGTH)


def secret_generate(*, prefix: str = PREFIX) -> tuple[str, str]:
    """Return (key_id, secret) for a new key."""
    key_id = _random_base62(KEY_ID_LENGTH)
    body = prefix + key_id + _random_base62(RANDOM_LENGTH)
    return key_id, body + checksum(body)


def secret_key_id(secret: str, *, prefix: str = PREFIX) -> str | None:
    """The key_id of a well-formed secret, or None if the prefix, length, alphabet or checksum is wrong."""
    if len(secret) != SECRET_LENGTH - len(PREFIX) + len(prefix) or not secret.startswith(prefix):
        return None
    body, check = secret[:-CHECKSUM_LENGTH], secret[-CHECKSUM_LENGTH:]
    if not all(c in ALPHABET for c in secret[len(prefix) :]):
        return None
    if not secrets.compare_digest(checksum(body), check):
        return None
    return secret[len(prefix) : len(prefix) + KEY_ID_LENGTH]


def secret_hash(secret: str) -> str:
    """sha256 of the whole secret, hex.

    A fast hash is the right tool here, unlike for passwords: the secret carries over 128 random bits, so no
    amount of hashing speed makes guessing it feasible, and a slow hash (bcrypt, argon2) would only add
    milliseconds to every authenticated request.
    """
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_display(key_id: str, *, prefix: str = PREFIX) -> str:
    """What the UI shows for a key whose secret is gone: the prefix and public id."""
    return f"{prefix}{key_id}…"
