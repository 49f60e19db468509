"""Access-token verification shared by every service, on top of flask-jwt-extended.

Only EdDSA is accepted; the key is chosen by the token's `kid` from auth's JWKS (fetched and cached),
so no shared secret exists. Revocation is a Redis deny-list of token ids (`jti`) and of whole logins
(`sid`, shared by the access and refresh tokens of one login), each kept until the token would expire.
Each revocation is also announced on REVOCATIONS_CHANNEL, in the same Redis transaction, so that every
notifier process ends the open sockets of that login at once (docs/events.md).
"""
from __future__ import annotations

import base64
import functools
import hashlib
import json
import threading
import time
from collections import OrderedDict

import jwt
from flask import Flask, current_app, g, request
from flask_jwt_extended import JWTManager, get_jwt, get_jwt_header, verify_jwt_in_request
from flask_jwt_extended import exceptions as jwt_ext_errors
from jwt import exceptions as jwt_errors
from redis import Redis

from .contracts import REVOCATIONS_CHANNEL
from .problems import Problem, problem_response, unauthorized, unavailable

ALGORITHM = "EdDSA"
REQUIRED_CLAIMS = ("exp", "iat", "jti", "type", "sub", "iss")
TOKEN_TYPES = ("access", "refresh")


def revoked_jti_key(jti: str) -> str:
    return f"auth:revoked:jti:{jti}"


def revoked_sid_key(sid: str) -> str:
    return f"auth:revoked:sid:{sid}"


def revoke(redis: Redis, claims: dict, reason: str, *, login_ttl: int | None = None) -> None:
    """Deny-list a token until it would expire anyway; with `login_ttl`, every token of its login too.
    `reason` (a SESSION_END_REASONS value) is what the sockets of that login are told."""
    ttl = max(1, int(claims["exp"] - time.time()) + 1)
    whole_login = bool(login_ttl and claims.get("sid"))
    pipe = redis.pipeline()
    pipe.set(revoked_jti_key(claims["jti"]), 1, ex=ttl)
    if whole_login:
        pipe.set(revoked_sid_key(claims["sid"]), 1, ex=login_ttl)
    pipe.publish(REVOCATIONS_CHANNEL, json.dumps({"login": claims["sid"] if whole_login else None,
                                                  "jti": claims["jti"], "reason": reason}))
    pipe.execute()


def read_revocation(raw) -> tuple[str | None, str | None, str] | None:
    """(login, jti, reason) of a REVOCATIONS_CHANNEL message; None for anything else."""
    try:
        message = json.loads(raw)
    except (TypeError, ValueError):
        return None
    if not isinstance(message, dict) or not isinstance(message.get("reason"), str):
        return None
    login, jti = message.get("login"), message.get("jti")
    return (login if isinstance(login, str) else None, jti if isinstance(jti, str) else None, message["reason"])


def is_revoked(redis: Redis, claims: dict) -> bool:
    keys = [revoked_jti_key(claims.get("jti", ""))]
    if claims.get("sid"):
        keys.append(revoked_sid_key(claims["sid"]))
    return redis.exists(*keys) > 0


def public_jwk(public_key) -> dict:
    """The JWK of an Ed25519 public key, with its RFC 7638 thumbprint as `kid`."""
    jwk = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(public_key))
    canonical = json.dumps({k: jwk[k] for k in ("crv", "kty", "x")}, separators=(",", ":"), sort_keys=True)
    kid = base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()
    return {**jwk, "kid": kid, "use": "sig", "alg": ALGORITHM}


class JwksKeys:
    """Public keys by `kid`, fetched from auth's JWKS and refreshed when an unknown `kid` shows up."""

    def __init__(self, url: str, *, lifespan: int = 300):
        self._client = jwt.PyJWKClient(url, cache_keys=True, lifespan=lifespan, timeout=5)

    def fetch(self) -> None:
        """Fetch the key set now (a process warming up), not on the first token; raises when auth is unreachable."""
        self._client.get_jwk_set(refresh=True)

    def key_for(self, kid: str | None):
        if not kid:
            raise jwt_errors.InvalidTokenError("token has no kid")
        try:
            return self._client.get_signing_key(kid).key
        except jwt.PyJWKClientConnectionError as exc:
            raise unavailable("Token keys cannot be fetched right now.") from exc
        except jwt.PyJWKClientError as exc:
            raise jwt_errors.InvalidTokenError(str(exc)) from exc


