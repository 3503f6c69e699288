"""The DPoP proof check (shared/dpop.py, RFC 9449 section 4.3), one rule per test, with
proofs a client makes with joserfc; jti replays against the real Redis."""

from __future__ import annotations

import base64
import json
import time

import pytest
import redis
from joserfc import jws

from shared.dpop import DPoPError, ProofChecker, normalized_url
from shared.runtime import Runtime
from tests.fixtures.dpop import ALGS, DPoPKey, mac_proof, unsigned_proof

URL = "https://sync.koppel.example/v1/companies"
TOKEN = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"


@pytest.fixture
def checker() -> ProofChecker:
    return ProofChecker(max_age=60, max_skew=5, nonce_key=b"k" * 32)


def refused(checker: ProofChecker, proof: str, *, method: str = "GET", url: str = URL,
            token: str | None = TOKEN) -> str:
    with pytest.raises(DPoPError) as caught:
        checker.check(proof, method=method, url=url, access_token=token)
    assert caught.value.error == "invalid_dpop_proof"
    return caught.value.description


@pytest.mark.parametrize("alg", ALGS)
def test_each_advertised_algorithm_is_accepted_and_names_its_key(
        checker: ProofChecker, alg: str) -> None:
    key = DPoPKey(alg)
    proof = checker.check(key.proof("GET", URL, access_token=TOKEN), method="GET", url=URL,
                          access_token=TOKEN)
    assert proof.jkt == key.jkt  # the RFC 7638 thumbprint, computed independently


def test_htu_is_compared_after_normalisation_and_without_query() -> None:
    assert normalized_url("HTTPS://Sync.Koppel.Example:443/v1/%7euser/./a/../companies?x=1#f") \
        == "https://sync.koppel.example/v1/~user/companies"
    assert normalized_url("http://h:8080") == "http://h:8080/"
    assert normalized_url("ftp://h/x") is None
    assert normalized_url("https://user:pw@h/x") is None


def test_a_proof_for_the_same_url_spelled_otherwise_is_accepted(checker: ProofChecker) -> None:
    key = DPoPKey()
    spelled = "HTTPS://SYNC.koppel.example:443/v1/companies?page=2"
    checker.check(key.proof("GET", spelled, access_token=TOKEN), method="GET", url=URL,
                  access_token=TOKEN)


def test_wrong_method_url_or_token_hash_is_refused(checker: ProofChecker) -> None:
    key = DPoPKey()
    assert "htm" in refused(checker, key.proof("POST", URL, access_token=TOKEN))
    assert "htu" in refused(checker, key.proof("GET", URL + "/other", access_token=TOKEN))
    assert "htu" in refused(checker, key.proof("GET", "https://evil.example/v1/companies",
                                               access_token=TOKEN))
    assert "ath" in refused(checker, key.proof("GET", URL, access_token=TOKEN + "x"))
    assert "ath" in refused(checker, key.proof("GET", URL))  # no ath at all


def test_old_and_future_proofs_are_refused(checker: ProofChecker) -> None:
    key = DPoPKey()
    assert "iat" in refused(checker, key.proof("GET", URL, access_token=TOKEN,
                                               iat=time.time() - 120))
    assert "iat" in refused(checker, key.proof("GET", URL, access_token=TOKEN,
                                               iat=time.time() + 60))


def test_bad_type_algorithm_or_key_is_refused(checker: ProofChecker) -> None:
    key = DPoPKey()
    assert "typ" in refused(checker, key.proof("GET", URL, access_token=TOKEN,
                                               header={"typ": "JWT"}))
    assert "alg" in refused(checker, unsigned_proof("GET", URL, key.public_jwk), token=None)
    assert "alg" in refused(checker, mac_proof("GET", URL), token=None)
    private = key.proof("GET", URL, access_token=TOKEN,
                        header={"jwk": key.key.as_dict(private=True)})
    assert "private" in refused(checker, private)
    other = DPoPKey()
    forged = key.proof("GET", URL, access_token=TOKEN, header={"jwk": other.public_jwk})
    assert "signature" in refused(checker, forged)
    assert "compact JWS" in refused(checker, "not.a.jws.at.all")


def test_a_short_rsa_key_is_refused(checker: ProofChecker) -> None:
    from joserfc.jwk import RSAKey

    key = DPoPKey("PS256")
    key.key = RSAKey.generate_key(1024, private=True, auto_kid=False)
    assert "2048" in refused(checker, key.proof("GET", URL, access_token=TOKEN))


