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


# access_token_required: verified tokens remembered, the deny-list and the key asked every time

class DenyList:
    """Stands in for Redis: the deny-list keys `revoke` sets, and how often they were asked about."""

    def __init__(self):
        self.revoked, self.asked = set(), 0

    def exists(self, *keys):
        self.asked += 1
        return sum(key in self.revoked for key in keys)


@pytest.fixture()
def guarded():
    """A Flask app verifying with `keys` (kid -> public key, changeable), one view behind access_token_required."""
    import flask

    from reportflow_common.tokens import access_token_required, current_claims, init_jwt, revoked_jti_key

    private = Ed25519PrivateKey.generate()
    keys = {"k1": private.public_key()}
    deny = DenyList()
    app = flask.Flask("guarded")

    def key_for(kid):  # as JwksKeys: an unknown kid is an invalid token
        if kid not in keys:
            raise jwt.InvalidTokenError("unknown kid")
        return keys[kid]

    init_jwt(app, deny, "reportflow", key_for=key_for)

    @app.get("/me")
    @access_token_required
    def me():
        return {"sub": current_claims()["sub"]}

    def token(lifetime: int = 300, **claims) -> dict:
        import time
        import uuid
        now = int(time.time())
        body = {"sub": "u1", "jti": uuid.uuid4().hex, "type": "access", "iat": now, "nbf": now, "exp": now + lifetime,
                "iss": "reportflow", **claims}
        return {"Authorization": "Bearer " + jwt.encode(body, private, algorithm="EdDSA", headers={"kid": "k1"}),
                "jti": body["jti"]}

    def get(headers):
        return app.test_client().get("/me", headers={"Authorization": headers["Authorization"]})

    def revoke(headers):
        deny.revoked.add(revoked_jti_key(headers["jti"]))

    return type("Guarded", (), {"keys": keys, "deny": deny, "token": staticmethod(token), "get": staticmethod(get),
                                "revoke": staticmethod(revoke)})


def test_a_remembered_token_is_refused_once_revoked_the_deny_list_being_asked_every_time(guarded):
    headers = guarded.token()
    for n in range(1, 4):
        r = guarded.get(headers)
        assert r.status_code == 200 and r.get_json() == {"sub": "u1"}
        assert guarded.deny.asked == n
    guarded.revoke(headers)
    r = guarded.get(headers)
    assert r.status_code == 401 and r.get_json()["detail"] == "The token has been revoked."


def test_a_remembered_token_is_verified_again_when_its_key_changes(guarded):
    headers = guarded.token()
    assert guarded.get(headers).status_code == 200
    guarded.keys["k1"] = Ed25519PrivateKey.generate().public_key()  # e.g. the JWKS now says another key
    assert guarded.get(headers).status_code == 401
    del guarded.keys["k1"]  # the key removed from the JWKS
    assert guarded.get(headers).status_code == 401


def test_a_remembered_token_is_refused_once_it_expires(guarded):
    from support.waiting import wait_until
    headers = guarded.token(lifetime=1)
    assert guarded.get(headers).status_code == 200
    wait_until(lambda: guarded.get(headers).status_code == 401, 10, "the remembered token to expire")
    r = guarded.get(headers)
    assert r.status_code == 401 and r.get_json()["detail"] == "The token has expired."


def test_a_refresh_token_is_not_remembered_as_an_access_token(guarded):
    headers = guarded.token(type="refresh")
    assert guarded.get(headers).status_code == 401
    assert guarded.get(headers).status_code == 401
