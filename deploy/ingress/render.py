"""nginx config for a stand-in of the chart's way in, derived from the chart itself so the two cannot drift.

`helm template charts/reportflow` gives either the Gateway API HTTPRoutes (the default) or the Ingress objects;
each path of theirs becomes nginx locations with Kubernetes' Prefix/PathPrefix semantics, proxied to the
Service's component (its app.kubernetes.io/component label), with the object's policy applied:
- HTTPRoute: a rule's `sessionPersistence` (a cookie, as Envoy Gateway sets it: Path of the rule's path,
  Max-Age of its absoluteTimeout, HttpOnly) and `timeouts.request` ("0s": none); no body size limit.
- Ingress: the ingress-nginx annotations ingress.*.annotations give: cookie affinity, proxy timeouts, body size.
Anything of an HTTPRoute or an annotation that this file does not emulate fails the render instead of being
ignored. Cookie affinity on plain nginx: hash on the cookie, and set it when absent.
Usage: render.py [--source gateway|ingress] --listen 127.0.0.1:8080 --upstream auth=127.0.0.1:8001 ...
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
# HTTPRoute rule fields the stand-in emulates (anything else fails the render).
RULE_FIELDS = {"matches", "backendRefs", "sessionPersistence", "timeouts"}
NOT_FOUND = ('{"type": "about:blank", "title": "Not Found", "status": 404, "detail": "No such resource.", '
             '"code": "not_found"}')
NO_TIMEOUT = "86400s"  # nginx cannot switch a proxy timeout off: a day stands for "0s" (none)
SOURCES = {"gateway": "HTTPRoute", "ingress": "Ingress"}


@dataclass(frozen=True)
class Session:
    """An HTTPRoute rule's cookie session persistence."""
    cookie: str
    path: str
    max_age: int | None  # seconds; None: a session cookie


@dataclass(frozen=True)
class Route:
    ingress: str    # the Ingress's or the HTTPRoute's name
    path: str
    path_type: str  # Prefix, Exact or ImplementationSpecific (an HTTPRoute's PathPrefix is Prefix)
    component: str  # of the backend Service
    annotations: tuple[tuple[str, str], ...] = ()  # an Ingress's nginx.ingress.kubernetes.io/* (prefix removed)
    kind: str = "Ingress"
    session: Session | None = None  # an HTTPRoute rule's sessionPersistence
    timeout: str | None = None      # an HTTPRoute rule's timeouts.request, in nginx's form ("60s")

    def annotation(self, name: str, default: str | None = None) -> str | None:
        return dict(self.annotations).get(name, default)

    @property
    def cookie(self) -> str | None:
        """The affinity cookie's name, or None without affinity (ingress-nginx's default name INGRESSCOOKIE)."""
        if self.kind == "HTTPRoute":
            return self.session.cookie if self.session else None
        return self.annotation("session-cookie-name", "INGRESSCOOKIE") if self.annotation("affinity") == "cookie" \
            else None

    def cookie_attributes(self) -> list[str]:
        if self.session:  # Envoy Gateway's stateful-session cookie
            return [f"Path={self.session.path}"] + \
                ([f"Max-Age={self.session.max_age}"] if self.session.max_age is not None else [])
        attrs = [f"Path={self.annotation('session-cookie-path', self.path)}"]
        if self.annotation("session-cookie-max-age"):
            attrs.append(f"Max-Age={self.annotation('session-cookie-max-age')}")
        if self.annotation("session-cookie-samesite"):
            attrs.append(f"SameSite={self.annotation('session-cookie-samesite')}")
        return attrs

    def proxy_directives(self) -> list[str]:
        if self.kind == "HTTPRoute":
            # Envoy has no request body limit of its own; its route timeout covers the whole request.
            body = ["client_max_body_size 0;"]
            if self.timeout:
                wait = NO_TIMEOUT if seconds(self.timeout) == 0 else self.timeout
                body += [f"proxy_read_timeout {wait};", f"proxy_send_timeout {wait};"]
            return body
        body = []
        for note, directive in (("proxy-read-timeout", "proxy_read_timeout"),
                                ("proxy-send-timeout", "proxy_send_timeout"),
                                ("proxy-connect-timeout", "proxy_connect_timeout")):
            if self.annotation(note):
                body.append(f"{directive} {self.annotation(note)}s;")
        if self.annotation("proxy-body-size"):
            body.append(f"client_max_body_size {self.annotation('proxy-body-size')};")
        return body


