#!/usr/bin/env python3
"""Build the four service images with podman: localhost/reportflow-<service>:<version>.

    python3 scripts/images.py                 # build all four (what `make images` runs)
    python3 scripts/images.py --missing auth  # only those of the named ones that are not present
    python3 scripts/images.py --base-only     # only make sure the base image (or its stand-in) is there
    REPORTFLOW_IMAGE_TAG=ci-42 python3 scripts/images.py   # another tag (one checkout's images beside another's)

Each image is services/Dockerfile with --build-arg SERVICE=<name> and the repository root as context,
built with --pull=never (nothing can be pulled here). The Dockerfile starts FROM python:3.11-slim-bookworm;
when that image is not present locally, a stand-in with the same name is made from Debian bookworm with
debootstrap, from the mirror apt uses. Prints each image's build time, its size and its size above the base
(what the service adds: its /venv), against the targets in SIZE_TARGETS_MB. tests/containers imports
podman_env() and ensure().
"""
from __future__ import annotations

import argparse
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "services" / "Dockerfile"  # the four images', SERVICE (a build argument) picks one
SERVICES = ("auth", "reports", "worker", "notifier")
BASE = "docker.io/library/python:3.11-slim-bookworm"
STAND_IN_LABEL = "org.reportflow.base-stand-in"
# The official base image's ENV PATH (Debian's, with /usr/local/bin put first by the python image)
OFFICIAL_PATH = "/usr/local/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
RUN_DIR = ROOT / ".run" / "podman"
# Most an image may add above its base, in MB (10**6 bytes): the service's /venv. tests/containers holds them.
SIZE_TARGETS_MB = {"auth": 100, "notifier": 100, "reports": 130, "worker": 130}


def say(message: str) -> None:
    print(message, flush=True)  # noqa: T201 (a command-line tool's output)


def version() -> str:
    project = tomllib.loads((ROOT / "services/common/pyproject.toml").read_text()).get("project", {})
    return project.get("version", "0.1.0")


def tag() -> str:
    """The images' tag: REPORTFLOW_IMAGE_TAG, else the packages' version (the chart's appVersion)."""
    return os.environ.get("REPORTFLOW_IMAGE_TAG") or version()


def image(service: str) -> str:
    return f"localhost/reportflow-{service}:{tag()}"


def podman_env() -> dict:
    """The environment podman runs with. Without a containers.conf of the machine's, point podman at one
    with no default ulimits: in a sandbox such as this machine's the runtime may not set RLIMIT_NPROC/NOFILE,
    and every container, build steps included, fails with "error setting rlimit" (MACHINE.md §15)."""
    env = dict(os.environ)
    if "CONTAINERS_CONF" not in env and not Path("/etc/containers/containers.conf").exists():
        conf = RUN_DIR / "containers.conf"
        if not conf.exists():
            conf.parent.mkdir(parents=True, exist_ok=True)
            conf.write_text("# written by scripts/images.py: no default ulimits (see podman_env)\n"
                            "[containers]\ndefault_ulimits = []\n")
        env["CONTAINERS_CONF"] = str(conf)
    return env


def podman(*args: str, check: bool = True, quiet: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", *args], env=podman_env(), check=check, text=True,
                          stdout=subprocess.PIPE if quiet else None, stderr=subprocess.PIPE if quiet else None)


def exists(name: str) -> bool:
    return podman("image", "exists", name, check=False).returncode == 0


def apt_mirror() -> str:
    """The Debian mirror apt is configured with (deb822 .sources or one-line .list), else deb.debian.org."""
    if os.environ.get("DEBIAN_MIRROR"):
        return os.environ["DEBIAN_MIRROR"]
    for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")) + ["/etc/apt/sources.list"] + sorted(
            glob.glob("/etc/apt/sources.list.d/*.list")):
        try:
            text = Path(path).read_text()
        except OSError:
            continue
        for stanza in re.split(r"\n\s*\n", text):  # deb822: URIs/Suites fields in one stanza
            uris, suites = re.search(r"^URIs:\s*(\S+)", stanza, re.M), re.search(r"^Suites:(.*)$", stanza, re.M)
            if uris and suites and "bookworm" in suites.group(1).split():
                return uris.group(1)
        for line in text.splitlines():  # one-line: deb [opts] URI SUITE COMPONENTS
            m = re.match(r"\s*deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+bookworm\s", line)
            if m:
                return m.group(1)
    return "http://deb.debian.org/debian"


