"""nginx config for a stand-in of the chart's ingress, derived from the chart itself so the two cannot drift.

`helm template charts/reportflow` gives the Ingress objects; each path of theirs becomes nginx locations
with ingress-nginx's Prefix semantics, proxied to the Service's component (its app.kubernetes.io/component
label), with the object's annotations applied: cookie affinity (hash on the cookie, set it when absent),
proxy timeouts, body size. An annotation this file does not know fails the render instead of being
ignored. Usage: render.py --listen 127.0.0.1:8080 --upstream auth=127.0.0.1:8001 --upstream notifier=A,B
"""
from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "reportflow"
TEMPLATE = Path(__file__).with_name("nginx.conf.tmpl")
COMPONENT = "app.kubernetes.io/component"
NGINX = "nginx.ingress.kubernetes.io/"
KNOWN = {"affinity", "affinity-mode", "session-cookie-name", "session-cookie-path", "session-cookie-samesite",
         "session-cookie-max-age", "proxy-read-timeout", "proxy-send-timeout", "proxy-connect-timeout",
         "proxy-body-size"}
NOT_FOUND = ('{"type": "about:blank", "title": "Not Found", "status": 404, "detail": "No such resource.", '
             '"code": "not_found"}')


@dataclass(frozen=True)
class Route:
    ingress: str    # the Ingress object's name
    path: str
    path_type: str  # Prefix, Exact or ImplementationSpecific
    component: str  # of the backend Service
    annotations: tuple[tuple[str, str], ...]  # the object's nginx.ingress.kubernetes.io/* (prefix removed)

    def annotation(self, name: str, default: str | None = None) -> str | None:
        return dict(self.annotations).get(name, default)

    @property
    def cookie(self) -> str | None:
        """The affinity cookie's name, or None without cookie affinity (ingress-nginx's default name)."""
        return self.annotation("session-cookie-name", "INGRESSCOOKIE") if self.annotation("affinity") == "cookie" \
            else None


def helm_binary() -> str:
    found = shutil.which("helm") or str(ROOT / ".tools" / "bin" / "helm")
    if not Path(found).exists():
        raise RuntimeError("helm not found (on PATH or in .tools/bin)")
    return found


def chart_manifests(chart: Path = CHART, values: tuple[str, ...] = ()) -> list[dict]:
    """The chart rendered with its defaults (plus `--set` values)."""
    argv = [helm_binary(), "template", "rf", str(chart), *[a for v in values for a in ("--set", v)]]
    out = subprocess.run(argv, check=True, capture_output=True, text=True, timeout=60).stdout
    return [d for d in yaml.safe_load_all(out) if isinstance(d, dict)]


def chart_routes(manifests: list[dict]) -> list[Route]:
    services = {d["metadata"]["name"]: d for d in manifests if d.get("kind") == "Service"}
    routes = []
    for ing in (d for d in manifests if d.get("kind") == "Ingress"):
        name = ing["metadata"]["name"]
        notes = ing["metadata"].get("annotations") or {}
        unknown = sorted(k for k in notes if k.startswith(NGINX) and k[len(NGINX):] not in KNOWN)
        if unknown:
            raise ValueError(f"Ingress {name}: the stand-in does not emulate {unknown}; add them to render.py")
        own = tuple(sorted((k[len(NGINX):], str(v)) for k, v in notes.items() if k.startswith(NGINX)))
        for rule in ing["spec"]["rules"]:
            for p in rule["http"]["paths"]:
                backend = p["backend"]["service"]
                service = services[backend["name"]]
                ports = {port.get("name") for port in service["spec"]["ports"]} | \
                        {port["port"] for port in service["spec"]["ports"]}
                if backend["port"].get("name", backend["port"].get("number")) not in ports:
                    raise ValueError(f"Ingress {name}: Service {backend['name']} has no port {backend['port']}")
                routes.append(Route(name, p["path"], p["pathType"], service["metadata"]["labels"][COMPONENT], own))
    return routes


