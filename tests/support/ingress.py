"""The ingress stand-in: Debian's nginx as a plain process, configured from the chart's HTTPRoutes or Ingress.

The config comes from deploy/ingress/render.py (paths, backends, affinity cookie, timeouts read from
`helm template`), so what the tests go through is what the chart deploys, on plain nginx instead of a
Gateway API implementation (source "gateway": the HTTPRoutes) or an Ingress controller (source "ingress":
the Ingress objects of ci/ingress-values.yaml, ingress-nginx's annotations). Everything of nginx's lives under
its own prefix directory; it runs on a free port.
"""
from __future__ import annotations

import functools
import importlib.util
import socket
import subprocess
import sys
from pathlib import Path

from .processes import ServerProcess
from .waiting import GiveUp, free_port, wait_until

NGINX = "/usr/sbin/nginx"
ROOT = Path(__file__).resolve().parents[2]
RENDER_PY = ROOT / "deploy" / "ingress" / "render.py"
# The chart's values each source is rendered with: its defaults have the HTTPRoutes; the Ingress is an option.
SOURCE_VALUES = {"gateway": (), "ingress": (ROOT / "charts" / "reportflow" / "ci" / "ingress-values.yaml",)}


def _load_render():
    spec = importlib.util.spec_from_file_location("reportflow_ingress_render", RENDER_PY)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


render = _load_render()


@functools.cache
def chart_routes(source: str = "ingress") -> tuple:
    """The chart's Ingress paths (ci/ingress-values.yaml) or its HTTPRoute rules (default values); helm runs
    once per source and test process."""
    return tuple(render.chart_routes(render.chart_manifests(values_files=SOURCE_VALUES[source]), source))


def stack_upstreams(stack, notifiers=None, reports=None) -> dict[str, list[str]]:
    """Each chart component's servers: the stack's processes (notifiers/reports may be replaced), and
    moto for the in-chart S3 (the storage route serves presigned links on the public origin)."""
    hostport = lambda p: p.url.removeprefix("http://")  # noqa: E731
    return {"auth": [hostport(stack.auth)], "reports": [hostport(reports or stack.reports)],
            "notifier": [hostport(n) for n in (notifiers or stack.notifiers)],
            "s3": [stack.infra.s3.url.removeprefix("http://")]}


class Ingress:
    def __init__(self, workdir: Path, upstreams: dict[str, list[str]], affinity: bool = True,
                 port: int | None = None, source: str = "ingress", routes: tuple | None = None):
        """`routes` (render.chart_routes of a render of one's own) instead of the chart's for `source`."""
        self.port = port or free_port()
        self.upstreams, self.affinity = upstreams, affinity
        self.routes = routes if routes is not None else chart_routes(source)
        self.prefix = workdir / f"ingress-{self.port}"
        self.process: ServerProcess | None = None

    @property
    def url(self) -> str:
        """The base URL, which is also the browser origin of the pages it serves."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.prefix / "nginx.conf"

    def start(self) -> Ingress:
        (self.prefix / "tmp").mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(render.render(list(self.routes), self.upstreams, f"127.0.0.1:{self.port}",
                                                  affinity=self.affinity))
        argv = [NGINX, "-p", str(self.prefix), "-c", "nginx.conf", "-e", "stderr"]
        check = subprocess.run([*argv, "-t"], capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, f"nginx rejects {self.config_path}:\n{check.stderr}"
        self.process = ServerProcess(f"ingress-{self.port}", [*argv, "-g", "daemon off;"], {}, self.prefix.parent)
        self.process.start(ready_path=None)
        try:
            wait_until(self._listening, 10, f"nginx on port {self.port}")
        except BaseException:
            self.stop()
            raise
        return self

    def _listening(self) -> bool:
        if not self.process.alive():
            raise GiveUp(f"nginx exited:\n{self.process.tail()}")
        with socket.create_connection(("127.0.0.1", self.port), timeout=1):
            return True

    def access_log(self) -> list[str]:
        """One line per request: method, URI, status, upstream=<server>, cookie="<Cookie header>"."""
        path = self.prefix / "access.log"
        return path.read_text().splitlines() if path.exists() else []

    def stop(self) -> None:
        if self.process:
            self.process.stop()
