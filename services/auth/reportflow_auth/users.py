"""User records: the only code that reads or writes the users table."""
from __future__ import annotations

import uuid

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from reportflow_common.contracts import CONFLICT
from reportflow_common.db import User, transaction
from reportflow_common.problems import Problem, invalid

from .passwords import hash_password

EMAIL_MAX, PASSWORD_MIN, PASSWORD_MAX = 254, 8, 128


def normalise_email(value: str) -> str:
    """The account key of an email address: email-validator's normal form (IDNA domain, NFC), lower-cased.

    Raises EmailNotValidError for anything that is not an address (no DNS lookup: registration must not
    depend on the network, and a deliverability check says nothing about who owns the address)."""
    if len(value) > EMAIL_MAX:
        raise EmailNotValidError(f"The email address is longer than {EMAIL_MAX} characters.")
    return validate_email(value.strip(), check_deliverability=False).normalized.lower()


def account_key(value) -> str:
    """What login looks up and throttles by: the normal form when `value` is an address, else the text as
    given (lower-cased), so accounts made before addresses were validated still log in."""
    if not isinstance(value, str):
        return ""
    try:
        return normalise_email(value)
    except EmailNotValidError:
        return value.strip().lower()[:EMAIL_MAX + 1]


def validate_credentials(body: dict) -> tuple[str, str]:
    errors = []
    email, password = body.get("email"), body.get("password")
    if not isinstance(email, str):
        errors.append({"field": "email", "message": "must be an email address"})
    else:
        try:
            email = normalise_email(email)
        except EmailNotValidError as exc:
            errors.append({"field": "email", "message": f"must be an email address: {exc}"})
    if not isinstance(password, str) or not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        errors.append({"field": "password",
                       "message": f"must be a string of {PASSWORD_MIN} to {PASSWORD_MAX} characters"})
    if errors:
        raise invalid(errors)
    return email, password


def create_user(sessions: sessionmaker[Session], email: str, password: str) -> User:
    user = User(id=uuid.uuid4(), email=email, password_hash=hash_password(password))
    try:
        with transaction(sessions) as s:
            s.add(user)
    except IntegrityError as exc:
        raise Problem(409, CONFLICT, "An account with this email already exists.") from exc
    return user


def find_by_email(sessions: sessionmaker[Session], key: str) -> User | None:
    """`key` as `account_key` gives it."""
    if not key or len(key) > EMAIL_MAX:
        return None
    with sessions() as s:
        return s.scalar(select(User).where(User.email == key))


def find_by_id(sessions: sessionmaker[Session], user_id: str) -> User | None:
    try:
        uid = uuid.UUID(str(user_id))
    except ValueError:
        return None
    with sessions() as s:
        return s.get(User, uid)


def user_json(user: User) -> dict:
    return {"id": str(user.id), "email": user.email, "created_at": user.created_at.isoformat()}