def _ident(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", text)


def nginx_locations(route: Route) -> list[str]:
    """ingress-nginx's matching: Prefix /a matches /a and /a/..., not /ab (trailing slashes ignored)."""
    path = route.path.rstrip("/") or "/"
    if route.path_type == "Exact":
        return [f"= {route.path}"]
    if route.path_type == "Prefix" and path != "/":
        return [f"= {path}", f"{path}/"]
    return [path]


def render(routes: list[Route], upstreams: dict[str, list[str]], listen: str, affinity: bool = True) -> str:
    """nginx.conf for `routes`; `upstreams` maps each component to its servers (host:port);
    affinity=False drops cookie affinity (plain round-robin), to show what it is needed for."""
    missing = sorted({r.component for r in routes} - set(upstreams))
    if missing:
        raise ValueError(f"no upstream servers given for {missing}")
    maps, pools, locations, cookies = [], {}, [], {}
    for route in routes:
        cookie = route.cookie if affinity else None
        pool = route.component + (f"_by_{_ident(cookie)}" if cookie else "")
        if pool not in pools:
            balance = [f"hash $affinity_key_{_ident(cookie)} consistent;"] if cookie else []
            pools[pool] = balance + [f"server {s};" for s in upstreams[route.component]]
        body = [f"proxy_pass http://{pool};"]
        for note, directive in (("proxy-read-timeout", "proxy_read_timeout"),
                                ("proxy-send-timeout", "proxy_send_timeout"),
                                ("proxy-connect-timeout", "proxy_connect_timeout")):
            if route.annotation(note):
                body.append(f"{directive} {route.annotation(note)}s;")
        if route.annotation("proxy-body-size"):
            body.append(f"client_max_body_size {route.annotation('proxy-body-size')};")
        if cookie:
            attrs = [f"Path={route.annotation('session-cookie-path', route.path)}"]
            if route.annotation("session-cookie-max-age"):
                attrs.append(f"Max-Age={route.annotation('session-cookie-max-age')}")
            if route.annotation("session-cookie-samesite"):
                attrs.append(f"SameSite={route.annotation('session-cookie-samesite')}")
            value = "; ".join([f"{cookie}=$request_id", *attrs, "HttpOnly"])
            var = cookies.setdefault(value, f"$affinity_set_{_ident(cookie)}_{len(cookies)}")
            body.append(f"add_header Set-Cookie {var} always;  # empty (not sent) when the client has one")
        for loc in nginx_locations(route):
            locations.append(f"        location {loc} {{  # {route.ingress}: {route.path} ({route.path_type})\n"
                             + "".join(f"            {line}\n" for line in body) + "        }")
    for cookie in sorted({r.cookie for r in routes if r.cookie and affinity}):
        v = _ident(cookie)
        maps.append(f"    map $cookie_{v} $affinity_key_{v} {{\n        \"\" $request_id;\n"
                    f"        default $cookie_{v};\n    }}")
    for value, var in cookies.items():
        v = _ident(value.split("=", 1)[0])
        maps.append(f"    map $cookie_{v} {var} {{\n        \"\" \"{value}\";\n        default \"\";\n    }}")
    if not any(loc == "/" for r in routes for loc in nginx_locations(r)):
        locations.append("        location / {  # no Ingress path matches: ingress-nginx's default backend\n"
                         "            default_type application/problem+json;\n"
                         f"            return 404 '{NOT_FOUND}';\n        }}")
    upstream_text = "\n".join(f"    upstream {name} {{\n" + "".join(f"        {line}\n" for line in lines) + "    }"
                              for name, lines in pools.items())
    return (TEMPLATE.read_text().replace("@@MAPS@@", "\n".join(maps) or "    # (no affinity)")
            .replace("@@UPSTREAMS@@", upstream_text).replace("@@LISTEN@@", listen)
            .replace("@@LOCATIONS@@", "\n".join(locations)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:8080")
    parser.add_argument("--upstream", action="append", default=[], metavar="COMPONENT=HOST:PORT[,HOST:PORT]")
    parser.add_argument("--set", action="append", default=[], dest="values", help="a chart value, as helm --set")
    parser.add_argument("--no-affinity", action="store_true", help="round-robin, no cookie")
    args = parser.parse_args()
    upstreams = {c: s.split(",") for c, s in (u.split("=", 1) for u in args.upstream)}
    sys.stdout.write(render(chart_routes(chart_manifests(values=tuple(args.values))), upstreams, args.listen,
                            affinity=not args.no_affinity))


if __name__ == "__main__":
    main()