def check_claims_present(claims: dict) -> None:
    """Every token carries each of REQUIRED_CLAIMS, `type` one of TOKEN_TYPES and `jti` a non-empty string;
    raise MissingRequiredClaimError / InvalidTokenError otherwise (both are 401 to the client).

    flask-jwt-extended fills a missing `type` with "access" and a missing `jti` with None after decoding,
    and PyJWT checks `exp` and `iat` only when present, so presence is checked on the claims as signed."""
    for claim in REQUIRED_CLAIMS:
        if claim not in claims:
            raise jwt_errors.MissingRequiredClaimError(claim)
    if claims["type"] not in TOKEN_TYPES:
        raise jwt_errors.InvalidTokenError("unknown token type")
    if not isinstance(claims["jti"], str) or not claims["jti"]:
        raise jwt_errors.InvalidTokenError("jti must be a non-empty string")


def init_jwt(app: Flask, redis: Redis, issuer: str, *, key_for=None, private_key_pem: str | None = None,
             public_key=None) -> JWTManager:
    """Configure flask-jwt-extended on `app` for EdDSA tokens, the deny-list and problem+json errors.

    Auth passes its own key pair; verifying services pass `key_for` (a JwksKeys lookup by kid). The key
    loader is flask-jwt-extended's one hook that sees the claims as they were signed (before it fills in
    defaults), so it is also where `check_claims_present` runs; the signature is verified right after.
    """
    app.config.update(
        JWT_ALGORITHM=ALGORITHM, JWT_DECODE_ALGORITHMS=[ALGORITHM], JWT_TOKEN_LOCATION=["headers"],
        JWT_ENCODE_ISSUER=issuer, JWT_DECODE_ISSUER=issuer, JWT_ERROR_MESSAGE_KEY="detail",
        JWT_PRIVATE_KEY=private_key_pem or "unused-by-verifiers", JWT_PUBLIC_KEY=public_key or "unused",
        JWT_ACCESS_TOKEN_EXPIRES=False, JWT_REFRESH_TOKEN_EXPIRES=False,  # set per token by auth
    )
    manager = JWTManager(app)

    def key_of(kid: str | None):
        return key_for(kid) if key_for is not None else app.config["JWT_PUBLIC_KEY"]

    @manager.decode_key_loader
    def _verification_key(header: dict, unverified_claims: dict):
        check_claims_present(unverified_claims)
        g.reportflow_token_key = key = key_of(header.get("kid"))  # what VerifiedTokens remembers
        return key

    manager.token_in_blocklist_loader(lambda _header, payload: is_revoked(redis, payload))
    app.extensions["reportflow_tokens"] = VerifiedTokens(redis, key_of)
    _problem_errors(app)
    return manager


