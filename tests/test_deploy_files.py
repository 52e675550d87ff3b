"""Consistency of the Docker, Compose, Prometheus, Grafana and Kubernetes files.

Docker does not run where these tests run, so instead of starting the stack they check what
would break it: files parse, everything mounted or copied exists (and is in the build context),
images are pinned, and ports, topics, metric names and partition counts agree with
streamer/config.py, deploy/config/streamer.toml and streamer/metrics/.

Run as a script with ``--write-requirements`` to regenerate deploy/docker/requirements.txt from
the installed environment after changing pyproject.toml's dependencies.
"""

from __future__ import annotations

import fnmatch
import importlib.metadata
import json
import re
import shlex
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from streamer.config import flatten_tables

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
CONFIG = ROOT / "deploy" / "config" / "streamer.toml"
PROMETHEUS = ROOT / "deploy" / "prometheus" / "prometheus.yml"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "streamer.json"
DELIVERABILITY = GRAFANA / "dashboards" / "deliverability.json"
DASHBOARDS = (DASHBOARD, DELIVERABILITY)
K8S = ROOT / "deploy" / "k8s"
REQUIREMENTS = ROOT / "deploy" / "docker" / "requirements.txt"
METRICS_PACKAGE = ROOT / "streamer" / "metrics"
KAFKA_POM = ROOT / "deploy" / "kafka" / "pom.xml"

#: The metric names of the shared contract (what the dashboard may use besides streamer/metrics/).
CONTRACT_METRICS = frozenset(
    {
        "streamer_events_in_total",
        "streamer_events_out_total",
        "streamer_dlq_total",
        "streamer_classify_seconds",
        "streamer_cache_hits_total",
        "streamer_cache_misses_total",
        "streamer_in_flight",
        "streamer_paused_partitions",
        "streamer_backpressure_pauses_total",
        "streamer_rules_info",
        "streamer_rules_reloads_total",
        "streamer_rules_reload_failures_total",
        "streamer_consumer_lag",
    }
)
#: The deliverability dashboard's metric contract (exported by the worker's analytics).
DELIVERABILITY_METRICS = frozenset(
    {"streamer_outcomes_total", "streamer_labels_total", "streamer_rule_gaps"}
)
#: Suffixes Prometheus adds to a histogram's or counter's base name in the exposition.
SAMPLE_SUFFIXES = ("_bucket", "_sum", "_count", "_total", "_created")


# --- helpers ---------------------------------------------------------------------------------


def _yaml_docs(path: Path) -> list[Any]:
    with path.open(encoding="utf-8") as fh:
        return [d for d in yaml.safe_load_all(fh) if d is not None]


def _compose() -> dict[str, Any]:
    (doc,) = _yaml_docs(COMPOSE)
    return doc


def _k8s_objects() -> list[dict[str, Any]]:
    objs: list[dict[str, Any]] = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            objs.extend(_yaml_docs(path))
    return objs


def _k8s(kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [
        o
        for o in _k8s_objects()
        if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
    ]


def _interpolate(value: str) -> str:
    """Compose's ``${VAR:-default}`` / ``${VAR-default}`` with nothing set: the default."""
    return re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*:?-([^}]*)\}", r"\1", value)


def _compose_env(service: str) -> dict[str, str]:
    env = _compose()["services"][service].get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: _interpolate(str(v)) for k, v in env.items()}


def _compose_mounts(service: str) -> dict[str, Path]:
    """Container path -> host path of a service's bind mounts."""
    mounts: dict[str, Path] = {}
    for vol in _compose()["services"][service].get("volumes", []):
        src, dst = vol.split(":")[:2]
        if src.startswith((".", "/")):
            mounts[dst] = (ROOT / src).resolve()
    return mounts


def _host_path(service: str, container_path: str) -> Path:
    for dst, src in _compose_mounts(service).items():
        if container_path == dst or container_path.startswith(dst.rstrip("/") + "/"):
            return src / Path(container_path).relative_to(dst)
    raise AssertionError(f"{service}: {container_path} is not inside a mounted path")


def _settings_fields() -> set[str]:
    from streamer.config import Settings

    return set(Settings.model_fields)


def _env_field(var: str) -> str | None:
    """The Settings field an environment variable sets (None for STREAMER_CONFIG/RULES_DIR)."""
    if var in ("STREAMER_CONFIG", "STREAMER_RULES_DIR"):
        return None
    if var == "KAFKA_BOOTSTRAP":
        return "bootstrap"
    assert var.startswith("STREAMER_"), f"{var}: not a streamer setting"
    field = var.removeprefix("STREAMER_").lower()
    assert field in _settings_fields(), f"{var}: no Settings field {field!r} in streamer/config.py"
    return field


@pytest.fixture
def rules_file(tmp_path: Path) -> Path:
    # Settings validates rule files exist; these tests are about the other keys.
    path = tmp_path / "rules.toml"
    path.write_text('[rules]\nInvalidRecipient = ["user unknown"]\n', encoding="utf-8")
    return path


def _example_settings(rules_file: Path, **env: str) -> Any:
    from streamer.config import load_settings

    return load_settings(CONFIG, files=[rules_file], **env)


def _config_partitions() -> int:
    return int(flatten_tables(tomllib.loads(CONFIG.read_text(encoding="utf-8")))["partitions"])


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def _dockerfile_from_images() -> list[str]:
    args: dict[str, str] = {}
    images: list[str] = []
    stages: set[str] = set()
    for word, rest in _dockerfile_instructions():
        if word == "ARG" and "=" in rest:
            name, value = rest.split("=", 1)
            args.setdefault(name.strip(), value.strip())
        elif word == "FROM":
            parts = rest.split()
            image = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), parts[0])
            if image not in stages:
                images.append(image)
            if len(parts) == 3 and parts[1].upper() == "AS":
                stages.add(parts[2])
    return images