def test_nonces_when_required(checker: ProofChecker) -> None:
    strict = ProofChecker(nonce_key=b"k" * 32, nonce_required=True, nonce_lifetime=300)
    key = DPoPKey()
    with pytest.raises(DPoPError) as caught:
        strict.check(key.proof("GET", URL, access_token=TOKEN), method="GET", url=URL,
                     access_token=TOKEN)
    assert caught.value.error == "use_dpop_nonce"
    now = time.time()
    strict.check(key.proof("GET", URL, access_token=TOKEN, nonce=strict.nonce(now)),
                 method="GET", url=URL, access_token=TOKEN, now=now)
    # The previous window's nonce still works; two windows back it is stale.
    strict.check(key.proof("GET", URL, access_token=TOKEN, nonce=strict.nonce(now - 300)),
                 method="GET", url=URL, access_token=TOKEN, now=now)
    with pytest.raises(DPoPError) as stale:
        strict.check(key.proof("GET", URL, access_token=TOKEN, nonce=strict.nonce(now - 600)),
                     method="GET", url=URL, access_token=TOKEN, now=now)
    assert stale.value.error == "use_dpop_nonce"
    # Another server's key makes other nonces.
    assert ProofChecker(nonce_key=b"o" * 32).nonce(now) != strict.nonce(now)


async def test_a_jti_is_accepted_once(checker: ProofChecker, runtime: Runtime,
                                      redis_client: redis.Redis) -> None:
    key = DPoPKey()
    proof = key.proof("GET", URL, access_token=TOKEN)
    checked = checker.check(proof, method="GET", url=URL, access_token=TOKEN)
    await checker.reserve(runtime.redis, checked)
    with pytest.raises(DPoPError, match="used before"):
        await checker.reserve(runtime.redis, checker.check(proof, method="GET", url=URL,
                                                           access_token=TOKEN))
    # Remembered as long as the proof could be accepted, not much longer.
    ttl = redis_client.ttl(checker.jti_key(checked))
    assert ttl == redis_client.ttl(f"koppel:dpop:jti:{checked.jkt}:{checked.jti}")
    assert 60 < ttl <= checker.jti_ttl


def test_a_tokens_binding_is_read_from_cnf_and_a_malformed_one_refused() -> None:
    from shared.tokens import InvalidToken, check_claims

    now = time.time()
    claims = {"iss": "https://auth", "aud": "koppel-api", "exp": now + 60, "iat": now,
              "sub": "kp_app", "client_id": "kp_app", "jti": "x", "scope": "webhooks.manage"}
    assert check_claims(claims, issuer="https://auth", audience="koppel-api", now=now).jkt is None
    bound = check_claims({**claims, "cnf": {"jkt": "abc"}}, issuer="https://auth",
                         audience="koppel-api", now=now)
    assert bound.jkt == "abc"
    for cnf in ("abc", {"jkt": 5}, {"x5t#S256": "abc"}, {}):
        with pytest.raises(InvalidToken, match="cnf"):
            check_claims({**claims, "cnf": cnf}, issuer="https://auth", audience="koppel-api",
                         now=now)


def test_a_proof_whose_iat_is_not_a_finite_number_is_refused(checker: ProofChecker) -> None:
    """NaN compares false both ways, so it would slip through the time window and make a
    proof replayable forever once its jti record expired (found by review). NaN and the
    infinities are not JSON (RFC 8259): the claims' parser refuses them before the
    window is looked at, and the window's own check stays as a second line."""
    key = DPoPKey("ES256")
    for iat in (float("nan"), float("inf"), float("-inf")):
        body = {"jti": f"j-{iat}", "htm": "GET", "htu": URL, "iat": iat}
        proof = jws.serialize_compact(
            {"typ": "dpop+jwt", "alg": "ES256", "jwk": key.public_jwk}, json.dumps(body),
            key.key, algorithms=["ES256"])
        with pytest.raises(DPoPError, match=r"iat|not JSON"):
            checker.check(proof, method="GET", url=URL)


def test_a_header_whose_alg_or_typ_is_not_a_string_is_a_proof_error(
    checker: ProofChecker,
) -> None:
    """Refused as a bad proof, never a crash (a 500 before any signature was checked)."""
    key = DPoPKey("ES256")
    for header in ({"typ": "dpop+jwt", "alg": ["ES256"], "jwk": key.public_jwk},
                   {"typ": "dpop+jwt", "alg": {"x": 1}, "jwk": key.public_jwk},
                   {"typ": ["dpop+jwt"], "alg": "ES256", "jwk": key.public_jwk}):
        segments = [base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode()
                    for part in (header, {"jti": "x", "htm": "GET", "htu": URL,
                                          "iat": int(time.time())})]
        with pytest.raises(DPoPError):
            checker.check(".".join([*segments, "c2ln"]), method="GET", url=URL)


