"""User records: the only code that reads or writes the users table."""
from __future__ import annotations

import re
import uuid

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from reportflow_common.contracts import CONFLICT
from reportflow_common.db import User, transaction
from reportflow_common.problems import Problem, invalid

from .passwords import hash_password

_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
PASSWORD_MIN, PASSWORD_MAX = 8, 128


def validate_credentials(body: dict) -> tuple[str, str]:
    errors = []
    email, password = body.get("email"), body.get("password")
    if not isinstance(email, str) or len(email) > 254 or not _EMAIL.match(email):
        errors.append({"field": "email", "message": "must be an email address"})
    if not isinstance(password, str) or not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        errors.append({"field": "password",
                       "message": f"must be a string of {PASSWORD_MIN} to {PASSWORD_MAX} characters"})
    if errors:
        raise invalid(errors)
    return email.strip().lower(), password


def create_user(sessions: sessionmaker[Session], email: str, password: str) -> User:
    user = User(id=uuid.uuid4(), email=email, password_hash=hash_password(password))
    try:
        with transaction(sessions) as s:
            s.add(user)
    except IntegrityError as exc:
        raise Problem(409, CONFLICT, "An account with this email already exists.") from exc
    return user


def find_by_email(sessions: sessionmaker[Session], email: str) -> User | None:
    with sessions() as s:
        return s.scalar(select(User).where(User.email == email.strip().lower()))


def find_by_id(sessions: sessionmaker[Session], user_id: str) -> User | None:
    try:
        uid = uuid.UUID(str(user_id))
    except ValueError:
        return None
    with sessions() as s:
        return s.get(User, uid)


def user_json(user: User) -> dict:
    return {"id": str(user.id), "email": user.email, "created_at": user.created_at.isoformat()}