class VerifiedTokens:
    """The access tokens this process has verified, by their whole Authorization header, until they expire
    (at most `maxsize`, the least recently used dropped): decoding and checking an EdDSA token through
    flask-jwt-extended costs more than the rest of a small request. A token found here is still refused once
    it expires, once its key is no longer the one it was verified with (a key removed from the JWKS, or the
    JWKS refetched: then it is verified again in full), and once it is revoked: the deny-list is asked on
    every request, so a logout still works at once. Used by `access_token_required`."""

    def __init__(self, redis: Redis, key_of, maxsize: int = 4096):
        self.redis, self.key_of, self.maxsize = redis, key_of, maxsize
        self._entries: OrderedDict[str, tuple[dict, str | None, object]] = OrderedDict()  # claims, kid, key
        self._lock = threading.Lock()

    def _known(self, header: str) -> dict | None:
        with self._lock:
            entry = self._entries.get(header)
            if entry is not None:
                self._entries.move_to_end(header)
        if entry is None:
            return None
        claims, kid, key = entry
        try:
            current_key = self.key_of(kid)
        except Exception:  # noqa: BLE001 - the key cannot be had now: the full verification says why
            current_key = None
        if claims["exp"] <= time.time() or current_key is not key:
            with self._lock:
                self._entries.pop(header, None)
            return None
        return claims

    def _remember(self, header: str, claims: dict, kid: str | None, key) -> None:
        with self._lock:
            self._entries[header] = (claims, kid, key)
            self._entries.move_to_end(header)
            while len(self._entries) > self.maxsize:
                self._entries.popitem(last=False)

    def verify_request(self) -> dict:
        """The claims of the request's valid, unrevoked access token; raises what flask-jwt-extended raises
        (401 problems through the app's handlers) otherwise."""
        header = request.headers.get("Authorization")
        claims = self._known(header) if header else None
        if claims is None:
            g.pop("reportflow_token_key", None)
            verify_jwt_in_request()  # signature, issuer, claims, type "access", deny-list
            claims = get_jwt()
            key = g.pop("reportflow_token_key", None)
            if key is not None and isinstance(claims.get("exp"), int | float):
                self._remember(header, claims, get_jwt_header().get("kid"), key)
        elif is_revoked(self.redis, claims):
            raise jwt_ext_errors.RevokedTokenError({}, claims)
        return claims


def access_token_required(view):
    """Like flask-jwt-extended's `jwt_required()`, with already verified tokens remembered (`VerifiedTokens`);
    the view reads the claims with `current_claims()`."""
    @functools.wraps(view)
    def checked(*args, **kwargs):
        g.reportflow_claims = current_app.extensions["reportflow_tokens"].verify_request()
        return view(*args, **kwargs)
    return checked


def current_claims() -> dict:
    """The claims of the access token `access_token_required` accepted for this request."""
    return g.reportflow_claims


def verify_access_token(redis: Redis, token: str | None) -> dict:
    """Claims of a valid, unrevoked access token, for callers outside a view (the Socket.IO connect handler).

    Needs an app context of an app set up with `init_jwt`; raises Problem(401) on any defect.
    """
    from flask_jwt_extended import decode_token
    if not token or not isinstance(token, str):
        raise unauthorized()
    try:
        claims = decode_token(token)
    except Problem:
        raise
    except (jwt_errors.PyJWTError, jwt_ext_errors.JWTExtendedException) as exc:
        raise unauthorized() from exc
    if claims.get("type") != "access" or not claims.get("sub") or is_revoked(redis, claims):
        raise unauthorized()
    return claims


def _problem_errors(app: Flask) -> None:
    """Replace flask-jwt-extended's JSON errors with the contract's 401 problem."""
    def handler(exc):
        if isinstance(exc, Problem):
            return problem_response(exc)
        message = "The token has expired." if isinstance(exc, jwt_errors.ExpiredSignatureError) else \
            "The token has been revoked." if isinstance(exc, jwt_ext_errors.RevokedTokenError) else \
            "A valid access token is required."
        return problem_response(unauthorized(message))

    for exc_type in (jwt_ext_errors.JWTExtendedException, jwt_errors.PyJWTError,
                     jwt_ext_errors.NoAuthorizationError, jwt_ext_errors.RevokedTokenError,
                     jwt_ext_errors.WrongTokenError, jwt_ext_errors.CSRFError, jwt_ext_errors.FreshTokenRequired,
                     jwt_ext_errors.InvalidHeaderError, jwt_ext_errors.InvalidQueryParamError,
                     jwt_ext_errors.JWTDecodeError, jwt_ext_errors.UserClaimsVerificationError,
                     jwt_ext_errors.UserLookupError, jwt_errors.DecodeError, jwt_errors.ExpiredSignatureError,
                     jwt_errors.InvalidTokenError, jwt_errors.MissingRequiredClaimError,
                     # flask-jwt-extended has its own (422) handlers for these two; ours must win
                     jwt_errors.InvalidIssuerError, jwt_errors.InvalidAudienceError):
        app.register_error_handler(exc_type, handler)
