import hashlib
import hmac

from reactors.signature import sign, verify


def test_signature_is_the_hex_hmac_sha256_of_the_exact_body():
    body = b'{"reaction_id":"r1","value":101.0}'
    expected = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert sign("s3cret", body) == f"sha256={expected}"
    # A known answer, computed once by `printf '%s' 'hello' | openssl dgst -sha256 -hmac key`.
    assert sign("key", b"hello") == "sha256=9307b3b915efb5171ff14d8cb55fbcc798c6c0ef1456d66ded1a6aa723a58b7b"


def test_verify_rejects_another_body_secret_or_no_header():
    body = b"{}"
    header = sign("s3cret", body)
    assert verify("s3cret", body, header)
    assert not verify("s3cret", b"{ }", header)
    assert not verify("other", body, header)
    assert not verify("s3cret", body, None)