def seconds(duration: str) -> float:
    """A Gateway API duration (GEP-2257: 1h, 30m, 10s, 500ms, combined) in seconds."""
    parts = re.findall(r"([0-9]+)(h|ms|m|s)", duration)
    if not parts or "".join(n + u for n, u in parts) != duration:
        raise ValueError(f"not a Gateway API duration: {duration!r}")
    return sum(int(n) * {"h": 3600, "m": 60, "s": 1, "ms": 0.001}[u] for n, u in parts)


def helm_binary() -> str:
    found = shutil.which("helm") or str(ROOT / ".tools" / "bin" / "helm")
    if not Path(found).exists():
        raise RuntimeError("helm not found (on PATH or in .tools/bin)")
    return found


def chart_manifests(chart: Path = CHART, values: tuple[str, ...] = (),
                    values_files: tuple[Path, ...] = ()) -> list[dict]:
    """The chart rendered with its defaults, plus values files (-f) and `--set` values."""
    argv = [helm_binary(), "template", "rf", str(chart), *[a for f in values_files for a in ("-f", str(f))],
            *[a for v in values for a in ("--set", v)]]
    out = subprocess.run(argv, check=True, capture_output=True, text=True, timeout=60).stdout
    return [d for d in yaml.safe_load_all(out) if isinstance(d, dict)]


def _services(manifests: list[dict]) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in manifests if d.get("kind") == "Service"}


def _service_component(services: dict, owner: str, name: str, port) -> str:
    service = services.get(name)
    if service is None:
        raise ValueError(f"{owner}: no Service {name} in the render")
    ports = {p.get("name") for p in service["spec"]["ports"]} | {p["port"] for p in service["spec"]["ports"]}
    if port not in ports:
        raise ValueError(f"{owner}: Service {name} has no port {port}")
    return service["metadata"]["labels"][COMPONENT]


def chart_routes(manifests: list[dict], source: str = "ingress") -> list[Route]:
    """The paths of the render's Ingress objects (source "ingress") or HTTPRoutes ("gateway")."""
    kind = SOURCES[source]
    objects = [d for d in manifests if d.get("kind") == kind]
    if not objects:
        raise ValueError(f"the render has no {kind}: enable it in the chart's values")
    reader = _ingress_routes if kind == "Ingress" else _httproute_routes
    return [route for obj in objects for route in reader(obj, _services(manifests))]


def _ingress_routes(ing: dict, services: dict) -> list[Route]:
    name = ing["metadata"]["name"]
    notes = ing["metadata"].get("annotations") or {}
    unknown = sorted(k for k in notes if k.startswith(NGINX) and k[len(NGINX):] not in KNOWN)
    if unknown:
        raise ValueError(f"Ingress {name}: the stand-in does not emulate {unknown}; add them to render.py")
    own = tuple(sorted((k[len(NGINX):], str(v)) for k, v in notes.items() if k.startswith(NGINX)))
    routes = []
    for rule in ing["spec"]["rules"]:
        for p in rule["http"]["paths"]:
            backend = p["backend"]["service"]
            port = backend["port"].get("name", backend["port"].get("number"))
            component = _service_component(services, f"Ingress {name}", backend["name"], port)
            routes.append(Route(name, p["path"], p["pathType"], component, own))
    return routes