def _dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for word, rest in _dockerfile_instructions():
        if word == "ENV":
            for token in shlex.split(rest):
                key, _, value = token.partition("=")
                env[key] = value
    return env


def _dockerfile_copies() -> list[tuple[list[str], str]]:
    """(sources, destination) of COPY/ADD from the build context (not --from=stage)."""
    copies: list[tuple[list[str], str]] = []
    for word, rest in _dockerfile_instructions():
        if word in ("COPY", "ADD"):
            tokens = shlex.split(rest)
            if any(t.startswith("--from") for t in tokens):
                continue
            paths = [t for t in tokens if not t.startswith("--")]
            copies.append((paths[:-1], paths[-1]))
    return copies


def _image_rules_dir() -> str:
    """Where the image keeps the rules as plain files: copied from the build stage's copy of
    the build context's ``rules/`` (the one source the wheel's package data comes from too)."""
    build_copies = {dest.rstrip("/") for srcs, dest in _dockerfile_copies() if srcs == ["rules"]}
    assert build_copies == {"./rules"}, build_copies  # into WORKDIR /src of the build stage
    dests = []
    for word, rest in _dockerfile_instructions():
        tokens = shlex.split(rest)
        if word == "COPY" and "--from=build" in tokens and tokens[-2] == "/src/rules":
            dests.append(tokens[-1])
    (dest,) = dests
    return dest


def _dockerignore_patterns() -> list[str]:
    lines = DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]


def _excluded_from_context(rel: str) -> bool:
    """Docker's .dockerignore rule: the last matching pattern wins; a pattern that matches a
    parent directory matches everything below it; ``**/`` matches any number of directories."""
    parts = rel.strip("/").split("/")
    excluded = False
    for pattern in _dockerignore_patterns():
        negate = pattern.startswith("!")
        pat = pattern[1:] if negate else pattern
        pat = pat.strip("/")
        for i in range(1, len(parts) + 1):
            candidates = ["/".join(parts[:i])]
            if pat.startswith("**/"):
                candidates += ["/".join(parts[j:i]) for j in range(i)]
            glob = pat.removeprefix("**/") if pat.startswith("**/") else pat
            if any(fnmatch.fnmatchcase(c, glob) for c in candidates[1:]) or fnmatch.fnmatchcase(
                candidates[0], pat
            ):
                excluded = not negate
                break
    return excluded


def _image_tag(image: str) -> str | None:
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else None


def _all_images() -> dict[str, str]:
    """Where -> image, for every image the deploy files use."""
    images = {f"compose:{svc}": s["image"] for svc, s in _compose()["services"].items()}
    for obj in _k8s_objects():
        spec = obj.get("spec", {}).get("template", {}).get("spec", {})
        for c in spec.get("containers", []) + spec.get("initContainers", []):
            images[f"k8s:{obj['metadata']['name']}/{c['name']}"] = c["image"]
    for i, image in enumerate(_dockerfile_from_images()):
        images[f"Dockerfile:FROM#{i}"] = image
    return images


def _project_version() -> str:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "version"
    ]


def _metrics_port_everywhere() -> int:
    return int(tomllib.loads(CONFIG.read_text(encoding="utf-8"))["operations"]["metrics_port"])


# --- every file parses -----------------------------------------------------------------------


def _deploy_files(*suffixes: str) -> list[Path]:
    found = [p for p in (ROOT / "deploy").rglob("*") if p.suffix in suffixes]
    if ".yml" in suffixes:
        found.append(COMPOSE)
    return sorted(found)


def test_every_yaml_file_parses() -> None:
    files = _deploy_files(".yml", ".yaml")
    assert len(files) >= 10, files
    for path in files:
        docs = _yaml_docs(path)
        assert docs, f"{path}: empty"
        assert all(isinstance(d, dict) for d in docs), f"{path}: a document is not a mapping"


def test_every_json_file_parses() -> None:
    files = _deploy_files(".json")
    assert set(DASHBOARDS) <= set(files)
    for path in files:
        json.loads(path.read_text(encoding="utf-8"))


# --- docker-compose.yml ----------------------------------------------------------------------


def test_compose_has_the_whole_stack() -> None:
    services = _compose()["services"]
    assert set(services) >= {"kafka", "topics", "worker", "prometheus", "grafana"}
    assert services["topics"]["command"] == ["topics", "create"]
    assert services["topics"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert services["worker"]["command"] == ["worker"]
    assert (
        services["worker"]["depends_on"]["topics"]["condition"] == "service_completed_successfully"
    )
    # Long-running services report health; the one-shot topic creation just exits.
    for name, svc in services.items():
        if name != "topics":
            assert "healthcheck" in svc, f"{name}: no healthcheck"


def test_compose_worker_can_be_scaled() -> None:
    worker = _compose()["services"]["worker"]
    # A fixed name or a published host port would make `--scale worker=3` fail.
    assert "container_name" not in worker
    assert "ports" not in worker
    assert "hostname" not in worker


def test_compose_published_ports_bind_loopback() -> None:
    for name, svc in _compose()["services"].items():
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name}: {port} is not bound to 127.0.0.1"


def test_compose_mounted_and_built_paths_exist() -> None:
    for name, svc in _compose()["services"].items():
        for dst, src in _compose_mounts(name).items():
            assert src.exists(), f"{name}: mounts missing {src} at {dst}"
        build = svc.get("build")
        if build is not None:
            context = ROOT / (build if isinstance(build, str) else build.get("context", "."))
            dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile")
            assert (context / (dockerfile or "Dockerfile")).is_file(), f"{name}: no Dockerfile"