def build_stand_in() -> float:
    """Debian bookworm minbase with python3 and venv, imported under the official image's name."""
    for tool in ("debootstrap", "tar"):
        if not shutil.which(tool):
            sys.exit(f"{BASE} is not present and {tool} is missing: apt-get install -y debootstrap")
    if os.geteuid() != 0:
        sys.exit(f"{BASE} is not present, and debootstrap needs root to make the stand-in")
    start = time.monotonic()
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=RUN_DIR, prefix="base-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        mirror = apt_mirror()
        say(f"{BASE} not present: building a stand-in with debootstrap from {mirror}")
        run = subprocess.run(["debootstrap", "--variant=minbase", "--include=python3,python3-venv,ca-certificates",
                              "bookworm", str(rootfs), mirror], capture_output=True, text=True)
        if run.returncode:
            sys.exit(f"debootstrap from {mirror} failed (DEBIAN_MIRROR= picks another):\n{run.stdout[-2000:]}")
        # The machine's CA bundle, so that pip inside a build trusts what this machine trusts (a TLS proxy).
        if Path("/etc/ssl/certs/ca-certificates.crt").exists():
            shutil.copy("/etc/ssl/certs/ca-certificates.crt", rootfs / "etc/ssl/certs/ca-certificates.crt")
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        # PATH as the official image sets it (Debian's, sbin included, with /usr/local/bin first): root in a
        # container of the stand-in finds useradd and runuser where it would in the official image.
        subprocess.run(["podman", "import", "--quiet", "--change", f"ENV PATH={OFFICIAL_PATH}",
                        "--change", 'CMD ["python3"]', "--change", f"LABEL {STAND_IN_LABEL}=debootstrap-bookworm",
                        "-", BASE], stdin=tar.stdout, env=podman_env(), check=True, stdout=subprocess.DEVNULL)
        tar.stdout.close()
        if tar.wait():
            sys.exit("tar of the stand-in root filesystem failed")
    return time.monotonic() - start


def base_kind() -> str:
    out = podman("image", "inspect", "--format", f'{{{{index .Labels "{STAND_IN_LABEL}"}}}}', BASE).stdout.strip()
    return "stand-in (debootstrap)" if out and out != "<no value>" else "official"


def image_id(name: str) -> str:
    return podman("image", "inspect", "--format", "{{.Id}}", name, check=False).stdout.strip()


def build(service: str) -> tuple[float, int]:
    """One image; unchanged sources hit the layer cache (a few seconds)."""
    start, previous = time.monotonic(), image_id(image(service))
    run = podman("build", "--pull=never", "--quiet", "-t", image(service), "--build-arg", f"SERVICE={service}",
                 "-f", str(DOCKERFILE), str(ROOT), check=False)
    if run.returncode:
        sys.exit(f"podman build of {service} failed:\n{run.stdout}{run.stderr}")
    seconds = time.monotonic() - start
    if previous and previous != image_id(image(service)):
        podman("rmi", previous, check=False)  # the replaced image, now untagged (kept if a container uses it)
    return seconds, size(image(service))


def size(name: str) -> int:
    return int(podman("image", "inspect", "--format", "{{.Size}}", name).stdout.strip())


def ensure_base() -> None:
    """The official base if present, else the stand-in (made once, then present under the same name)."""
    if not exists(BASE):
        say(f"base stand-in built in {build_stand_in():.1f} s")
    if not getattr(ensure_base, "reported", False):
        say(f"base image: {BASE} ({base_kind()}, {size(BASE) / 1e6:.1f} MB)")
        ensure_base.reported = True


def above_base(service: str) -> int:
    """Bytes the service's image adds to its base (the final stage copies /venv onto it, nothing else)."""
    return size(image(service)) - size(BASE)


def report(service: str, seconds: float, total: int) -> str:
    added, target = above_base(service) / 1e6, SIZE_TARGETS_MB[service]
    verdict = "within" if added < target else "OVER"
    return (f"{image(service):40} built in {seconds:6.1f} s  {total / 1e6:7.1f} MB, {added:6.1f} MB above the base "
            f"({verdict} the {target} MB target)")


def ensure(services=SERVICES, missing_only: bool = False) -> list[tuple[str, float, int]]:
    """Build the images (only the absent ones with missing_only); returns (image, seconds, bytes) built."""
    if not shutil.which("podman"):
        sys.exit("podman is not installed: apt-get install -y podman runc debootstrap")
    todo = [s for s in services if not (missing_only and exists(image(s)))]
    if not todo:
        return []
    ensure_base()
    built = []
    for service in todo:
        seconds, total = build(service)
        built.append((image(service), seconds, total))
        say(report(service, seconds, total))
    return built


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("services", nargs="*", metavar="SERVICE", help=f"any of {', '.join(SERVICES)} (default: all)")
    parser.add_argument("--missing", action="store_true", help="build only images that are not present")
    parser.add_argument("--base-only", action="store_true", help="only the base image (the newcomer check's)")
    args = parser.parse_args()
    if args.base_only:
        return ensure_base()
    unknown = set(args.services) - set(SERVICES)
    if unknown:
        parser.error(f"unknown service(s): {', '.join(sorted(unknown))}")
    ensure(args.services or SERVICES, args.missing)


if __name__ == "__main__":
    main()