def _httproute_routes(route: dict, services: dict) -> list[Route]:
    name = route["metadata"]["name"]
    routes = []
    for i, rule in enumerate(route["spec"]["rules"]):
        where = f"HTTPRoute {name} rule {i}"
        unknown = sorted(set(rule) - RULE_FIELDS)
        if unknown:
            raise ValueError(f"{where}: the stand-in does not emulate {unknown}; add them to render.py")
        (backend,) = rule["backendRefs"]  # one backend per rule: weights are not emulated
        if backend.get("kind", "Service") != "Service" or set(backend) - {"name", "port", "kind", "group"}:
            raise ValueError(f"{where}: only a plain Service backend is emulated: {backend}")
        component = _service_component(services, where, backend["name"], backend["port"])
        timeouts = rule.get("timeouts") or {}
        if set(timeouts) - {"request"}:
            raise ValueError(f"{where}: only timeouts.request is emulated: {timeouts}")
        timeout = timeouts.get("request")
        if timeout is not None:
            seconds(timeout)
        for match in rule["matches"]:
            if set(match) != {"path"} or match["path"]["type"] not in ("PathPrefix", "Exact"):
                raise ValueError(f"{where}: only PathPrefix and Exact path matches are emulated: {match}")
            path = match["path"]["value"]
            routes.append(Route(name, path, "Prefix" if match["path"]["type"] == "PathPrefix" else "Exact",
                                component, kind="HTTPRoute", session=_session(where, rule, path), timeout=timeout))
    return routes


def _session(where: str, rule: dict, path: str) -> Session | None:
    sp = rule.get("sessionPersistence")
    if not sp:
        return None
    if sp.get("type", "Cookie") != "Cookie" or set(sp) - {"type", "sessionName", "absoluteTimeout", "cookieConfig"}:
        raise ValueError(f"{where}: only cookie session persistence (sessionName, absoluteTimeout) is emulated: {sp}")
    permanent = (sp.get("cookieConfig") or {}).get("lifetimeType", "Session") == "Permanent"
    max_age = int(seconds(sp["absoluteTimeout"])) if permanent and sp.get("absoluteTimeout") else None
    return Session(sp["sessionName"], path, max_age)


def _ident(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", text)


def nginx_locations(route: Route) -> list[str]:
    """Kubernetes' Prefix matching: /a matches /a and /a/..., not /ab (trailing slashes ignored)."""
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
        body = [f"proxy_pass http://{pool};", *route.proxy_directives()]
        if cookie:
            value = "; ".join([f"{cookie}=$request_id", *route.cookie_attributes(), "HttpOnly"])
            var = cookies.setdefault(value, f"$affinity_set_{_ident(cookie)}_{len(cookies)}")
            body.append(f"add_header Set-Cookie {var} always;  # empty (not sent) when the client has one")
        for loc in nginx_locations(route):
            locations.append(f"        location {loc} {{  # {route.kind} {route.ingress}: {route.path} "
                             f"({route.path_type})\n" + "".join(f"            {line}\n" for line in body) + "        }")
    for cookie in sorted({r.cookie for r in routes if r.cookie and affinity}):
        v = _ident(cookie)
        maps.append(f"    map $cookie_{v} $affinity_key_{v} {{\n        \"\" $request_id;\n"
                    f"        default $cookie_{v};\n    }}")
    for value, var in cookies.items():
        v = _ident(value.split("=", 1)[0])
        maps.append(f"    map $cookie_{v} {var} {{\n        \"\" \"{value}\";\n        default \"\";\n    }}")
    if not any(loc == "/" for r in routes for loc in nginx_locations(r)):
        if all(r.kind == "HTTPRoute" for r in routes):  # Envoy: no route, a 404 with an empty body
            locations.append("        location / {  # no HTTPRoute rule matches: the gateway's 404\n"
                             "            return 404;\n        }")
        else:
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
    parser.add_argument("--source", choices=sorted(SOURCES), default="gateway",
                        help="the chart's HTTPRoutes (default) or its Ingress objects")
    parser.add_argument("--listen", default="127.0.0.1:8080")
    parser.add_argument("--upstream", action="append", default=[], metavar="COMPONENT=HOST:PORT[,HOST:PORT]")
    parser.add_argument("-f", "--values", action="append", default=[], dest="values_files", type=Path,
                        help="a chart values file, as helm -f")
    parser.add_argument("--set", action="append", default=[], dest="values", help="a chart value, as helm --set")
    parser.add_argument("--no-affinity", action="store_true", help="round-robin, no cookie")
    args = parser.parse_args()
    upstreams = {c: s.split(",") for c, s in (u.split("=", 1) for u in args.upstream)}
    manifests = chart_manifests(values=tuple(args.values), values_files=tuple(args.values_files))
    sys.stdout.write(render(chart_routes(manifests, args.source), upstreams, args.listen,
                            affinity=not args.no_affinity))


if __name__ == "__main__":
    main()
