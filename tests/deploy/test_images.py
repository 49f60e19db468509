"""The Dockerfile, read without an engine: hadolint, the command each image runs, its user and its installs.

One file, services/Dockerfile, builds the four images: the build argument SERVICE picks the package and the
final stage. The checks read it as the image of each service (SERVICE substituted), as a build would.

The images themselves are built elsewhere (podman); these checks catch what would make a build or a pod wrong.
"""
from __future__ import annotations

import ast
import fnmatch
import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from importlib.metadata import PackageNotFoundError, packages_distributions, requires
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("auth", "reports", "worker", "notifier")
BASE_IMAGE = "python:3.11-slim-bookworm"
DOCKERFILE = ROOT / "services" / "Dockerfile"


def tool(name: str) -> str:
    """A tool from PATH or the venv running the tests (where requirements/dev.txt installs it)."""
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if not found:
        pytest.fail(f"{name} is not installed: `make install-dev` installs it")
    return found


def instructions(dockerfile: Path, service: str | None = None) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, with continuation lines joined and comments dropped; with a service,
    the build argument SERVICE replaced by its name as in that service's build."""
    result, pending = [], ""
    text = dockerfile.read_text()
    if service is not None:
        text = text.replace("${SERVICE}", service).replace("$SERVICE", service)
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        result.append((keyword.upper(), " ".join(args.split())))
        pending = ""
    return result


def stages(dockerfile: Path, service: str | None = None) -> list[list[tuple[str, str]]]:
    """The build stages, each starting with its FROM (the global ARGs before the first FROM left out)."""
    found: list[list[tuple[str, str]]] = []
    for keyword, args in instructions(dockerfile, service):
        if keyword == "FROM":
            found.append([])
        if found:
            found[-1].append((keyword, args))
    return found


def stage_name(stage: list[tuple[str, str]]) -> str | None:
    words = stage[0][1].split()
    return words[2] if len(words) == 3 and words[1].upper() == "AS" else None


