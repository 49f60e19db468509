"""What the integration tests check on every response, and the clients and tokens they use to do it.

`RequestIdClient` is the Flask test client with one addition: every request carries a fresh X-Request-ID
and every response must echo it, so each test also checks that part of the contract.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flask.testing import FlaskClient

PROBLEM_JSON = "application/problem+json"
PASSWORD = "correct horse battery staple"


class RequestIdClient(FlaskClient):
    def open(self, *args, headers=None, **kwargs):
        if args and not isinstance(args[0], str):  # a prepared request (a redirect being followed)
            return super().open(*args, headers=headers, **kwargs) if headers else super().open(*args, **kwargs)
        headers = dict(headers or {})
        chosen_by_test = "X-Request-ID" in headers
        request_id = headers.setdefault("X-Request-ID", f"it-{uuid.uuid4().hex}")
        resp = super().open(*args, headers=headers, **kwargs)
        if not chosen_by_test:
            assert resp.headers.get("X-Request-ID") == request_id, "X-Request-ID not echoed"
        return resp


def test_client(app) -> RequestIdClient:
    app.test_client_class = RequestIdClient
    return app.test_client()


test_client.__test__ = False  # not a test, despite its name


def assert_problem(resp, status: int, code: str, *fields: str) -> dict:
    """The contract's error shape; `fields` must all be named in `errors`. Returns the body."""
    assert resp.status_code == status, (resp.status_code, resp.get_data(as_text=True))
    assert resp.mimetype == PROBLEM_JSON, resp.headers.get("Content-Type")
    body = json.loads(resp.get_data())
    assert body["status"] == status and body["code"] == code, body
    assert isinstance(body["title"], str) and isinstance(body["detail"], str) and body["type"], body
    assert "Traceback" not in resp.get_data(as_text=True)
    if fields:
        named = {e["field"] for e in body["errors"]}
        assert set(fields) <= named, (fields, body["errors"])
        assert all(isinstance(e["message"], str) and e["message"] for e in body["errors"])
    if status in (429, 503):
        assert int(resp.headers["Retry-After"]) >= 1
    return body


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def fresh_email(tag: str = "user") -> str:
    return f"{tag}-{uuid.uuid4().hex[:12]}@example.com"


@dataclass
class Account:
    id: str
    email: str
    password: str
    tokens: dict

    @property
    def access(self) -> str:
        return self.tokens["access_token"]

    @property
    def refresh(self) -> str:
        return self.tokens["refresh_token"]

    @property
    def headers(self) -> dict:
        return bearer(self.access)


class Accounts:
    """Fresh users registered and logged in through an auth app's test client."""

    def __init__(self, client: FlaskClient):
        self.client = client

    def register(self, email: str | None = None, password: str = PASSWORD) -> dict:
        r = self.client.post("/v1/auth/register", json={"email": email or fresh_email(), "password": password})
        assert r.status_code == 201, r.get_data(as_text=True)
        return r.get_json()

    def login(self, email: str, password: str = PASSWORD) -> dict:
        r = self.client.post("/v1/auth/login", json={"email": email, "password": password})
        assert r.status_code == 200, r.get_data(as_text=True)
        return r.get_json()

    def new(self) -> Account:
        user = self.register()
        return Account(user["id"], user["email"], PASSWORD, self.login(user["email"]))


# Tokens made by the tests themselves, to show exactly which defect makes a verifier refuse one.

def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def access_claims(user_id: str, *, lifetime: int = 300, **overrides) -> dict:
    now = int(time.time())
    claims = {"sub": user_id, "jti": uuid.uuid4().hex, "type": "access", "iat": now, "nbf": now,
              "exp": now + lifetime, "iss": "reportflow"}
    claims.update(overrides)
    return claims


def sign_eddsa(private_key, kid: str, claims: dict) -> str:
    """`private_key`: a PEM string or an Ed25519PrivateKey."""
    return jwt.encode(claims, private_key, algorithm="EdDSA", headers={"kid": kid})


def hand_made(header: dict, claims: dict, sign) -> str:
    """A JWT built without PyJWT (which refuses unsafe combinations); `sign(signing_input) -> bytes`."""
    signing_input = ".".join(b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims))
    return signing_input + "." + b64url(sign(signing_input.encode()))


def unsigned(kid: str, claims: dict) -> str:
    return hand_made({"alg": "none", "typ": "JWT", "kid": kid}, claims, lambda _data: b"")


def hs256_with_public_key(private_pem: str, kid: str, claims: dict) -> str:
    """The classic algorithm-confusion forgery: HMAC keyed with the verifier's public key PEM."""
    private = serialization.load_pem_private_key(private_pem.encode(), password=None)
    public_pem = private.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)
    return hand_made({"alg": "HS256", "typ": "JWT", "kid": kid}, claims,
                     lambda data: hmac.new(public_pem, data, hashlib.sha256).digest())


def unverified_parts(token: str) -> tuple[dict, dict]:
    return jwt.get_unverified_header(token), jwt.decode(token, options={"verify_signature": False})


def closed_port_url(scheme: str) -> str:
    """An address on this machine where nothing listens."""
    from support.waiting import free_port
    return f"{scheme}://127.0.0.1:{free_port()}"


def bad_token(defect: str, private_pem: str, kid: str, user_id: str) -> str:
    """A token for `user_id` that is fine except for `defect`."""
    claims = access_claims(user_id)

    def signed(c: dict) -> str:
        return sign_eddsa(private_pem, kid, c)
    if defect == "expired":
        return signed({**claims, "iat": claims["iat"] - 600, "nbf": claims["iat"] - 600, "exp": claims["iat"] - 120})
    if defect == "not yet valid":
        return signed({**claims, "nbf": claims["iat"] + 600, "exp": claims["iat"] + 900})
    if defect == "refresh type":
        return signed({**claims, "type": "refresh"})
    if defect == "alg none":
        return unsigned(kid, claims)
    if defect == "HS256 keyed with the public key":
        return hs256_with_public_key(private_pem, kid, claims)
    if defect == "foreign key, same kid":
        return sign_eddsa(Ed25519PrivateKey.generate(), kid, claims)
    if defect == "unknown kid":
        return sign_eddsa(private_pem, "no-such-kid", claims)
    if defect == "no kid":
        return jwt.encode(claims, private_pem, algorithm="EdDSA")
    if defect == "wrong issuer":
        return signed({**claims, "iss": "someone-else"})
    if defect == "no issuer":
        return signed({k: v for k, v in claims.items() if k != "iss"})
    if defect == "tampered claims":
        header, _payload, signature = signed(claims).split(".")
        other = b64url(json.dumps({**claims, "sub": str(uuid.uuid4())}).encode())
        return ".".join((header, other, signature))
    if defect == "garbage":
        return "this.is.not-a-jwt"
    if defect.startswith("no ") and defect[3:] in MISSING_CLAIMS:  # genuinely signed, one claim left out
        return signed({k: v for k, v in claims.items() if k != defect[3:]})
    if defect == "empty jti":
        return signed({**claims, "jti": ""})
    if defect == "unknown type":
        return signed({**claims, "type": "admin"})
    raise AssertionError(defect)


MISSING_CLAIMS = ("exp", "iat", "jti", "type", "sub")  # "no issuer" is the iss case


DEFECTS = ["expired", "not yet valid", "refresh type", "alg none", "HS256 keyed with the public key",
           "foreign key, same kid", "unknown kid", "no kid", "wrong issuer", "no issuer", "tampered claims", "garbage",
           *(f"no {claim}" for claim in MISSING_CLAIMS), "empty jti", "unknown type"]
