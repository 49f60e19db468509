"""reportflow_common.tokens.public_jwk: the JWKS entry verifiers use to pick and check auth's signing key."""
from __future__ import annotations

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from reportflow_common.tokens import ALGORITHM, public_jwk


def test_jwk_describes_an_ed25519_signing_key():
    jwk = public_jwk(Ed25519PrivateKey.generate().public_key())
    assert jwk["kty"] == "OKP" and jwk["crv"] == "Ed25519" and jwk["alg"] == "EdDSA" == ALGORITHM
    assert jwk["use"] == "sig"
    assert jwk["kid"] and isinstance(jwk["kid"], str)


def test_jwk_holds_no_private_part():
    jwk = public_jwk(Ed25519PrivateKey.generate().public_key())
    assert "d" not in jwk


def test_kid_is_stable_for_one_key():
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    reloaded = serialization.load_pem_private_key(pem, password=None)  # e.g. after a restart
    assert public_jwk(private.public_key())["kid"] == public_jwk(private.public_key())["kid"]
    assert public_jwk(reloaded.public_key()) == public_jwk(private.public_key())


def test_kid_differs_across_keys():
    kids = {public_jwk(Ed25519PrivateKey.generate().public_key())["kid"] for _ in range(5)}
    assert len(kids) == 5


def test_a_token_signed_by_the_private_key_verifies_with_the_published_jwk():
    private = Ed25519PrivateKey.generate()
    jwk = public_jwk(private.public_key())
    token = jwt.encode({"sub": "u1"}, private, algorithm="EdDSA", headers={"kid": jwk["kid"]})
    assert jwt.get_unverified_header(token)["kid"] == jwk["kid"]
    assert jwt.decode(token, jwt.PyJWK(jwk).key, algorithms=["EdDSA"])["sub"] == "u1"
    other = public_jwk(Ed25519PrivateKey.generate().public_key())
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, jwt.PyJWK(other).key, algorithms=["EdDSA"])


CLAIMS = {"exp": 2, "iat": 1, "jti": "j", "type": "access", "sub": "u", "iss": "reportflow"}


@pytest.mark.parametrize("claim", sorted(CLAIMS))
def test_every_required_claim_must_be_present(claim):
    from reportflow_common.tokens import check_claims_present
    with pytest.raises(jwt.MissingRequiredClaimError):
        check_claims_present({k: v for k, v in CLAIMS.items() if k != claim})


@pytest.mark.parametrize("change", [{"type": "admin"}, {"type": None}, {"jti": ""}, {"jti": 7}])
def test_type_and_jti_must_be_meaningful(change):
    from reportflow_common.tokens import check_claims_present
    with pytest.raises(jwt.InvalidTokenError):
        check_claims_present({**CLAIMS, **change})
    check_claims_present({**CLAIMS, "type": "refresh"})
