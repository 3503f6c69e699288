"""The load generator's DPoP proofs and client assertions (bench/harness/proofs.py), signed
without joserfc for speed, are what the server accepts: shared.dpop's checker takes the
proofs (key, htm, htu without the query, ath, iat) and joserfc verifies the assertions with
the registered jwks."""

from __future__ import annotations

import time

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet

from bench.harness.proofs import EcKey
from shared.dpop import DPoPError, ProofChecker

URL = "http://127.0.0.1:18703/v1/employees/e1"


def test_a_bench_proof_passes_the_servers_check_for_its_request_and_token():
    key = EcKey()
    proof = key.dpop_proof("GET", URL, "the.access.token")
    checked = ProofChecker().check(proof, method="GET", url=URL + "?fields=id",
                                   access_token="the.access.token")
    assert checked.jkt == key.jkt == ECKey.import_key(key.public_jwk).thumbprint()
    with pytest.raises(DPoPError):
        ProofChecker().check(proof, method="GET", url=URL, access_token="another.token")
    with pytest.raises(DPoPError):
        ProofChecker().check(proof, method="POST", url=URL, access_token="the.access.token")


def test_bench_proofs_have_their_own_jti_and_the_given_time():
    key, now = EcKey(), int(time.time())
    first, second = (ProofChecker().check(key.dpop_proof("POST", URL, now=now), method="POST",
                                          url=URL) for _ in range(2))
    assert first.jti != second.jti
    with pytest.raises(DPoPError, match="iat"):
        ProofChecker().check(key.dpop_proof("POST", URL, now=now - 3600), method="POST",
                             url=URL)


def test_a_bench_client_assertion_verifies_with_the_registered_jwks():
    key = EcKey(kid="bench-fapi-1")
    token = jwt.decode(key.assertion("bench-fapi-app", "http://127.0.0.1:18701"),
                       KeySet.import_key_set(key.jwks), algorithms=["ES256"])
    assert token.header["kid"] == "bench-fapi-1"
    claims = token.claims
    assert claims["iss"] == claims["sub"] == "bench-fapi-app"
    assert claims["aud"] == "http://127.0.0.1:18701"
    assert claims["exp"] - claims["iat"] == 60
    other = EcKey(kid="bench-fapi-1")
    with pytest.raises(Exception, match="signature"):
        jwt.decode(key.assertion("bench-fapi-app", "x"), KeySet.import_key_set(other.jwks),
                   algorithms=["ES256"])