def test_the_key_cache_keeps_the_keys_in_use(checker: ProofChecker,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The cache of checked proof headers evicts the least recently used one, so a
    stream of new keys never pushes out a client's hot key."""
    monkeypatch.setattr("shared.dpop.MAX_CACHED_KEYS", 3)
    hot, *others = [DPoPKey() for _ in range(5)]

    def use(key: DPoPKey) -> bytes:
        proof = key.proof("GET", URL, access_token=TOKEN)
        checker.check(proof, method="GET", url=URL, access_token=TOKEN)
        return proof.split(".")[0].encode()

    hot_header = use(hot)
    for other in others:
        use(other)
        assert hot_header in checker._keys  # evicted, it would be checked again
        use(hot)
    assert len(checker._keys) == 3


def _with_signature(proof: str, signature: bytes) -> str:
    head, payload, _ = proof.split(".")
    return f"{head}.{payload}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"


def _es256_variants(proof: str) -> dict[str, str]:
    """The proof with its ES256 signature (r and s, 32 bytes each) changed in one way."""
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    signature = base64.urlsafe_b64decode(proof.split(".")[2] + "==")
    r, s = signature[:32], signature[32:]
    flipped = bytearray(signature)
    flipped[10] ^= 1
    return {
        "one byte short": _with_signature(proof, signature[:63]),
        "one byte long": _with_signature(proof, signature + b"\x00"),
        "a bit flipped": _with_signature(proof, bytes(flipped)),
        "r and s swapped": _with_signature(proof, s + r),
        "r zero": _with_signature(proof, bytes(32) + s),
        "s zero": _with_signature(proof, r + bytes(32)),
        "DER instead of r and s": _with_signature(proof, encode_dss_signature(
            int.from_bytes(r, "big"), int.from_bytes(s, "big"))),
        "no signature": _with_signature(proof, b""),
    }


def test_the_es256_check_refuses_what_joserfc_refuses(checker: ProofChecker) -> None:
    """ES256 signatures are checked through cryptography with the ECDSA parameters made
    once (shared/dpop.py `_verify_function`): every signature joserfc's own verification
    refuses is refused, and a good one is accepted by both, also once the key is cached."""
    key = DPoPKey("ES256")
    for _ in range(2):  # the second time through the cached key
        good = key.proof("GET", URL, access_token=TOKEN)
        jws.deserialize_compact(good, key.key, algorithms=["ES256"])
        checker.check(good, method="GET", url=URL, access_token=TOKEN)
    for name, variant in _es256_variants(key.proof("GET", URL, access_token=TOKEN)).items():
        with pytest.raises(Exception):  # noqa: B017 - joserfc's own error types vary
            jws.deserialize_compact(variant, key.key, algorithms=["ES256"])
        assert "signature" in refused(checker, variant), name


@pytest.mark.parametrize("alg", ALGS)
def test_a_key_whose_key_ops_exclude_verify_is_refused(checker: ProofChecker, alg: str) -> None:
    """joserfc's verification asks the key for its `verify` operation; the check made
    once per header asks the same, for every algorithm (found by review: the ES256 path
    took the key directly)."""
    key = DPoPKey(alg)
    for ops in (["sign"], []):
        proof = key.proof("GET", URL, access_token=TOKEN,
                          header={"jwk": {**key.public_jwk, "key_ops": ops}})
        assert "key_ops" in refused(checker, proof)
    allowed = key.proof("GET", URL, access_token=TOKEN,
                        header={"jwk": {**key.public_jwk, "key_ops": ["verify"]}})
    checker.check(allowed, method="GET", url=URL, access_token=TOKEN)


def test_es256_proofs_are_checked_by_the_shared_es256_verify(
        checker: ProofChecker, monkeypatch: pytest.MonkeyPatch) -> None:
    """The ES256 signature of a proof goes through shared/es256.py's verify (the check
    the tests above hold to joserfc's), once per proof, also through the cached key."""
    from shared import es256

    calls: list[bytes] = []
    real = es256.verify

    def counted(public: object, data: bytes, signature: bytes) -> None:
        calls.append(signature)
        real(public, data, signature)

    monkeypatch.setattr(es256, "verify", counted)
    key = DPoPKey("ES256")
    for _ in range(3):
        checker.check(key.proof("GET", URL, access_token=TOKEN), method="GET", url=URL,
                      access_token=TOKEN)
    assert len(calls) == 3
