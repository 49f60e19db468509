from __future__ import annotations

import pytest

from support.clients import Api
from support.ingress import Ingress, stack_upstreams
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


@pytest.fixture(scope="session")
def start_ingress(stack):
    """Start an ingress stand-in: start_ingress(upstreams=None, affinity=True, port=None) -> Ingress;
    upstreams default to the stack's (its two notifiers). Each is stopped at the end of the session."""
    started: list[Ingress] = []

    def start(upstreams: dict | None = None, affinity: bool = True, port: int | None = None) -> Ingress:
        ingress = Ingress(stack.infra.workdir, upstreams or stack_upstreams(stack), affinity, port)
        started.append(ingress)
        return ingress.start()

    try:
        yield start
    finally:
        for ingress in reversed(started):
            ingress.stop()


@pytest.fixture(scope="session")
def ingress(start_ingress):
    """The stack behind the chart's ingress rules (sticky, two notifiers); ingress.url is the base URL."""
    return start_ingress()
