from hypothesis import given
from hypothesis import strategies as st

from accounts import keyformat


def test_secret_has_prefix_length_and_its_key_id():
    key_id, secret = keyformat.secret_generate()
    assert secret.startswith("sk-tb-")
    assert len(secret) == keyformat.SECRET_LENGTH
    assert keyformat.secret_key_id(secret) == key_id


def test_secrets_differ():
    assert len({keyformat.secret_generate()[1] for _ in range(200)}) == 200


def test_random_part_carries_at_least_128_bits():
    import math

    assert keyformat.RANDOM_LENGTH * math.log2(62) >= 128


@given(st.integers(min_value=len(keyformat.PREFIX), max_value=keyformat.SECRET_LENGTH - 1), st.data())
def test_any_single_typo_is_rejected_by_the_checksum(position, data):
    _, secret = keyformat.secret_generate()
    replacement = data.draw(st.sampled_from([c for c in keyformat.ALPHABET if c != secret[position]]))
    typo = secret[:position] + replacement + secret[position + 1 :]
    assert keyformat.secret_key_id(typo) is None


def test_malformed_secrets_are_rejected():
    _, secret = keyformat.secret_generate()
    for bad in ["", "sk-tb-", secret[:-1], secret + "a", "sk-xx-" + secret[6:], secret.replace(secret[10], "!")]:
        assert keyformat.secret_key_id(bad) is None


def test_hash_is_sha256_hex_of_the_whole_secret():
    _, secret = keyformat.secret_generate()
    digest = keyformat.secret_hash(secret)
    changed = secret[:-1] + ("y" if secret.endswith("x") else "x")  # the last character, always changed
    assert len(digest) == 64 and digest != keyformat.secret_hash(changed)