def image_of(service: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(the build stage, the final image's instructions) of the service's build: the final image is the last
    stage together with the stages of this file it starts FROM, in order (as Docker and buildah chain them)."""
    all_stages = stages(DOCKERFILE, service)
    named = {stage_name(stage): stage for stage in all_stages if stage_name(stage)}
    final, stage = [], all_stages[-1]
    while True:
        final[:0] = stage
        parent = stage[0][1].split()[0]
        if parent not in named:
            break
        stage = named[parent]
    return all_stages[0], final


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list), f"{args}: use the exec (JSON) form so signals reach the process"
    return value


def console_script(service: str) -> str:
    scripts = tomllib.loads((ROOT / "services" / service / "pyproject.toml").read_text())["project"]["scripts"]
    assert len(scripts) == 1, f"services/{service} declares {sorted(scripts)}; one console script expected"
    return next(iter(scripts))


@pytest.fixture(params=SERVICES)
def service(request) -> str:
    return request.param


@pytest.fixture
def build_stage(service) -> list[tuple[str, str]]:
    return image_of(service)[0]


@pytest.fixture
def final(service) -> list[tuple[str, str]]:
    return image_of(service)[1]


def test_one_dockerfile_for_the_four_images():
    assert DOCKERFILE.is_file(), f"{DOCKERFILE} is missing"
    assert sorted(ROOT.glob("services/**/*Dockerfile*")) == [DOCKERFILE], "one Dockerfile, SERVICE picks the image"
    global_args = [args for keyword, args in instructions(DOCKERFILE)[:1] if keyword == "ARG"]
    assert global_args == ["SERVICE"], "SERVICE without a default: a build must name its service"


def test_hadolint_passes():
    # cwd=ROOT so a .hadolint.yaml (with the reasons for any ignored rule) would apply, as in CI.
    run = subprocess.run([tool("hadolint"), "--no-color", "--failure-threshold", "warning", str(DOCKERFILE)],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr


def test_hadolint_catches_a_bad_dockerfile(tmp_path):
    """The threshold above bites: an unpinned, root, shell-form image fails it."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:3.11-slim\nRUN pip install flask\nCMD python app.py\n")
    run = subprocess.run([tool("hadolint"), "--no-color", "--failure-threshold", "warning", str(bad)],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode != 0 and "DL3013" in run.stdout, run.stdout + run.stderr


def test_final_command_is_the_console_script(service, final):
    script = console_script(service)
    assert script == f"reportflow-{service}"
    final = dict(final)  # the last ENTRYPOINT/CMD of the final image wins
    command = exec_form(final.get("ENTRYPOINT", "[]")) + exec_form(final.get("CMD", "[]"))
    assert command == [f"/venv/bin/{script}"]
    # The e2e tests start the services by the same script, so what they test is what the image runs.
    assert f'"{script}"' in (ROOT / "tests" / "support" / "stack.py").read_text()


def test_migrate_script_is_in_every_image():
    """Compose and the Helm hook run `reportflow-migrate` from an app image: it comes with reportflow-common."""
    scripts = tomllib.loads((ROOT / "services/common/pyproject.toml").read_text())["project"]["scripts"]
    assert "reportflow-migrate" in scripts


def test_final_stage_runs_as_numeric_non_root_user(final):
    users = [args for keyword, args in final if keyword == "USER"]
    assert users, "the final stage sets no USER: it would run as root"
    uid, _, gid = users[-1].partition(":")
    # Numeric: the stand-in base has no useradd, and Kubernetes runAsNonRoot can only verify a number.
    assert uid.isdigit() and int(uid) != 0 and gid.isdigit() and int(gid) != 0, users[-1]  # not group root


def test_every_stage_uses_the_pinned_base(service, final):
    all_stages = stages(DOCKERFILE, service)
    images, earlier = [], set()
    for stage in all_stages:
        parent = stage[0][1].split()[0]
        if parent not in earlier:  # not a stage of this file: an image
            images.append(parent)
        earlier.add(stage_name(stage))
    assert len(images) >= 2, "multi-stage: build in one stage, copy /venv into the final one"
    assert images == [BASE_IMAGE] * len(images)
    assert final[0] == ("FROM", f"{BASE_IMAGE} AS runtime"), "the final image starts from the base"


def pip_installs(stage: list[tuple[str, str]]) -> list[tuple[int, list[str]]]:
    """(index in the stage, argv) of each `pip install` of a stage (one RUN may chain commands with &&)."""
    found = []
    for i, (keyword, args) in enumerate(stage):
        if keyword == "RUN":
            for command in args.split("&&"):
                argv = shlex.split(command)
                if argv[1:2] == ["install"]:
                    found.append((i, argv))
    return found


def test_build_stage_installs_dependencies_then_the_code_with_the_lock(service, build_stage, final):
    """Two layers: the dependencies, from the packages' pyproject.toml alone (rebuilt only when one of them or
    the lock changes), then the code over them with --no-deps (rebuilt on every code change, in seconds)."""
    build = build_stage
    runs = [args for keyword, args in build if keyword == "RUN"]
    assert "python3 -m venv /venv" in runs, "create the venv with python3 (official image and stand-in alike)"
    installs = pip_installs(build)
    assert len(installs) == 2, installs
    for _, argv in installs:
        assert argv[0] == "/venv/bin/pip", argv
        assert not {"-e", "--editable"} & set(argv), "images get regular installs, not editable ones"
        assert [a for a in argv if a.startswith("./")] == ["./services/common", f"./services/{service}"]
    (deps_at, deps), (code_at, code) = installs
    assert any(deps[i:i + 2] in (["-c", "requirements/constraints.txt"],
                                 ["--constraint", "requirements/constraints.txt"]) for i in range(len(deps)))
    assert {"--no-deps", "--force-reinstall"} <= set(code), "the code layer installs the two packages alone"
    copies = [(i, args) for i, (keyword, args) in enumerate(build) if keyword == "COPY"]
    before = {args for i, args in copies if i < deps_at}
    assert before == {"requirements/constraints.txt requirements/constraints.txt",
                      "services/common/pyproject.toml services/common/pyproject.toml",
                      f"services/{service}/pyproject.toml services/{service}/pyproject.toml"}, \
        "only the lock and the two pyproject.toml before the dependency layer"
    after = {args for i, args in copies if deps_at < i < code_at}
    assert after == {"services/common services/common", f"services/{service} services/{service}"}
    assert not [args for keyword, args in final if keyword == "RUN"], "the final stage only copies /venv"
    # The steps before SERVICE is declared in the stage are the four builds' shared, cached layers.
    arg_at = build.index(("ARG", "SERVICE"))
    assert all(service not in args for _, args in build[:arg_at]) and arg_at < deps_at


def test_no_pip_or_setuptools_reaches_the_final_stage(build_stage):
    """Nothing installs anything at run time: the build stage removes them from /venv after its last install,
    and the final stage copies /venv alone."""
    build = build_stage
    last_install = pip_installs(build)[-1][0]
    uninstall = [i for i, (keyword, args) in enumerate(build)
                 if keyword == "RUN" and re.search(r"/venv/bin/pip uninstall --yes .*\bpip setuptools$", args)]
    assert uninstall and uninstall[-1] >= last_install
    last_run = max(i for i, (keyword, _) in enumerate(build) if keyword == "RUN")
    assert uninstall[-1] == last_run, "no pip after it"


def test_botocore_pruning_comes_with_the_dependencies():
    """In the dependency layer's wake (cached with it), before the code: a code change keeps the pruned layer."""
    build = stages(DOCKERFILE, "reports")[0]
    (deps_at, _), (code_at, _) = pip_installs(build)
    prune_at = [i for i, (keyword, args) in enumerate(build) if keyword == "RUN" and "botocore/data" in args]
    first_code_copy = min(i for i, (keyword, args) in enumerate(build) if keyword == "COPY" and i > deps_at)
    assert len(prune_at) == 1 and deps_at < prune_at[0] < first_code_copy < code_at


@pytest.mark.parametrize("with_botocore", [True, False], ids=["reports-worker", "auth-notifier"])
def test_botocore_pruning_keeps_s3_and_the_credential_chain_and_passes_without_botocore(tmp_path, with_botocore):
    """The one pruning step runs in every service's build, by /bin/sh -c as a RUN does: where boto3 is installed
    it removes botocore's other models, where it is not it does nothing and succeeds."""
    [command] = [args for keyword, args in stages(DOCKERFILE, "reports")[0]
                 if keyword == "RUN" and "botocore/data" in args]
    assert command.count("/venv/") == 1
    site = tmp_path / "venv/lib/python3.11/site-packages"
    data = site / "botocore" / "data"
    kept = {"s3", "sts", "sso", "sso-oidc", "signin"}
    site.mkdir(parents=True)
    if with_botocore:
        for name in kept | {"ec2", "dynamodb", "s3control"}:
            (data / name / "2006-03-01").mkdir(parents=True)
            (data / name / "2006-03-01" / "service-2.json.gz").write_bytes(b"model")
        (data / "endpoints.json").write_text("{}")
    run = subprocess.run(["/bin/sh", "-c", command.replace("/venv/", f"{tmp_path}/venv/")],
                         capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, run.stderr
    if with_botocore:
        assert {p.name for p in data.iterdir()} == kept | {"endpoints.json"}
        assert (data / "s3" / "2006-03-01" / "service-2.json.gz").is_file()
    else:
        assert [p.name for p in site.iterdir()] == []


# --- each image carries only its own service's dependencies ---------------------------------------------

EXTRA = re.compile(r"^(?P<name>[A-Za-z0-9_.-]+)\s*(\[(?P<extras>[^]]*)\])?")


def requirement_closure(names: list[str]) -> set[str]:
    """Every distribution `pip install` would bring for these requirement strings (extras followed), from the
    installed packages' metadata."""
    seen, todo = set(), [Requirement(n) for n in names]
    while todo:
        req = todo.pop()
        key = (canonicalize_name(req.name), frozenset(req.extras))
        if key in seen:
            continue
        seen.add(key)
        try:
            deps = _requires(req.name)
        except PackageNotFoundError:
            continue
        for dep in map(Requirement, deps):
            extras = req.extras or {""}
            if dep.marker is None or any(dep.marker.evaluate({"extra": e}) for e in extras):
                todo.append(dep)
    return {name for name, _ in seen}


def _requires(name: str) -> list[str]:
    """A distribution's requirements; reportflow-common's from its pyproject.toml (the installed metadata of an
    editable install is as old as the install)."""
    if canonicalize_name(name) != "reportflow-common":
        return requires(name) or []
    project = tomllib.loads((ROOT / "services/common/pyproject.toml").read_text())["project"]
    return [*project["dependencies"], *(f'{d}; extra == "{extra}"'
                                        for extra, deps in project["optional-dependencies"].items() for d in deps)]


def declared(package: str) -> list[str]:
    return tomllib.loads((ROOT / "services" / package / "pyproject.toml").read_text())["project"]["dependencies"]


def common_modules_imported(service: str) -> set[str]:
    """reportflow_common's modules the service's code uses, with those they use in turn."""
    common = ROOT / "services" / "common" / "reportflow_common"
    found, todo = set(), []
    for path in (ROOT / "services" / service).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("reportflow_common"):
                parts = node.module.split(".")[1:]
                todo += [parts[0]] if parts else [a.name for a in node.names]
    while todo:
        name = todo.pop()
        if name in found or not ((common / f"{name}.py").exists() or (common / name).is_dir()):
            continue
        found.add(name)
        source = common / f"{name}.py" if (common / f"{name}.py").exists() else common / name / "__init__.py"
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                todo += [node.module.split(".")[0]] if node.module else [a.name for a in node.names]
    return found


def required_imports(module_path: Path) -> set[str]:
    """Top-level third-party names a module imports, leaving out those in `try: ... except ImportError`."""
    tree = ast.parse(module_path.read_text())
    optional = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(isinstance(h.type, ast.Name) and h.type.id == "ImportError"
                                             for h in node.handlers):
            optional |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    names = set()
    for node in ast.walk(tree):
        if id(node) in optional:
            continue
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and not n.startswith("reportflow")}


@pytest.mark.parametrize("service", SERVICES)
def test_each_image_installs_what_its_code_imports(service):
    """What `pip install ./services/common ./services/<service>` brings (the image's dependency layer) covers
    every third-party module the service's code and the reportflow_common modules it uses import: the
    service names the reportflow-common extras it needs."""
    installed = requirement_closure(declared(service))
    providers = packages_distributions()
    common = ROOT / "services" / "common" / "reportflow_common"
    sources = [*(ROOT / "services" / service).rglob("*.py")]
    for name in common_modules_imported(service):
        sources += [common / f"{name}.py"] if (common / f"{name}.py").exists() else [*(common / name).rglob("*.py")]
    missing = {}
    for source in sources:
        for module in required_imports(source):
            dists = {canonicalize_name(d) for d in providers.get(module, [module])}
            if not dists & installed:
                missing.setdefault(module, []).append(str(source.relative_to(ROOT)))
    assert not missing, f"{service}'s image would lack: {missing}"


# What each image must not carry: the heavy dependencies of the other services.
NOT_IN = {
    "auth": {"boto3", "botocore", "celery", "python-socketio", "gevent", "openpyxl", "lxml", "pyyaml"},
    "notifier": {"sqlalchemy", "psycopg2-binary", "alembic", "boto3", "botocore", "celery", "openpyxl", "lxml",
                 "argon2-cffi"},
    "reports": {"gevent", "openpyxl", "lxml", "argon2-cffi", "flask-socketio", "python-socketio"},
    "worker": {"gevent", "argon2-cffi", "flask-socketio", "python-socketio", "pyyaml"},
}


@pytest.mark.parametrize("service", SERVICES)
def test_each_image_leaves_out_what_other_services_need(service):
    carried = requirement_closure(declared(service)) & NOT_IN[service]
    assert not carried, f"{service}'s image would carry {sorted(carried)}"


def test_common_keeps_its_heavy_dependencies_in_extras():
    project = tomllib.loads((ROOT / "services/common/pyproject.toml").read_text())["project"]
    base = {EXTRA.match(d)["name"].lower() for d in project["dependencies"]}
    assert not base & {"sqlalchemy", "psycopg2-binary", "alembic", "boto3", "celery", "python-socketio", "pyyaml"}
    assert set(project["optional-dependencies"]) == {"db", "storage", "queue", "api", "ratelimit"}


def test_final_stage_copies_the_venv_and_sets_the_runtime_environment(build_stage, final):
    build_name = stage_name(build_stage)
    assert ("COPY", f"--from={build_name} /venv /venv") in final
    env = {}
    for keyword, args in final:
        if keyword == "ENV":
            env.update(pair.split("=", 1) for pair in shlex.split(args))
    assert env.get("PYTHONUNBUFFERED") == "1"
    assert env.get("PROMETHEUS_MULTIPROC_DIR") == "/tmp/metrics"  # under the writable /tmp mount
    assert ("EXPOSE", "8000") in final
    assert not [k for k, _ in instructions(DOCKERFILE) if k == "HEALTHCHECK"], \
        "no HEALTHCHECK: Kubernetes probes and compose healthchecks apply"
    text = " ".join(args for _, args in instructions(DOCKERFILE))  # comments may name them
    assert "useradd" not in text and "adduser" not in text and "/usr/local/bin" not in text, \
        "the Debian-built stand-in base has neither useradd nor /usr/local/bin/python"


# --- .dockerignore -----------------------------------------------------------------------------------------

def _segment_regex(segment: str) -> str:
    return "".join("[^/]*" if c == "*" else "[^/]" if c == "?" else c if c in "[]!-" else re.escape(c)
                   for c in segment)


def dockerignore_patterns() -> list[re.Pattern]:
    """.dockerignore lines as regexes with Docker's meaning: `*` stays in one folder, `**` spans any."""
    patterns = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        assert not line.startswith("!"), "exceptions are not modelled by this check"
        parts, rx = line.strip("/").split("/"), ""
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            rx += (".*" if last else "(?:[^/]+/)*") if part == "**" else _segment_regex(part) + ("" if last else "/")
        patterns.append(re.compile(rx))
    return patterns


def ignored(relative: str, patterns: list[re.Pattern]) -> bool:
    """True when the path or a folder above it matches (an excluded folder takes all it holds)."""
    parts = relative.split("/")
    return any(p.fullmatch("/".join(parts[:k])) for k in range(1, len(parts) + 1) for p in patterns)


@pytest.mark.parametrize("path", [
    ".venv/bin/python", ".venv-checkov/bin/checkov", ".tools/bin/helm", ".run/nginx/nginx.conf",
    ".data/postgres/PG_VERSION", "tests/unit/test_settings.py", ".git/HEAD", ".env",
    "services/auth/reportflow_auth/__pycache__/app.cpython-311.pyc", "services/auth/reportflow_auth.egg-info/PKG-INFO",
    ".pytest_cache/v/cache/lastfailed", ".ruff_cache/CACHEDIR.TAG",
])
def test_dockerignore_keeps_local_state_out(path):
    assert ignored(path, dockerignore_patterns())


def local_output(path: Path) -> bool:
    """Files a local install or run leaves beside the sources (rightly ignored)."""
    return any(p in ("__pycache__", "build", "dist") or p.endswith(".egg-info") for p in path.parts)


def test_dockerignore_keeps_everything_the_images_copy(service):
    patterns = dockerignore_patterns()
    for keyword, args in instructions(DOCKERFILE, service):
        if keyword != "COPY" or args.startswith("--from="):
            continue
        for source in shlex.split(args)[:-1]:
            assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
            assert not ignored(source, patterns), f"COPY {source}: excluded by .dockerignore"
            files = [source] if (ROOT / source).is_file() else [
                str(f.relative_to(ROOT)) for f in (ROOT / source).rglob("*") if f.is_file() and not local_output(f)]
            lost = [f for f in files if ignored(f, patterns)]
            assert not lost, f"package files excluded by .dockerignore: {lost[:5]}"


# --- what a regular install puts in /venv ----------------------------------------------------------------

def installed_and_left_out(package_dir: Path) -> tuple[set[Path], set[Path]]:
    """Files of the package's tree that setuptools (packages.find + package-data) installs, and the rest.

    The images install regular wheels, not the editable checkout the tests use, so a data file that no
    package-data glob names works in every test and is missing in the container."""
    setuptools_cfg = tomllib.loads((package_dir / "pyproject.toml").read_text()).get("tool", {}).get("setuptools", {})
    include = setuptools_cfg.get("packages", {}).get("find", {}).get("include", ["*"])
    packages = {}
    for init in sorted(package_dir.rglob("__init__.py")):
        folder = init.parent
        parts = folder.relative_to(package_dir).parts
        # find_packages descends only through folders that are packages themselves
        if not local_output(folder) and all((package_dir.joinpath(*parts[:k]) / "__init__.py").is_file()
                                            for k in range(1, len(parts))):
            name = ".".join(parts)
            if any(fnmatch.fnmatchcase(name, pattern) for pattern in include):
                packages[name] = folder
    installed = {f for folder in packages.values() for f in folder.glob("*.py")}
    for name, globs in setuptools_cfg.get("package-data", {}).items():
        for folder in (packages.values() if name == "*" else [packages[name]]):
            installed |= {f for g in globs for f in folder.glob(g) if f.is_file()}
    tops = {folder for name, folder in packages.items() if "." not in name}
    everything = {f for top in tops for f in top.rglob("*") if f.is_file() and not local_output(f)}
    return installed, everything - installed


@pytest.mark.parametrize("package", ("common", *SERVICES))
def test_every_package_file_is_installed(package):
    installed, left_out = installed_and_left_out(ROOT / "services" / package)
    assert installed, f"services/{package}: no package found"
    assert not left_out, (f"services/{package}: not installed into the image (add to [tool.setuptools.package-data]"
                          f" or make the folder a package): {sorted(str(f.relative_to(ROOT)) for f in left_out)}")