def test_compose_mounts_only_config_rules_and_dashboards() -> None:
    allowed = {
        CONFIG,
        ROOT / "rules",
        PROMETHEUS,
        ALERTS,
        GRAFANA / "provisioning",
        GRAFANA / "dashboards",
    }
    for name in _compose()["services"]:
        for src in _compose_mounts(name).values():
            assert src in allowed, f"{name}: unexpected bind mount {src}"


def test_compose_worker_env_names_are_settings_and_agree_with_config(
    clean_env: pytest.MonkeyPatch, rules_file: Path
) -> None:
    env = _compose_env("worker")
    for var in env:
        _env_field(var)  # asserts the name is a real setting
    assert _host_path("worker", env["STREAMER_CONFIG"]) == CONFIG
    for var, value in env.items():
        if var != "STREAMER_CONFIG":
            clean_env.setenv(var, value)
    from streamer.config import Settings

    in_container = _example_settings(rules_file)
    from_file = tomllib.loads(CONFIG.read_text(encoding="utf-8"))
    flat = flatten_tables(from_file)
    for key in ("input_topic", "output_topic", "dlq_topic", "group_id", "metrics_port"):
        assert getattr(in_container, key) == flat[key], key
    # The example file keeps the project's defaults for topic names and the metrics port.
    defaults = Settings.model_fields
    for key in ("input_topic", "output_topic", "group_id", "metrics_port"):
        assert flat[key] == defaults[key].default, key
    assert flat["dlq_topic"] == f"{defaults['input_topic'].default}.dlq"
    assert in_container.metrics_host == "0.0.0.0"
    assert _compose_env("topics") == env  # topic creation sees the same configuration


def test_compose_bootstrap_is_an_advertised_kafka_listener() -> None:
    kafka = _compose_env("kafka")
    advertised = {
        item.split("://", 1)[1]: item.split("://", 1)[0]
        for item in kafka["KAFKA_ADVERTISED_LISTENERS"].split(",")
    }
    bootstrap = _compose_env("worker")["STREAMER_BOOTSTRAP"]
    assert bootstrap in advertised, f"{bootstrap} not in {advertised}"
    listener = advertised[bootstrap]
    port = bootstrap.rsplit(":", 1)[1]
    assert f"{listener}://:{port}" in kafka["KAFKA_LISTENERS"].split(",")
    # Clients on the host reach the listener advertised (and published) on 127.0.0.1.
    (host_port,) = [a.rsplit(":", 1)[1] for a in advertised if a.startswith("127.0.0.1:")]
    assert f"127.0.0.1:{host_port}:{host_port}" in _compose()["services"]["kafka"]["ports"]


def test_compose_kafka_matches_the_local_broker_version() -> None:
    # The broker the tests and `deploy/dev.sh demo` run is pinned in deploy/kafka/pom.xml; the
    # Compose stack must run the same Kafka so that what was tested is what users get.
    assert KAFKA_POM.is_file(), "deploy/kafka/pom.xml pins the local broker version"
    match = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", KAFKA_POM.read_text())
    assert match, "deploy/kafka/pom.xml: no <kafka.version>"
    image = _compose()["services"]["kafka"]["image"]
    assert image == f"apache/kafka:{match.group(1)}"


# --- images ----------------------------------------------------------------------------------


def test_every_image_is_pinned() -> None:
    images = _all_images()
    assert len(images) >= 8, images
    for where, image in images.items():
        tag = _image_tag(image)
        assert tag, f"{where}: {image} has no tag"
        assert tag != "latest", f"{where}: {image} uses latest"
        assert re.search(r"\d", tag), f"{where}: {image}: tag {tag!r} names no version"


def test_streamer_image_tag_is_the_project_version() -> None:
    wanted = f"streamer:{_project_version()}"
    streamer_images = {w: i for w, i in _all_images().items() if i.startswith("streamer:")}
    assert {"compose:topics", "compose:worker"} <= set(streamer_images)
    assert set(streamer_images.values()) == {wanted}, streamer_images
    kustomization = _yaml_docs(K8S / "kustomization.yaml")[0]
    (override,) = [i for i in kustomization["images"] if i["name"] == "streamer"]
    assert override["newTag"] == _project_version()


# --- Dockerfile and build context ------------------------------------------------------------


def test_dockerfile_base_image_is_slim_python_311() -> None:
    *build, runtime = _dockerfile_from_images()
    python = r"python:3\.11\.\d+-slim-(\w+)"
    runtime_release = re.fullmatch(python, runtime)
    assert runtime_release, runtime
    for image in build:  # the build stage's Python, and the pinned Rust toolchain's image
        found = re.fullmatch(python, image) or re.fullmatch(r"rust:\d+\.\d+\.\d+-slim-(\w+)", image)
        assert found, image
        assert found.group(1) == runtime_release.group(1), f"{image}: another Debian release"


def _stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile's instructions per stage (from each FROM to the next)."""
    stages: list[list[tuple[str, str]]] = []
    for word, rest in _dockerfile_instructions():
        if word == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((word, rest))
    return stages


def test_dockerfile_builds_the_native_module_with_a_toolchain_the_runtime_lacks() -> None:
    # Without cargo setup.py leaves streamer._native out and the image would silently run the
    # Python path: the build stage has the toolchain, copies the crate, and fails the build
    # when the installed package lacks the module; the runtime stage copies only the venv.
    *_, build, runtime = _stages()
    toolchain_stage = [rest.split()[-1] for word, rest in _stages()[0] if word == "FROM"]
    assert toolchain_stage == ["rust"], toolchain_stage
    copies = [shlex.split(rest) for word, rest in build if word == "COPY"]
    assert ["--from=rust", "/usr/local/cargo", "/usr/local/cargo"] in copies
    assert ["native", "./native"] in copies
    runs = " ".join(rest for word, rest in build if word == "RUN")
    assert "STREAMER_REQUIRE_NATIVE=1 /opt/streamer/bin/python" in runs
    assert "n.check_required()" in runs
    runtime_copies = [shlex.split(rest) for word, rest in runtime if word == "COPY"]
    assert all(c[0] == "--from=build" for c in runtime_copies), runtime_copies
    assert not any("cargo" in " ".join(c) or "rustup" in " ".join(c) for c in runtime_copies)
    # the host's build output stays out: the image builds its own
    assert _excluded_from_context("native/target/release/lib_native.so")
    assert _excluded_from_context("streamer/_native.abi3.so")
    assert not _excluded_from_context("native/src/lib.rs")
    assert not _excluded_from_context("native/Cargo.lock")


