"""`reportflow-migrate`: bring the database schema to the newest revision (a Helm hook Job, `make up`)."""
from __future__ import annotations

import logging
import os

from alembic import command
from alembic.config import Config

from .logs import configure_logging
from .settings import MIGRATE, load_settings

HERE = os.path.dirname(__file__)


def alembic_config(database_url: str) -> Config:
    from .db import sqlalchemy_url
    cfg = Config()
    cfg.set_main_option("script_location", os.path.join(HERE, "migrations"))
    cfg.attributes["database_url"] = sqlalchemy_url(database_url)
    return cfg


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


def main() -> None:
    settings = load_settings(MIGRATE)
    configure_logging("migrate", settings.log_level)
    upgrade(settings.database_url)
    logging.getLogger(__name__).info("schema is up to date")
