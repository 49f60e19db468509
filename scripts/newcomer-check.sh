#!/usr/bin/env bash
# The newcomer check: the README's commands on a machine that has never seen reportflow.
#
#   scripts/newcomer-check.sh          # `make up` in a pristine container, driven from the host (make newcomer)
#   scripts/newcomer-check.sh --full   # ... then `CI=true bash .ci/run` (make test) in the same container
#
# A fresh clone of the committed tree (HEAD) is copied into a clean Debian bookworm container: the base image
# `make images` uses (the official python:3.11-slim-bookworm or its debootstrap stand-in) plus only what the
# README asks a newcomer for: python3-venv, make, git. `make up` runs there as an ordinary user; from the host
# this script logs in as a demo user, creates a report, waits for it and downloads the file. The container uses
# the host network so the package registries are reachable; nothing of this machine's venvs or caches goes in.
# Exit status 0 means both worked; the container and the clone are removed whatever happens.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
FULL=0
[ "${1:-}" = "--full" ] && FULL=1
command -v podman >/dev/null || { echo "newcomer-check: podman is not installed (apt-get install -y podman)" >&2; exit 3; }

started=$SECONDS
say() { printf '[newcomer %4ds] %s\n' "$((SECONDS - started))" "$*"; }

python3 "$ROOT/scripts/images.py" --base-only
BASE=$(python3 -c 'import sys; sys.path.insert(0, sys.argv[1]); import images; print(images.BASE)' "$ROOT/scripts")
export CONTAINERS_CONF=${CONTAINERS_CONF:-$(python3 -c 'import sys; sys.path.insert(0, sys.argv[1]); import images; print(images.podman_env().get("CONTAINERS_CONF", ""))' "$ROOT/scripts")}
[ -n "$CONTAINERS_CONF" ] || unset CONTAINERS_CONF

