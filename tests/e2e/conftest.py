from __future__ import annotations

import pytest

from support.clients import Api
from support.stack import start_stack


@pytest.fixture(scope="session")
def stack(infra):
    s = start_stack(infra)
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture()
def api(stack):
    return Api(stack.auth_url, stack.reports_url)