def test_dockerfile_copy_sources_exist_and_are_in_the_build_context() -> None:
    copies = _dockerfile_copies()
    assert copies
    for sources, _dest in copies:
        for src in sources:
            path = ROOT / src
            assert path.exists(), f"COPY {src}: missing"
            assert not _excluded_from_context(src), f"COPY {src}: excluded by .dockerignore"
            if path.is_dir():
                inside = [p for p in path.rglob("*") if p.is_file()]
                assert inside, f"COPY {src}: empty directory"
                kept = [p for p in inside if not _excluded_from_context(str(p.relative_to(ROOT)))]
                assert kept, f"COPY {src}: .dockerignore excludes every file"


def test_dockerignore_keeps_local_state_out_of_the_context() -> None:
    for rel in (
        ".venv/bin/python",
        ".git/HEAD",
        "var/kafka/log",
        "tests/test_config.py",
        "build/lib/streamer/config.py",
        "dist/streamer-0.1.0.whl",
        ".pytest_cache/README.md",
        "streamer/.mypy_cache/x.json",
    ):
        assert _excluded_from_context(rel), rel
    for rel in ("streamer/config.py", "streamer/cli/__init__.py", "pyproject.toml", "setup.py"):
        assert not _excluded_from_context(rel), rel
    for rel in ("rules/iana.toml", "deploy/kafka/pom.xml", "LICENSE", "MANIFEST.in"):
        assert not _excluded_from_context(rel), rel
    assert _excluded_from_context("streamer/__pycache__/config.cpython-311.pyc")


def test_dockerfile_installs_the_wheel_pip_install_builds() -> None:
    # The image holds the same package as `pip install .`: built as a wheel from the same
    # files (setup.py adds rules/ and deploy/kafka/ as package data), installed without deps.
    sources = {src for srcs, _dest in _dockerfile_copies() for src in srcs}
    needs = (
        "pyproject.toml",
        "setup.py",
        "MANIFEST.in",
        "native",
        "streamer",
        "rules",
        "deploy/kafka",
    )
    for needed in needs:
        assert needed in sources, f"the image build does not copy {needed}"
    runs = " ".join(rest for word, rest in _dockerfile_instructions() if word == "RUN")
    assert re.search(r"pip wheel --no-deps --wheel-dir (\S+) \.", runs), runs
    assert re.search(r"pip install --no-compile --no-deps \S+/streamer-\*\.whl", runs), runs


def test_dockerfile_runs_the_worker_as_non_root() -> None:
    instructions = dict(_dockerfile_instructions())  # the last of each kind wins, as in Docker
    assert json.loads(instructions["ENTRYPOINT"]) == ["streamer"]
    assert json.loads(instructions["CMD"]) == ["worker"]
    assert instructions["USER"] not in ("root", "0")
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "streamer" in scripts


def test_dockerfile_rules_dir_and_metrics_port() -> None:
    env = _dockerfile_env()
    rules_dest = _image_rules_dir()
    assert env["STREAMER_RULES_DIR"] == rules_dest
    # Compose mounts the repository's rules over the copied ones, at the same place.
    assert _compose_mounts("worker")[rules_dest] == ROOT / "rules"
    exposed = {
        int(p.split("/")[0])
        for w, r in _dockerfile_instructions()
        if w == "EXPOSE"
        for p in r.split()
    }
    assert exposed == {_metrics_port_everywhere()}
    assert int(env["STREAMER_METRICS_PORT"]) == _metrics_port_everywhere()
    for var in env:
        if var.startswith("STREAMER_"):
            _env_field(var)


