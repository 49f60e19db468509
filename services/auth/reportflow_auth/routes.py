"""The /v1/auth endpoints of the contract and the JWKS document."""
from __future__ import annotations

import hashlib
import uuid
from datetime import timedelta

from flask import Blueprint, current_app, jsonify, request
from flask_jwt_extended import create_access_token, create_refresh_token, get_jwt, jwt_required

from reportflow_common.contracts import LOGGED_OUT, REVOKED
from reportflow_common.logs import user_id_var
from reportflow_common.problems import not_found, unauthorized
from reportflow_common.ratelimit import per_minute
from reportflow_common.tokens import revoke
from reportflow_common.web import json_body

from . import users
from .passwords import verify_password

bp = Blueprint("auth", __name__)


def _ctx():
    return current_app.extensions["reportflow"]


def issue_tokens(user_id: str, sid: str) -> dict:
    """A fresh access/refresh pair for one login (`sid`), signed with the current key."""
    ctx = _ctx()
    headers, claims = {"kid": ctx.key.kid}, {"sid": sid}
    access = create_access_token(str(user_id), additional_claims=claims, additional_headers=headers,
                                 expires_delta=timedelta(seconds=ctx.settings.access_token_ttl_seconds))
    refresh = create_refresh_token(str(user_id), additional_claims=claims, additional_headers=headers,
                                   expires_delta=timedelta(seconds=ctx.settings.refresh_token_ttl_seconds))
    ctx.metrics.tokens_issued.inc()
    return {"access_token": access, "refresh_token": refresh, "token_type": "Bearer",
            "expires_in": ctx.settings.access_token_ttl_seconds}


@bp.post("/v1/auth/register")
def register():
    if not _ctx().settings.allow_registration:
        raise not_found("Registration is switched off.")
    email, password = users.validate_credentials(json_body())
    user = users.create_user(_ctx().sessions, email, password)
    return jsonify(users.user_json(user)), 201


@bp.post("/v1/auth/login")
def login():
    """Throttled twice before any password is checked: per client address (whatever the emails, against
    password spraying) and per account (whatever the address, against guessing one password)."""
    ctx = _ctx()
    body = json_body()
    key = users.account_key(body.get("email"))
    password = body.get("password") if isinstance(body.get("password"), str) else ""
    ctx.throttle.hit(per_minute(ctx.settings.login_attempts_per_address_per_minute), "login-address",
                     request.remote_addr or "unknown", detail="Too many logins from this address; try again later.")
    ctx.throttle.hit(per_minute(ctx.settings.login_attempts_per_minute), "login-account",
                     hashlib.sha256(key.encode()).hexdigest()[:32],
                     detail="Too many logins to this account; try again later.")
    user = users.find_by_email(ctx.sessions, key)
    if not verify_password(user.password_hash if user else None, password[:users.PASSWORD_MAX]):
        ctx.metrics.logins.labels("failure").inc()
        raise unauthorized("Invalid email or password.")
    ctx.metrics.logins.labels("success").inc()
    user_id_var.set(str(user.id))
    return jsonify(issue_tokens(str(user.id), uuid.uuid4().hex))


@bp.post("/v1/auth/refresh")
@jwt_required(refresh=True)
def refresh():
    """Rotate: the presented refresh token works once; presenting it again ends the whole login."""
    ctx, claims = _ctx(), get_jwt()
    ttl = ctx.settings.refresh_token_ttl_seconds
    first_use = ctx.redis.set(f"auth:refresh-used:{claims['jti']}", 1, nx=True, ex=ttl)
    if not first_use:
        revoke(ctx.redis, claims, REVOKED, login_ttl=ttl)
        ctx.metrics.tokens_revoked.labels("refresh_reuse").inc()
        raise unauthorized("This refresh token was already used; the login has been revoked.")
    if users.find_by_id(ctx.sessions, claims["sub"]) is None:
        raise unauthorized()
    ctx.metrics.tokens_refreshed.inc()
    return jsonify(issue_tokens(claims["sub"], claims.get("sid") or uuid.uuid4().hex))


@bp.post("/v1/auth/logout")
@jwt_required()
def logout():
    ctx = _ctx()
    revoke(ctx.redis, get_jwt(), LOGGED_OUT, login_ttl=ctx.settings.refresh_token_ttl_seconds)
    ctx.metrics.tokens_revoked.labels("logout").inc()
    return "", 204


@bp.get("/v1/auth/me")
@jwt_required()
def me():
    user = users.find_by_id(_ctx().sessions, get_jwt()["sub"])
    if user is None:
        raise unauthorized()
    return jsonify(users.user_json(user))


@bp.get("/.well-known/jwks.json")
def jwks():
    resp = jsonify(_ctx().key.jwks())
    resp.headers["Cache-Control"] = "public, max-age=300"
    return resp
