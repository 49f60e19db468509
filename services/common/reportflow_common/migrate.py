"""`reportflow-migrate`: bring the database schema to the newest revision (a Helm hook Job, `make up`)."""
from __future__ import annotations

import logging
import os
from datetime import timedelta

from alembic import command
from alembic.config import Config

from .logs import configure_logging
from .settings import MIGRATE, load_settings

HERE = os.path.dirname(__file__)


def alembic_config(database_url: str, report_retention: timedelta | None = None) -> Config:
    """`report_retention` dates the reports that ended before retention existed (revision 0003); None: its
    default."""
    from .db import sqlalchemy_url
    cfg = Config()
    cfg.set_main_option("script_location", os.path.join(HERE, "migrations"))
    cfg.attributes["database_url"] = sqlalchemy_url(database_url)
    if report_retention is not None:
        cfg.attributes["report_retention"] = report_retention
    return cfg


def upgrade(database_url: str, revision: str = "head", report_retention: timedelta | None = None) -> None:
    command.upgrade(alembic_config(database_url, report_retention), revision)


def downgrade(database_url: str, revision: str) -> None:
    command.downgrade(alembic_config(database_url), revision)


def main() -> None:
    settings = load_settings(MIGRATE)
    configure_logging("migrate", settings.log_level)
    upgrade(settings.database_url, report_retention=settings.report_retention)
    logging.getLogger(__name__).info("schema is up to date")