def _runtime_closure() -> dict[str, str]:
    """Installed name -> version of pyproject's dependencies and everything they require."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    found: dict[str, str] = {}
    extras_of: dict[str, set[str]] = {}
    todo = [Requirement(d) for d in deps]
    while todo:
        req = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        name = canonicalize_name(req.name)
        extras = set(req.extras)
        if name in found and extras <= extras_of[name]:
            continue
        extras_of[name] = extras_of.get(name, set()) | extras
        dist = importlib.metadata.distribution(req.name)
        found[name] = dist.version
        for spec in dist.requires or []:
            sub = Requirement(spec)
            if sub.marker is None or any(
                sub.marker.evaluate({"extra": e}) for e in (extras_of[name] or {""})
            ):
                todo.append(Requirement(str(sub).split(";")[0]))
    return found


def _pinned_requirements() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in REQUIREMENTS.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            match = re.fullmatch(r"([A-Za-z0-9._-]+)==([A-Za-z0-9.+!-]+)", line)
            assert match, f"{REQUIREMENTS.name}: {line!r} is not pinned as name==version"
            pins[canonicalize_name(match.group(1))] = match.group(2)
    return pins


def test_image_dependencies_are_pinned_and_agree_with_pyproject() -> None:
    pins = _pinned_requirements()
    for dep in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]:
        req = Requirement(dep)
        (spec,) = req.specifier
        assert spec.operator == "==", f"pyproject.toml: {dep} is not pinned"
        assert pins.get(canonicalize_name(req.name)) == spec.version, (
            f"{REQUIREMENTS.relative_to(ROOT)}: {req.name} must be {spec.version}; regenerate it "
            "with `.venv/bin/python tests/test_deploy_files.py --write-requirements`"
        )
    missing = set(_runtime_closure()) - set(pins)
    assert not missing, f"not pinned for the image (regenerate the file): {sorted(missing)}"


# --- Prometheus and Grafana ------------------------------------------------------------------


def test_prometheus_scrapes_every_worker_on_its_metrics_port() -> None:
    (config,) = _yaml_docs(PROMETHEUS)
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "streamer"]
    (sd,) = job["dns_sd_configs"]
    assert sd["type"] == "A"
    assert sd["names"] == ["worker"]
    assert "worker" in _compose()["services"]
    port = int(_compose_env("worker")["STREAMER_METRICS_PORT"])
    assert sd["port"] == port == _metrics_port_everywhere()
    assert _host_path("prometheus", "/etc/prometheus/prometheus.yml") == PROMETHEUS


def test_prometheus_rule_files_are_mounted_where_the_config_names_them() -> None:
    # Prometheus resolves rule_files against the directory of its config file.
    (config,) = _yaml_docs(PROMETHEUS)
    assert config["rule_files"] == [ALERTS.name]
    for name in config["rule_files"]:
        assert (PROMETHEUS.parent / name).is_file(), name
        assert _host_path("prometheus", f"/etc/prometheus/{name}") == PROMETHEUS.parent / name


def test_grafana_provisioning_points_at_prometheus_and_the_dashboards() -> None:
    (ds_file,) = _yaml_docs(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")
    (ds,) = ds_file["datasources"]
    assert ds["type"] == "prometheus"
    assert ds["url"] == "http://prometheus:9090"
    assert any(str(p).endswith(":9090") for p in _compose()["services"]["prometheus"]["ports"])
    (prov,) = _yaml_docs(GRAFANA / "provisioning" / "dashboards" / "streamer.yml")
    (provider,) = prov["providers"]
    assert _host_path("grafana", provider["options"]["path"]) == GRAFANA / "dashboards"
    home = _compose_env("grafana")["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert _host_path("grafana", home) == DASHBOARD
    assert _host_path("grafana", "/etc/grafana/provisioning") == GRAFANA / "provisioning"
    # Both dashboards sit in the provisioned folder (the provider loads every JSON file there).
    assert all(p.parent == GRAFANA / "dashboards" for p in DASHBOARDS)
    # The `datasource` variable resolves to the default Prometheus: the provisioned one here.
    assert ds["isDefault"] is True
    uids = [json.loads(p.read_text())["uid"] for p in DASHBOARDS]
    assert len(set(uids)) == len(uids)


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_is_portable(path: Path) -> None:
    """Loads into any Grafana: the datasource is a variable (and an import input), never a uid."""
    dash = json.loads(path.read_text(encoding="utf-8"))
    (ds_input,) = [i for i in dash["__inputs"] if i["type"] == "datasource"]
    assert ds_input["pluginId"] == "prometheus"
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    refs = list(_datasource_refs(dash))
    assert refs, "no panel names its datasource"
    for ref in refs:
        assert ref == {"type": "prometheus", "uid": "${datasource}"}, ref
    # Everything a query names is a variable of the dashboard (or one Grafana defines).
    builtin = {"__rate_interval", "__interval", "__range"}
    for query in _dashboard_queries(path):
        for name in re.findall(r"\$\{?(\w+)", query):
            assert name in variables or name in builtin, f"{path.name}: ${name} in {query}"


def _datasource_refs(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        if isinstance(node.get("datasource"), dict):
            yield node["datasource"]
        for value in node.values():
            yield from _datasource_refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _datasource_refs(value)


def _dashboard_queries(path: Path = DASHBOARD) -> list[str]:
    """Every PromQL expression of a dashboard's panels, and its query variables' queries."""
    dash = json.loads(path.read_text(encoding="utf-8"))
    queries = []
    for panel in dash["panels"]:
        if panel["type"] == "row":
            continue
        assert panel.get("targets"), f"panel {panel['title']!r} has no query"
        queries += [t["expr"] for t in panel["targets"]]
    for var in dash.get("templating", {}).get("list", []):
        if var["type"] == "query":
            query = var.get("query")
            queries.append(query["query"] if isinstance(query, dict) else query)
    return queries


def _defined_metric_names() -> set[str]:
    """Metric names declared in streamer/metrics/ (string literals naming streamer_* metrics)."""
    source = "\n".join(p.read_text(encoding="utf-8") for p in METRICS_PACKAGE.glob("*.py"))
    return set(re.findall(r"""["'](streamer_[a-z0-9_]+)["']""", source))


def _is_defined(name: str, defined: set[str]) -> bool:
    candidates = {name} | {name.removesuffix(s) for s in SAMPLE_SUFFIXES if name.endswith(s)}
    # prometheus_client drops a counter's "_total" from its name and adds it back on exposition.
    candidates |= {c + "_total" for c in set(candidates)}
    return bool(candidates & defined)


def test_dashboard_queries_use_only_defined_metrics() -> None:
    queries = [q for path in DASHBOARDS for q in _dashboard_queries(path)]
    used = {m for q in queries for m in re.findall(r"\bstreamer_[a-z0-9_]+\b", q)}
    for query in queries:
        assert re.search(r"\bstreamer_[a-z0-9_]+\b", query) or 'up{job="$job"}' in query, query
    if METRICS_PACKAGE.is_dir():
        defined = _defined_metric_names()
        assert defined, "streamer/metrics/ names no streamer_* metric"
    else:
        defined = set(CONTRACT_METRICS)
    undefined = sorted(m for m in used if not _is_defined(m, defined))
    assert not undefined, f"dashboard queries metrics nobody exports: {undefined}"
    # The panels the issue asks for are all there.
    for metric in (
        "streamer_events_out_total",
        "streamer_dlq_total",
        "streamer_consumer_lag",
        "streamer_cache_hits_total",
        "streamer_classify_seconds_bucket",
        "streamer_rules_reload_failures_total",
        "streamer_in_flight",
        "streamer_paused_partitions",
        "streamer_top_sites",
    ):
        assert metric in used, f"no panel shows {metric}"
    deliverability = {
        m for q in _dashboard_queries(DELIVERABILITY) for m in re.findall(r"\bstreamer_\w+", q)
    }
    assert deliverability >= DELIVERABILITY_METRICS


def test_contract_metrics_are_defined_by_the_worker() -> None:
    assert METRICS_PACKAGE.is_dir(), "streamer/metrics/ defines the exported metrics"
    defined = _defined_metric_names()
    missing = sorted(m for m in CONTRACT_METRICS if not _is_defined(m, defined))
    assert not missing, f"streamer/metrics/ lacks contract metrics: {missing}"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_panels_have_unique_ids_and_do_not_overlap(path: Path) -> None:
    panels = json.loads(path.read_text(encoding="utf-8"))["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    cells: dict[tuple[int, int], str] = {}
    for panel in panels:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, panel["title"]  # Grafana's grid
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{panel['title']!r} overlaps {cells[(x, y)]!r}"
                cells[(x, y)] = panel["title"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_job_variable_matches_prometheus_and_kubernetes_jobs(path: Path) -> None:
    """No hard-coded job: every selector filters on the `job` variable, whose default is the
    job docker-compose's Prometheus and the Kubernetes ServiceMonitor both give the workers."""
    dash = json.loads(path.read_text(encoding="utf-8"))
    (job_var,) = [v for v in dash["templating"]["list"] if v["name"] == "job"]
    default = job_var["current"]["value"]
    (config,) = _yaml_docs(PROMETHEUS)
    assert default in {j["job_name"] for j in config["scrape_configs"]}
    (monitor,) = _k8s("ServiceMonitor")
    (service,) = _k8s("Service", "streamer-metrics")
    assert service["metadata"]["labels"][monitor["spec"]["jobLabel"]] == default
    for query in _dashboard_queries(path):
        if query.startswith("label_values(") and query.endswith(", job)"):
            continue  # the job variable's own query
        selectors = re.findall(r"\b(?:streamer_\w+|up)\s*(\{[^}]*\})?", query)
        assert selectors, query
        for sel in selectors:
            assert 'job="$job"' in sel, f'{path.name}: a selector without job="$job": {query}'


# --- Kubernetes ------------------------------------------------------------------------------


def _configmap_toml() -> str:
    (cm,) = _k8s("ConfigMap", "streamer-config")
    return cm["data"]["streamer.toml"]


def test_k8s_configmap_config_is_the_example_config() -> None:
    assert _configmap_toml() == CONFIG.read_text(encoding="utf-8")


def test_k8s_config_keys_are_valid_settings(
    clean_env: pytest.MonkeyPatch, rules_file: Path
) -> None:
    flat = flatten_tables(tomllib.loads(_configmap_toml()))
    unknown = set(flat) - _settings_fields()
    assert not unknown, f"not Settings fields: {sorted(unknown)}"
    _example_settings(rules_file)  # and the values validate


def _deployment() -> dict[str, Any]:
    (dep,) = _k8s("Deployment", "streamer-worker")
    return dep


def _worker_container() -> dict[str, Any]:
    (container,) = _deployment()["spec"]["template"]["spec"]["containers"]
    return container


def _container_env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}


def test_k8s_replicas_do_not_exceed_partitions() -> None:
    spec = _deployment()["spec"]
    partitions = int(flatten_tables(tomllib.loads(_configmap_toml()))["partitions"])
    surge = spec.get("strategy", {}).get("rollingUpdate", {}).get("maxSurge", 0)
    assert isinstance(surge, int), "maxSurge as a number of pods"
    assert spec["replicas"] >= 1 and spec["replicas"] + surge <= partitions
    (scaled,) = _k8s("ScaledObject")
    assert scaled["spec"]["maxReplicaCount"] <= partitions
    assert 1 <= scaled["spec"]["minReplicaCount"] <= scaled["spec"]["maxReplicaCount"]


def test_k8s_autoscaler_watches_the_workers_group_and_topic() -> None:
    (scaled,) = _k8s("ScaledObject")
    assert scaled["spec"]["scaleTargetRef"]["name"] == _deployment()["metadata"]["name"]
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "kafka"
    flat = flatten_tables(tomllib.loads(_configmap_toml()))
    assert trigger["metadata"]["topic"] == flat["input_topic"]
    assert trigger["metadata"]["consumerGroup"] == flat["group_id"]
    # KEDA reads the bootstrap address from the workers' environment: set in one place.
    assert "bootstrapServers" not in trigger["metadata"]
    assert trigger["metadata"]["bootstrapServersFromEnv"] == "STREAMER_BOOTSTRAP"
    assert "STREAMER_BOOTSTRAP" in _container_env(_worker_container())
    assert trigger["metadata"].get("allowIdleConsumers", "false") == "false"


def test_k8s_env_names_are_settings() -> None:
    for obj in _k8s_objects():
        spec = obj.get("spec", {}).get("template", {}).get("spec", {})
        for container in spec.get("containers", []):
            for var in _container_env(container):
                _env_field(var)


def test_k8s_volumes_and_paths_resolve() -> None:
    configmaps = {cm["metadata"]["name"]: cm for cm in _k8s("ConfigMap")}
    for obj in _k8s_objects():
        pod = obj.get("spec", {}).get("template", {}).get("spec")
        if pod is None:
            continue
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for container in pod["containers"]:
            mounts = {m["mountPath"]: volumes[m["name"]] for m in container.get("volumeMounts", [])}
            for path in mounts:  # a ConfigMap volume is read-only: nothing can mount inside it
                for other, vol in mounts.items():
                    if "configMap" in vol and path != other:
                        assert not path.startswith(other.rstrip("/") + "/"), (path, other)
            env = _container_env(container)
            for var, key_of in (("STREAMER_CONFIG", True), ("STREAMER_RULES_DIR", False)):
                if var not in env:
                    continue
                target = Path(env[var])
                mount_dir = target.parent if key_of else target
                vol = mounts[str(mount_dir)]
                cm_name = vol["configMap"]["name"]
                assert cm_name in configmaps, f"{cm_name}: no such ConfigMap"
                if key_of:
                    assert target.name in configmaps[cm_name]["data"]


def test_k8s_metrics_port_agrees_everywhere() -> None:
    port = _metrics_port_everywhere()
    container = _worker_container()
    (metrics,) = [p for p in container["ports"] if p["name"] == "metrics"]
    assert metrics["containerPort"] == port
    assert int(_container_env(container)["STREAMER_METRICS_PORT"]) == port
    assert (
        int(_deployment()["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"])
        == port
    )
    (service,) = _k8s("Service", "streamer-metrics")
    (svc_port,) = service["spec"]["ports"]
    assert svc_port["port"] == port and svc_port["targetPort"] == "metrics"
    assert service["spec"]["clusterIP"] == "None"  # every pod is an endpoint of its own
    labels = _deployment()["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert _deployment()["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_k8s_topics_job_and_worker_share_bootstrap_and_config() -> None:
    (job,) = _k8s("Job", "streamer-topics")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["topics", "create"]
    job_env = {e["name"]: e for e in container["env"]}
    worker_env = {e["name"]: e for e in _worker_container()["env"]}
    assert job_env["STREAMER_BOOTSTRAP"] == worker_env["STREAMER_BOOTSTRAP"]
    assert job_env["STREAMER_CONFIG"] == worker_env["STREAMER_CONFIG"]
    assert _worker_container()["args"] == ["worker"]


def test_k8s_kustomization_lists_existing_files() -> None:
    (kustomization,) = _yaml_docs(K8S / "kustomization.yaml")
    for resource in kustomization["resources"]:
        assert (K8S / resource).is_file(), resource
    # KEDA's object, the ServiceMonitor and the PrometheusRule need CRDs (KEDA's, the Prometheus
    # Operator's): applied separately, and said so in the files.
    for needs_crds in ("keda-scaledobject.yaml", "servicemonitor.yaml", "prometheusrule.yaml"):
        assert (K8S / needs_crds).is_file(), needs_crds
        assert needs_crds not in kustomization["resources"]
        assert (
            f"kubectl apply -n streamer -f deploy/k8s/{needs_crds}"
            in (K8S / needs_crds).read_text()
        )


def test_k8s_service_monitor_scrapes_the_metrics_service() -> None:
    (monitor,) = _k8s("ServiceMonitor")
    (service,) = _k8s("Service", "streamer-metrics")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    (endpoint,) = monitor["spec"]["endpoints"]
    (svc_port,) = service["spec"]["ports"]
    assert endpoint["port"] == svc_port["name"]
    annotations = _deployment()["spec"]["template"]["metadata"]["annotations"]
    assert endpoint["path"] == annotations["prometheus.io/path"] == "/metrics"


def test_k8s_rules_configmap_loads_site_rules_then_the_shipped_ones(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import streamer.config as config

    (cm,) = _k8s("ConfigMap", "streamer-rules")
    for name, text in cm["data"].items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    # What the pod sees: STREAMER_RULES_DIR is the ConfigMap's mount point.
    monkeypatch.setattr(config, "SHIPPED_RULES_DIR", tmp_path)
    in_pod = config.shipped_rule_files()
    image_rules = _image_rules_dir()
    site = [p for p in in_pod if p.parent == tmp_path]
    shipped = [p for p in in_pod if p.parent != tmp_path]
    assert site and all(p.exists() for p in site)
    assert all(str(p).startswith(image_rules + "/") for p in shipped), shipped
    monkeypatch.setattr(config, "SHIPPED_RULES_DIR", ROOT / "rules")
    repo_shipped = config.shipped_rule_files()
    expected = "\n".join(f"    {image_rules}/{p.name}" for p in repo_shipped)
    assert [p.name for p in shipped] == [p.name for p in repo_shipped], (
        "deploy/k8s/configmap.yaml: load-order.txt must list, after the site files, the shipped "
        f"rules of rules/load-order.txt in the same order:\n{expected}"
    )
    files = site + [ROOT / "rules" / p.name for p in shipped]
    from streamer.classifier import Classifier

    # Site rules come first, so the example rule wins over the shipped status-code rules.
    line = "554 5.7.1 <bob@example.com>: message rejected by content filter (spam score 9.1)"
    ours = Classifier.from_files(files).classify(line)
    assert ours.rule is not None and Path(ours.rule.file).parent == tmp_path
    assert ours.label == "SpamContent"


def _kustomize() -> list[dict[str, Any]]:
    """What ``kubectl kustomize deploy/k8s`` renders, for the features used here: the listed
    resources, the namespace set on every namespaced object, the image tags replaced."""
    (kustomization,) = _yaml_docs(K8S / "kustomization.yaml")
    assert set(kustomization) <= {"apiVersion", "kind", "namespace", "resources", "images"}, (
        "kustomization.yaml uses a feature _kustomize() does not render"
    )
    tags = {i["name"]: i["newTag"] for i in kustomization.get("images", [])}
    rendered = []
    for resource in kustomization["resources"]:
        for obj in _yaml_docs(K8S / resource):
            obj = json.loads(json.dumps(obj))
            if obj["kind"] != "Namespace":
                obj["metadata"]["namespace"] = kustomization["namespace"]
            pod = obj.get("spec", {}).get("template", {}).get("spec", {})
            for c in pod.get("containers", []):
                name = c["image"].split(":", 1)[0]
                if name in tags:
                    c["image"] = f"{name}:{tags[name]}"
            rendered.append(obj)
    return rendered


def _rendered(kind: str) -> list[dict[str, Any]]:
    return [o for o in _kustomize() if o["kind"] == kind]


def _pods() -> dict[str, dict[str, Any]]:
    return {
        o["metadata"]["name"]: o["spec"]["template"]
        for o in _kustomize()
        if o["kind"] in ("Deployment", "Job")
    }


def test_k8s_renders_every_object_into_the_namespace() -> None:
    objs = _kustomize()
    kinds = {o["kind"] for o in objs}
    assert kinds >= {
        "Namespace",
        "ServiceAccount",
        "ConfigMap",
        "Job",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "NetworkPolicy",
    }
    (ns,) = _rendered("Namespace")
    assert all(o["metadata"].get("namespace") == ns["metadata"]["name"] for o in objs if o != ns)
    names = [(o["kind"], o["metadata"]["name"]) for o in objs]
    assert len(names) == len(set(names)), names


def test_k8s_pods_use_a_service_account_without_api_token() -> None:
    (sa,) = _rendered("ServiceAccount")
    assert sa["automountServiceAccountToken"] is False
    for name, pod in _pods().items():
        assert pod["spec"]["serviceAccountName"] == sa["metadata"]["name"], name
        assert pod["spec"]["automountServiceAccountToken"] is False, name


def test_k8s_disruption_budget_covers_the_workers() -> None:
    (pdb,) = _rendered("PodDisruptionBudget")
    labels = _deployment()["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"]["maxUnavailable"] == 1


def _kafka_port() -> int:
    (cm,) = _k8s("ConfigMap", "streamer-kafka")
    ports = {int(hp.rsplit(":", 1)[1]) for hp in cm["data"]["bootstrap"].split(",")}
    (port,) = ports
    return port


def test_k8s_network_policies_let_in_the_scrape_and_out_kafka_and_dns() -> None:
    policies = {p["metadata"]["name"]: p["spec"] for p in _rendered("NetworkPolicy")}
    worker_labels = _deployment()["spec"]["template"]["metadata"]["labels"]
    ingress = [p for p in policies.values() if "Ingress" in p["policyTypes"]]
    (inbound,) = ingress
    assert inbound["podSelector"]["matchLabels"].items() <= worker_labels.items()
    (rule,) = inbound["ingress"]
    assert [p["port"] for p in rule["ports"]] == ["metrics"]
    (outbound,) = [p for p in policies.values() if "Egress" in p["policyTypes"]]
    for name, pod in _pods().items():  # every streamer pod is covered by the egress policy
        selector = outbound["podSelector"]["matchLabels"]
        assert selector.items() <= pod["metadata"]["labels"].items(), name
    allowed = {
        (p["port"], p.get("protocol", "TCP")) for r in outbound["egress"] for p in r["ports"]
    }
    assert allowed == {(_kafka_port(), "TCP"), (53, "UDP"), (53, "TCP")}


def test_k8s_bootstrap_is_set_in_one_place() -> None:
    (cm,) = _k8s("ConfigMap", "streamer-kafka")
    address = cm["data"]["bootstrap"]
    files = [p.name for p in K8S.glob("*.yaml") if address in p.read_text(encoding="utf-8")]
    assert files == ["kafka.yaml"], files
    for name, pod in _pods().items():
        (container,) = pod["spec"]["containers"]
        (entry,) = [e for e in container["env"] if e["name"] == "STREAMER_BOOTSTRAP"]
        ref = entry["valueFrom"]["configMapKeyRef"]
        assert (ref["name"], ref["key"]) == ("streamer-kafka", "bootstrap"), name


def test_k8s_resources_match_the_sizing_model() -> None:
    worker = _worker_container()["resources"]
    assert str(worker["requests"]["cpu"]) in ("1", "1000m")  # README: one core per worker
    assert "cpu" not in worker.get("limits", {})  # no throttling below the one core
    (job,) = _k8s("Job", "streamer-topics")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    assert "memory" in container["resources"]["limits"]


def test_k8s_liveness_checks_the_event_loop() -> None:
    # /status is served by Faust's web server on the worker's event loop (the metrics endpoint
    # is a thread that answers even when the loop is stuck).
    container = _worker_container()
    env = _container_env(container)
    (web,) = [p for p in container["ports"] if p["name"] == "web"]
    assert int(env["STREAMER_WEB_PORT"]) == web["containerPort"]
    assert env["STREAMER_WEB_HOST"] == "0.0.0.0"
    assert container["livenessProbe"]["httpGet"] == {"path": "/status", "port": "web"}
    runloop = (ROOT / "streamer" / "worker" / "runloop.py").read_text(encoding="utf-8")
    assert '@app.page("/status")' in runloop


# --- regeneration ----------------------------------------------------------------------------


def _write_requirements() -> None:
    header = [
        line
        for line in REQUIREMENTS.read_text(encoding="utf-8").splitlines()
        if line.startswith("#")
    ]
    pins = [f"{name}=={version}" for name, version in sorted(_runtime_closure().items())]
    REQUIREMENTS.write_text("\n".join([*header, *pins]) + "\n", encoding="utf-8")
    print(f"wrote {len(pins)} pins to {REQUIREMENTS.relative_to(ROOT)}")


if __name__ == "__main__":
    if sys.argv[1:] == ["--write-requirements"]:
        _write_requirements()
    else:
        sys.exit(f"usage: {sys.argv[0]} --write-requirements")
