"""Session-wide real servers: PostgreSQL (fresh database), a private Redis, and an S3 server."""
from __future__ import annotations

import pytest

from support.infra import Postgres, RedisServer, S3Server
from support.stack import Infra, generate_private_key_pem


@pytest.fixture(scope="session")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("servers")


@pytest.fixture(scope="session")
def infra(workdir):
    postgres = Postgres(workdir).start()
    redis = s3 = None
    try:
        postgres.migrate()
        redis = RedisServer(workdir).start()
        s3 = S3Server(workdir).start()
        yield Infra(postgres, redis, s3, generate_private_key_pem(), workdir)
    finally:
        for server in (s3, redis, postgres):
            if server is not None:
                server.stop()