work=$(mktemp -d "${TMPDIR:-/tmp}/rf-newcomer.XXXXXX")
name="rf-newcomer-$$-$RANDOM"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cleanup() {
  podman rm -f -t 20 "$name" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

git clone -q "$ROOT" "$work/reportflow"
say "fresh clone of $(git -C "$ROOT" rev-parse --short HEAD); container $name from $BASE; make up on port $port"

# Inside: the machine's CA bundle (this machine reaches registries through its own TLS setup: not a project
# step), the three packages the README asks for, an ordinary user, and then exactly the README's command.
cat > "$work/inside.sh" <<'INSIDE'
set -eu
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive
if [ -s /host-ca.crt ]; then cp /host-ca.crt /etc/ssl/certs/ca-certificates.crt; fi
export PIP_CERT=/etc/ssl/certs/ca-certificates.crt
echo "[inside] apt-get install python3-venv make git"
apt-get update -qq && apt-get install -y -qq --no-install-recommends python3-venv make git >/dev/null
useradd -m newcomer
cp -r /src /home/newcomer/reportflow && chown -R newcomer:newcomer /home/newcomer/reportflow
echo "[inside] make up as $(runuser -u newcomer -- id -un), $(python3 -V)"
cd /home/newcomer/reportflow
status=0
runuser -u newcomer -- env HOME=/home/newcomer PIP_CERT="$PIP_CERT" UP_PORT="$UP_PORT" make up || status=$?
# --full stops `make up` itself, then runs CI in this container with `podman exec`: the container must outlive
# `make up` for that (when its main process ends, podman kills every exec'd process: exit 137 mid-CI)
if [ -e /tmp/keep-container ]; then exec sleep infinity; fi
exit "$status"
INSIDE

shared=()  # the team's shared folder sits beside the repository on CI machines too (the suite reads schemas there)
[ -d "$ROOT/../shared" ] && shared=(-v "$(cd "$ROOT/../shared" && pwd):/home/newcomer/shared:ro")
podman run -d --name "$name" --network host --pull=never "${shared[@]}" \
  -v "$work/reportflow:/src:ro" -v "$work/inside.sh:/inside.sh:ro" \
  -v /etc/ssl/certs/ca-certificates.crt:/host-ca.crt:ro -e UP_PORT="$port" \
  "$BASE" bash /inside.sh >/dev/null

# From the host, as a user would: wait for the banner, then log in, create, wait, download.
python3 - "$port" "$name" <<'CLIENT'
import json, subprocess, sys, time, urllib.error, urllib.request

port, name = sys.argv[1], sys.argv[2]
base, t0 = f"http://127.0.0.1:{port}", time.monotonic()

def logs() -> str:
    return subprocess.run(["podman", "logs", name], capture_output=True, text=True).stdout

def running() -> bool:
    out = subprocess.run(["podman", "inspect", "--format", "{{.State.Running}}", name], capture_output=True, text=True)
    return out.stdout.strip() == "true"

def call(method, path, body=None, token=None):
    req = urllib.request.Request(base + path, method=method, data=json.dumps(body).encode() if body else None,
                                 headers={"Content-Type": "application/json",
                                          **({"Authorization": f"Bearer {token}"} if token else {})})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status, r.read(), r.headers

deadline = time.monotonic() + 1200  # a first install from PyPI, with redis compiled from source
while "reportflow is running" not in logs():
    if not running():
        sys.exit("make up stopped before serving:\n" + logs()[-6000:])
    if time.monotonic() > deadline:
        sys.exit("make up did not come up in 20 min:\n" + logs()[-6000:])
    time.sleep(2)
up_seconds = time.monotonic() - t0
steps = [line for line in logs().splitlines() if line.startswith("==>")]
print(f"[newcomer] make up served after {up_seconds:.0f} s; steps shown: {len(steps)}", flush=True)
assert len(steps) >= 4, f"make up should say what it is doing; it printed: {steps}"

token = json.loads(call("POST", "/v1/auth/login", {"email": "administrator@test.com", "password": "password1"})[1])["access_token"]
status, body, _ = call("POST", "/v1/reports", {"type": "demo", "params": {"rows": 2000, "columns": 6, "seed": 1}}, token)
assert status == 202, (status, body)
rid = json.loads(body)["id"]
deadline = time.monotonic() + 120
while (report := json.loads(call("GET", f"/v1/reports/{rid}", token=token)[1]))["status"] not in ("succeeded", "failed"):
    assert time.monotonic() < deadline, report
    time.sleep(0.5)
assert report["status"] == "succeeded", report
status, content, headers = call("GET", f"/v1/reports/{rid}/download", token=token)  # follows the 302
assert status == 200 and content[:2] == b"PK", (status, content[:40])
print(f"[newcomer] logged in, created report {rid}, downloaded {len(content)} bytes of xlsx "
      f"({time.monotonic() - t0:.0f} s since start)", flush=True)
CLIENT

if [ "$FULL" = 1 ]; then
  say "make up works; now CI=true bash .ci/run inside the same container (root, as CI runs)"
  # Ctrl-C for `make up` (inside our own container, so finding it by name is safe), then wait for it to end;
  # the container stays up for CI (/tmp/keep-container, read by inside.sh).
  podman exec "$name" touch /tmp/keep-container
  podman exec "$name" bash -c 'for p in /proc/[0-9]*; do tr "\0" " " < $p/cmdline 2>/dev/null | grep -q "bin/reportflow-up" && kill -INT ${p#/proc/}; done; for i in $(seq 60); do grep -qs reportflow-up /proc/[0-9]*/cmdline || exit 0; sleep 1; done' || true
  # Containers inside this container are out of reach (no nested podman): that part is switched off on purpose.
  # CI machines carry Python 3.13 under ~/.pyenv (MACHINE.md; no registry here serves it): lend the host's, as
  # CI's `make test` requires a 3.13 run.
  py313=$("$ROOT/scripts/find-python.sh" 3.13)
  if [ -n "$py313" ]; then
    home313=$(cd "$(dirname "$py313")/.." && pwd)
    podman exec "$name" mkdir -p /root/.pyenv/versions
    podman cp "$home313" "$name:/root/.pyenv/versions/$(basename "$home313")"
  fi
  podman exec -e CI=true -e REPORTFLOW_CONTAINER_TESTS=0 -e PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    -w /home/newcomer/reportflow "$name" bash -c 'git config --global --add safe.directory "*"; bash .ci/run'
fi
say "newcomer check passed"
