"""The Kubernetes manifests (deploy/k8s): both overlays render with deploy/k8s/render.py,
every object is valid against the Kubernetes 1.30 schemas (strict: no unknown field), and the
manifests say what the services need; the renderer builds kustomize's subset as kustomize
does and refuses the rest. Needs neither a cluster nor the local PostgreSQL and RabbitMQ."""

from __future__ import annotations

import base64
import importlib
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
BACKENDS = ("registration", "credit", "inspection", "subsidy", "dashboard")
OVERLAYS = ("local", "production")
NAMESPACES = {"local": "tuoyu-local", "production": "tuoyu"}
K8S_VERSION = "1.30.0"
RELEASE = "0.15.0"
WORKLOADS = ("Deployment", "StatefulSet", "Job")


def _load_renderer() -> Any:
    spec = importlib.util.spec_from_file_location("tuoyu_deploy_k8s_render", K8S / "render.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


render = _load_renderer()
KustomizeError = render.KustomizeError


def secret_keys(name: str) -> set[str]:
    """The keys a service's Secret must hold (what tuoyu_shared.config and the services read
    in production)."""
    up = name.upper()
    keys = {f"TUOYU_{up}_DATABASE_URL", f"TUOYU_{up}_AMQP_URI", f"TUOYU_{up}_BLIND_INDEX_KEY",
            f"TUOYU_{up}_KEKS", f"TUOYU_{up}_AUDIT_SIGNING_KEYS"}
    if name == "credit":
        keys |= {"TUOYU_PUBLIC_SECURITY_URL", "TUOYU_PUBLIC_SECURITY_CLIENT_ID",
                 "TUOYU_PUBLIC_SECURITY_CLIENT_SECRET"}
    return keys


GATEWAY_SECRET_KEYS = {"TUOYU_GATEWAY_AMQP_URI", "TUOYU_AUTH_SIGNING_KEY",
                       "TUOYU_AUTH_SIGNING_KID", "TUOYU_AUTH_PUBLIC_KEYS"}
#: Only production needs these (the local overlay keeps the evidence files in a directory).
PRODUCTION_ONLY_KEYS = {"inspection-secrets": {
    "TUOYU_INSPECTION_BLOB_S3_ENDPOINT", "TUOYU_INSPECTION_BLOB_S3_BUCKET",
    "TUOYU_INSPECTION_BLOB_S3_ACCESS_KEY", "TUOYU_INSPECTION_BLOB_S3_SECRET_KEY"}}
EXPECTED_SECRET_KEYS = {**{f"{name}-secrets": secret_keys(name) for name in BACKENDS},
                        "gateway-secrets": GATEWAY_SECRET_KEYS}


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    return {overlay: render.render(K8S / "overlays" / overlay) for overlay in OVERLAYS}


def find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["spec"]["template"]["spec"]


def containers(doc: dict[str, Any], init: bool = False) -> list[dict[str, Any]]:
    spec = pod_spec(doc)
    return list(spec.get("containers", [])) + (list(spec.get("initContainers", []))
                                               if init else [])


def validation_errors(docs: list[dict[str, Any]], where: str) -> list[str]:
    errors = []
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            path = ".".join(str(p) for p in e.path)
            errors.append(f"{where}: {doc['kind']}/{doc['metadata']['name']}: {path}: "
                          f"{e.message}")
        except kubernetes_validate.SchemaNotFoundError as e:
            errors.append(f"{where}: {e.message}")
    return errors


# ---- the schemas ---------------------------------------------------------------------------

@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_rendered_object_is_valid(rendered, overlay):
    docs = rendered[overlay]
    assert len(docs) > 50
    assert validation_errors(docs, overlay) == []


def test_every_base_file_is_valid_alone():
    files = sorted(p for p in (K8S / "base").rglob("*.yaml") if p.name != "kustomization.yaml")
    files += sorted(p for p in (K8S / "overlays").rglob("*.yaml")
                    if p.name != "kustomization.yaml")
    assert len(files) > 20
    errors = []
    for path in files:
        docs = render.load_resources(path)
        assert docs, path
        errors += validation_errors(docs, str(path.relative_to(K8S)))
    assert errors == []


def test_every_kustomization_is_built_by_the_renderer():
    """Each base builds alone too (kubectl apply -k deploy/k8s/base/<name> would)."""
    for path in sorted((K8S / "base").glob("*/kustomization.yaml")):
        assert render.render(path.parent), path


# ---- what the manifests say ----------------------------------------------------------------

@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_is_probed_limited_and_unprivileged(rendered, overlay):
    problems = []
    for doc in rendered[overlay]:
        if doc["kind"] not in WORKLOADS:
            continue
        spec = pod_spec(doc)
        pod_security = spec.get("securityContext", {})
        for c in containers(doc, init=True):
            where = f"{doc['kind']}/{doc['metadata']['name']}/{c['name']}"
            is_init = c in spec.get("initContainers", [])
            if doc["kind"] != "Job" and not is_init:
                for probe in ("livenessProbe", "readinessProbe"):
                    if probe not in c:
                        problems.append(f"{where}: no {probe}")
            resources = c.get("resources", {})
            for bound in ("requests", "limits"):
                for resource in ("cpu", "memory"):
                    if resource not in resources.get(bound, {}):
                        problems.append(f"{where}: no {bound}.{resource}")
            security = c.get("securityContext", {})
            if not security.get("runAsNonRoot", pod_security.get("runAsNonRoot")):
                problems.append(f"{where}: not runAsNonRoot")
            if security.get("runAsUser", pod_security.get("runAsUser", 0)) == 0:
                problems.append(f"{where}: runs as root")
            if security.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{where}: allowPrivilegeEscalation not false")
            if security.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{where}: root filesystem writable")
            if security.get("capabilities", {}).get("drop") != ["ALL"]:
                problems.append(f"{where}: capabilities not dropped")
            seccomp = security.get("seccompProfile") or pod_security.get("seccompProfile")
            if (seccomp or {}).get("type") != "RuntimeDefault":
                problems.append(f"{where}: no RuntimeDefault seccomp profile (the namespace "
                                "enforces the restricted Pod Security Standard)")
            mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
            if c["image"].startswith("tuoyu/") and "/tmp" not in mounts:
                problems.append(f"{where}: read-only root filesystem but no /tmp volume")
    assert problems == []


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_processes_run_the_entry_points_the_services_have(rendered, overlay):
    from tuoyu_shared.migrate import PROCESSES

    assert {"serve", "worker"} <= set(PROCESSES)
    docs = rendered[overlay]
    for name in BACKENDS:
        package = ROOT / "services" / name / f"tuoyu_{name}"
        main = package / "__main__.py"
        assert main.is_file(), main
        assert f'service_main("{name}")' in main.read_text(encoding="utf-8")
        assert (package / "worker.py").is_file()  # what `worker` runs (PROCESSES)
        for deployment, command, process, port in (
                (name, "serve", "service", 8000), (f"{name}-worker", "worker", "worker", 9100)):
            doc = find(docs, "Deployment", deployment)
            [c] = containers(doc)
            assert c["command"] == ["python", "-m", f"tuoyu_{name}", command], deployment
            assert c["image"] == f"tuoyu/{name}:{RELEASE}"
            assert {"name": "TUOYU_PROCESS", "value": process} in c["env"]
            assert [p["containerPort"] for p in c["ports"]] == [port]
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                assert c[probe]["httpGet"]["port"] == c["ports"][0]["name"], deployment
            assert c["livenessProbe"]["httpGet"]["path"] == "/health/live"
            assert c["startupProbe"]["httpGet"]["path"] == "/health/live"
            assert c["readinessProbe"]["httpGet"]["path"] == "/health/ready"
            annotations = doc["spec"]["template"]["metadata"]["annotations"]
            assert annotations == {"prometheus.io/scrape": "true",
                                   "prometheus.io/port": str(port),
                                   "prometheus.io/path": "/metrics"}
            labels = doc["spec"]["template"]["metadata"]["labels"]
            assert labels["app.kubernetes.io/part-of"] == "tuoyu"
            assert labels["app.kubernetes.io/component"] == process
    gateway = find(docs, "Deployment", "gateway")
    [c] = containers(gateway)
    assert c["command"][:4] == ["python", "-m", "tuoyu_gateway", "serve"]
    assert c["image"] == f"tuoyu/gateway:{RELEASE}"
    gateway_main = importlib.import_module("tuoyu_gateway.__main__")
    with pytest.raises(SystemExit) as exit_:
        gateway_main.main([*c["command"][3:], "--help"])  # the arguments parse
    assert exit_.value.code == 0


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_backend_has_its_migration_job(rendered, overlay):
    docs = rendered[overlay]
    for name in BACKENDS:
        job = find(docs, "Job", f"{name}-migrate")
        [c] = containers(job)
        assert c["command"] == ["python", "-m", f"tuoyu_{name}", "migrate"]
        assert c["image"] == f"tuoyu/{name}:{RELEASE}"
        assert pod_spec(job)["restartPolicy"] == "OnFailure"
        assert job["spec"]["backoffLimit"] > 0
        assert job["spec"]["ttlSecondsAfterFinished"] > 0
        assert job["metadata"]["labels"]["app.kubernetes.io/component"] == "migrate"
        # the same settings and secrets as the processes it migrates for
        assert c["envFrom"] == containers(find(docs, "Deployment", name))[0]["envFrom"]
    assert {j["metadata"]["name"] for j in of_kind(docs, "Job")} == {
        f"{name}-migrate" for name in BACKENDS}


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_service_processes_autoscale_and_workers_do_not(rendered, overlay):
    docs = rendered[overlay]
    hpas = of_kind(docs, "HorizontalPodAutoscaler")
    pdbs = of_kind(docs, "PodDisruptionBudget")
    pods = {(d["kind"], d["metadata"]["name"]): d["spec"]["template"]["metadata"]["labels"]
            for d in docs if d["kind"] in ("Deployment", "StatefulSet")}
    for name in (*BACKENDS, "gateway"):
        deployment = find(docs, "Deployment", name)
        assert "replicas" not in deployment["spec"], f"{name}: replicas would fight the HPA"
        [hpa] = [h for h in hpas if h["spec"]["scaleTargetRef"]["name"] == name]
        assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                                 "name": name}
        [metric] = hpa["spec"]["metrics"]
        assert metric["resource"]["name"] == "cpu"
        assert metric["resource"]["target"]["type"] == "Utilization"
        assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
        if overlay == "production":
            assert 2 <= hpa["spec"]["minReplicas"] <= 3, name
        else:
            assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 2)
    for name in BACKENDS:
        worker = find(docs, "Deployment", f"{name}-worker")
        assert worker["spec"]["replicas"] == 1
        assert worker["spec"]["strategy"] == {"type": "Recreate"}
        assert not [h for h in hpas if h["spec"]["scaleTargetRef"]["name"] == f"{name}-worker"]
    # every Deployment and StatefulSet of more than one possible replica has exactly one
    # PodDisruptionBudget, and no budget selects pods of two workloads
    for pdb in pdbs:
        selected = [key for key, labels in pods.items()
                    if _selects(pdb["spec"]["selector"]["matchLabels"], labels)]
        assert len(selected) == 1, (pdb["metadata"]["name"], selected)
        assert pdb["spec"].get("maxUnavailable") == 1 or pdb["spec"].get("minAvailable") == 1
    budgeted = {key for pdb in pdbs for key, labels in pods.items()
                if _selects(pdb["spec"]["selector"]["matchLabels"], labels)}
    for name in BACKENDS:
        assert ("Deployment", name) in budgeted and ("Deployment", f"{name}-worker") in budgeted
    assert ("Deployment", "gateway") in budgeted and ("StatefulSet", "rabbitmq") in budgeted


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_selectors_and_ports_meet(rendered, overlay):
    """Each workload's selector matches its own pod template; each Service selects pods
    that have the port it targets."""
    docs = rendered[overlay]
    templates = []
    for doc in docs:
        if doc["kind"] in ("Deployment", "StatefulSet"):
            labels = doc["spec"]["template"]["metadata"]["labels"]
            assert _selects(doc["spec"]["selector"]["matchLabels"], labels), \
                doc["metadata"]["name"]
            ports = {p["name"]: p["containerPort"] for c in containers(doc)
                     for p in c.get("ports", [])}
            templates.append((labels, ports))
    for service in of_kind(docs, "Service"):
        chosen = [ports for labels, ports in templates
                  if _selects(service["spec"]["selector"], labels)]
        assert chosen, service["metadata"]["name"]
        for port in service["spec"]["ports"]:
            for ports in chosen:
                assert port["targetPort"] in ports, (service["metadata"]["name"], port)
    statefulsets = of_kind(docs, "StatefulSet")
    services = {s["metadata"]["name"]: s for s in of_kind(docs, "Service")}
    for sts in statefulsets:
        governing = services[sts["spec"]["serviceName"]]
        assert governing["spec"].get("clusterIP") == "None", sts["metadata"]["name"]


@pytest.mark.parametrize(("overlay", "queue_type"), [("local", "classic"),
                                                     ("production", "quorum")])
def test_queue_type(rendered, overlay, queue_type):
    docs = rendered[overlay]
    for name in BACKENDS:
        config = find(docs, "ConfigMap", f"{name}-config")
        assert config["data"]["TUOYU_QUEUE_TYPE"] == queue_type, name
        assert config["data"]["TUOYU_ENVIRONMENT"] == "production"
        for deployment in (name, f"{name}-worker"):
            [c] = containers(find(docs, "Deployment", deployment))
            assert {"configMapRef": {"name": f"{name}-config"}} in c["envFrom"]
    conf = find(docs, "ConfigMap", "rabbitmq-config")["data"]["rabbitmq.conf"]
    settings = dict(line.split(" = ", 1) for line in conf.splitlines()
                    if line.strip() and not line.startswith("#"))
    assert settings["default_queue_type"] == queue_type
    assert settings["cluster_formation.peer_discovery_backend"] == "k8s"
    assert settings["cluster_formation.k8s.service_name"] == "rabbitmq-headless"
    sts = find(docs, "StatefulSet", "rabbitmq")
    [c] = containers(sts)
    limit = c["resources"]["limits"]["memory"]
    size = int(limit[:-2]) * {"Mi": 2 ** 20, "Gi": 2 ** 30}[limit[-2:]]
    assert int(settings["total_memory_available_override_value"]) == size, \
        "RabbitMQ's memory total must be its container's limit"


def test_rabbitmq_cluster(rendered):
    production, local = rendered["production"], rendered["local"]
    sts = find(production, "StatefulSet", "rabbitmq")
    assert sts["spec"]["replicas"] == 3
    assert sts["spec"]["podManagementPolicy"] == "Parallel"
    assert find(local, "StatefulSet", "rabbitmq")["spec"]["replicas"] == 1
    assert find(production, "PodDisruptionBudget", "rabbitmq")["spec"] == {
        "maxUnavailable": 1, "selector": {"matchLabels": {"app.kubernetes.io/name": "rabbitmq"}}}
    headless = find(production, "Service", "rabbitmq-headless")
    assert headless["spec"]["publishNotReadyAddresses"] is True
    plugins = find(production, "ConfigMap", "rabbitmq-config")["data"]["enabled_plugins"]
    assert plugins.strip() == ("[rabbitmq_management,rabbitmq_peer_discovery_k8s,"
                               "rabbitmq_prometheus].")
    # the ServiceAccount the pods run as may read the endpoints peer discovery asks for
    assert pod_spec(sts)["serviceAccountName"] == "rabbitmq"
    binding = find(production, "RoleBinding", "rabbitmq-peer-discovery")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "rabbitmq"}]
    role = find(production, "Role", binding["roleRef"]["name"])
    assert {"apiGroups": [""], "resources": ["endpoints"], "verbs": ["get"]} in role["rules"]
    [c] = containers(sts)
    assert c["livenessProbe"]["exec"]["command"] == ["rabbitmq-diagnostics", "-q", "ping"]
    assert c["readinessProbe"]["exec"]["command"] == [
        "rabbitmq-diagnostics", "-q", "check_port_connectivity"]
    env = {e["name"]: e for e in c["env"]}
    assert env["RABBITMQ_NODENAME"]["value"].endswith(
        f".{sts['spec']['serviceName']}.$(MY_POD_NAMESPACE)")


def _secret_references(docs: list[dict[str, Any]]) -> dict[str, set[str]]:
    """Secret name -> the keys referenced by name (envFrom references none)."""
    refs: dict[str, set[str]] = {}
    for doc in docs:
        if doc["kind"] not in WORKLOADS:
            continue
        for c in containers(doc, init=True):
            for source in c.get("envFrom", []):
                if "secretRef" in source:
                    refs.setdefault(source["secretRef"]["name"], set())
            for var in c.get("env", []):
                ref = var.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    refs.setdefault(ref["name"], set()).add(ref["key"])
        for volume in pod_spec(doc).get("volumes", []):
            if "secret" in volume:
                refs.setdefault(volume["secret"]["secretName"], set()).update(
                    item["key"] for item in volume["secret"].get("items", []))
    return refs


def _readme_secrets() -> dict[str, set[str]]:
    rows = {}
    for line in (K8S / "README.md").read_text(encoding="utf-8").splitlines():
        match = re.match(r"\| `([a-z0-9-]+)` \|(.*)\|$", line)
        if match:
            rows[match.group(1)] = set(re.findall(r"`([A-Z0-9_]+)`", match.group(2)))
    return rows


def test_production_secrets_come_from_outside_and_are_documented(rendered):
    docs = rendered["production"]
    assert of_kind(docs, "Secret") == [], "production generates no Secret"
    refs = _secret_references(docs)
    documented = _readme_secrets()
    assert set(refs) == set(documented), "deploy/k8s/README.md lists every Secret, no other"
    for name, keys in refs.items():
        needed = keys | EXPECTED_SECRET_KEYS.get(name, set()) | PRODUCTION_ONLY_KEYS.get(
            name, set())
        assert needed <= documented[name], (name, needed - documented[name])
    for name in BACKENDS:
        assert f"postgres-{name}-secrets" in refs and f"{name}-secrets" in refs


def test_local_secrets_are_generated_and_usable(rendered):
    """Every Secret the local overlay references is generated, with every key, in the
    formats the services accept, and the URLs meet the servers they name."""
    from tuoyu_shared.auth import KeyRing
    from tuoyu_shared.config import parse_keks

    docs = rendered["local"]
    secrets = {s["metadata"]["name"]: {k: base64.b64decode(v).decode()
                                       for k, v in s["data"].items()}
               for s in of_kind(docs, "Secret")}
    refs = _secret_references(docs)
    assert set(refs) == set(secrets)
    for name, keys in refs.items():
        assert keys | EXPECTED_SECRET_KEYS.get(name, set()) <= set(secrets[name]), name
    broker = secrets["rabbitmq-secrets"]
    assert len(broker["RABBITMQ_ERLANG_COOKIE"]) >= 20
    for name in BACKENDS:
        up, values = name.upper(), secrets[f"{name}-secrets"]
        database = urlsplit(values[f"TUOYU_{up}_DATABASE_URL"])
        assert database.hostname == f"postgres-{name}" and database.port == 5432
        assert database.path == f"/tuoyu_{name}"
        pg = containers(find(docs, "StatefulSet", f"postgres-{name}"))[0]
        pg_env = {e["name"]: e.get("value") for e in pg["env"]}
        assert database.username == pg_env["POSTGRES_USER"]
        assert pg_env["POSTGRES_DB"] == f"tuoyu_{name}"
        assert database.password == secrets[f"postgres-{name}-secrets"]["POSTGRES_PASSWORD"]
        amqp = urlsplit(values[f"TUOYU_{up}_AMQP_URI"])
        assert (amqp.hostname, amqp.port) == ("rabbitmq", 5672)
        assert (amqp.username, amqp.password) == (broker["RABBITMQ_DEFAULT_USER"],
                                                  broker["RABBITMQ_DEFAULT_PASS"])
        assert len(values[f"TUOYU_{up}_BLIND_INDEX_KEY"]) >= 32
        assert parse_keks(values[f"TUOYU_{up}_KEKS"])
        assert parse_keks(values[f"TUOYU_{up}_AUDIT_SIGNING_KEYS"])
    assert urlsplit(secrets["credit-secrets"]["TUOYU_PUBLIC_SECURITY_URL"]).hostname in {
        s["metadata"]["name"] for s in of_kind(docs, "Service")}
    gateway = secrets["gateway-secrets"]
    ring = KeyRing.from_env(gateway)
    token = ring.issue("someone", "auditor", "*")
    assert ring.verify(token).subject == "someone"  # by the public key of the JSON
    assert json.loads(gateway["TUOYU_AUTH_PUBLIC_KEYS"]).keys() == {
        gateway["TUOYU_AUTH_SIGNING_KID"]}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_namespace_is_applied(rendered, overlay):
    docs = rendered[overlay]
    namespace = NAMESPACES[overlay]
    [ns] = of_kind(docs, "Namespace")
    assert ns["metadata"]["name"] == namespace
    assert "namespace" not in ns["metadata"]
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for doc in docs:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == namespace, _name(doc)
        assert doc["metadata"]["labels"]["tuoyu/environment"] == overlay, _name(doc)


def _name(doc: dict[str, Any]) -> str:
    return f"{doc['kind']}/{doc['metadata']['name']}"


def _images(docs: list[dict[str, Any]]) -> list[str]:
    return [c["image"] for d in docs if d["kind"] in WORKLOADS
            for c in containers(d, init=True)]


def test_production_images_are_pinned(rendered):
    k = render.read_kustomization(K8S / "overlays" / "production" / "kustomization.yaml")
    pinned = {entry["name"]: entry["newTag"] for entry in k["images"]}
    images = _images(rendered["production"])
    assert images
    for image in images:
        name, tag, digest = render.split_image(image)
        assert tag and tag != "latest", image
        assert pinned.get(name) == tag, f"{image}: not pinned by the overlay's images"
    for name in (*BACKENDS, "gateway"):
        assert pinned[f"tuoyu/{name}"] == RELEASE
    assert re.fullmatch(r"3\.13\.\d+-management", pinned["rabbitmq"])
    assert re.fullmatch(r"15\.\d+", pinned["postgres"])


# ---- the renderer: kustomize's subset, and nothing else ------------------------------------

def write(directory: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return directory


KUSTOMIZATION = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
CONFIGMAP = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  a: b\n"


def test_an_unknown_kustomization_key_is_refused(tmp_path):
    for key, value in (("commonAnnotations", "{a: b}"), ("replicas", "[]"),
                       ("patchesStrategicMerge", "[]"), ("commonLabels", "{a: b}"),
                       ("nameSuffix", "-x"), ("components", "[]")):
        d = write(tmp_path / key, {"kustomization.yaml": f"{KUSTOMIZATION}{key}: {value}\n"})
        with pytest.raises(KustomizeError, match=rf"kustomization\.yaml.*'{key}'"):
            render.render(d)


def test_the_command_line_refuses_with_status_2(tmp_path):
    d = write(tmp_path, {"kustomization.yaml": f"{KUSTOMIZATION}resources: [c.yaml]\n"
                                               "vars: []\n", "c.yaml": CONFIGMAP})
    result = subprocess.run([sys.executable, str(K8S / "render.py"), str(d)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "kustomization.yaml" in result.stderr and "'vars'" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("op", ["move", "copy", "test", "merge", "Add"])
def test_an_unknown_patch_operation_is_refused(tmp_path, op):
    patch = json.dumps([{"op": op, "from": "/data/a", "path": "/data/x", "value": "b"}])
    d = write(tmp_path, {"c.yaml": CONFIGMAP, "kustomization.yaml": (
        f"{KUSTOMIZATION}resources: [c.yaml]\npatches:\n  - target: {{kind: ConfigMap}}\n"
        f"    patch: '{patch}'\n")})
    with pytest.raises(KustomizeError, match=rf"kustomization\.yaml: patches\[0\].*op '{op}'"):
        render.render(d)


REMOVE_A = "    patch: '[{\"op\": \"remove\", \"path\": \"/data/a\"}]'\n"


@pytest.mark.parametrize(("entry", "message"), [
    ("  - target: {kind: ConfigMap}\n    patch: |-\n      data:\n        x: z\n",
     "strategic merge patches are outside the subset"),
    ("  - target: {kind: ConfigMap}\n    path: p.yaml\n", "key 'path'"),
    ("  - patch: '[]'\n", "target: expected a mapping"),
    ("  - target: {kind: ConfigMap, labelSelector: a=b}\n" + REMOVE_A, "key 'labelSelector'"),
    ("  - target: {kind: ConfigMap, name: 'c|d'}\n" + REMOVE_A, "only names of"),
    ("  - target: {kind: ConfigMap, name: other}\n" + REMOVE_A, "selects no resource"),
    ("  - target: {kind: ConfigMap}\n" + REMOVE_A.replace("/data/a", "/data/zz"),
     "does not exist"),
    ("  - target: {kind: ConfigMap}\n    patch: '[]'\n", "no operations"),
], ids=["strategic-merge", "from-a-file", "no-target", "label-selector", "regex-name",
        "no-match", "missing-path", "empty"])
def test_patches_outside_the_subset_are_refused(tmp_path, entry, message):
    d = write(tmp_path, {"c.yaml": CONFIGMAP, "kustomization.yaml":
                         f"{KUSTOMIZATION}resources: [c.yaml]\npatches:\n{entry}"})
    with pytest.raises(KustomizeError, match=rf"patches\[0\].*{re.escape(message)}"):
        render.render(d)


def test_json_patch_add_replace_remove_as_rfc_6902_says():
    def patched(doc, *ops):
        return render.apply_json_patch(doc, list(ops), "test")

    doc = {"a": {"b": [1, 2]}, "x/y": 1, "m~n": 2}
    assert patched(doc, {"op": "add", "path": "/a/b/-", "value": 3}) == {
        "a": {"b": [1, 2, 3]}, "x/y": 1, "m~n": 2}
    assert patched(doc, {"op": "add", "path": "/a/b/0", "value": 0})["a"]["b"] == [0, 1, 2, 3]
    assert patched(doc, {"op": "add", "path": "/a/b/4", "value": 4})["a"]["b"] == [
        0, 1, 2, 3, 4]  # index == length: at the end
    assert patched(doc, {"op": "add", "path": "/a/c", "value": {"d": 1}})["a"]["c"] == {"d": 1}
    assert patched(doc, {"op": "add", "path": "/a/c", "value": 5})["a"]["c"] == 5  # replaces
    assert patched(doc, {"op": "replace", "path": "/a/b/1", "value": 9})["a"]["b"][1] == 9
    assert patched(doc, {"op": "remove", "path": "/a/b/0"})["a"]["b"] == [9, 2, 3, 4]
    assert patched(doc, {"op": "replace", "path": "/x~1y", "value": 10})["x/y"] == 10
    assert patched(doc, {"op": "remove", "path": "/m~0n"}) == {
        "a": {"b": [9, 2, 3, 4], "c": 5}, "x/y": 10}
    assert patched(doc, {"op": "add", "path": "/~01", "value": 0})["~1"] == 0  # not "/"
    assert patched(doc, {"op": "add", "path": "/", "value": 0})[""] == 0  # the "" member
    # the operations apply in order, each on the result of the one before (RFC 6902 §3)
    assert patched({"l": []}, {"op": "add", "path": "/l/-", "value": 1},
                   {"op": "add", "path": "/l/0", "value": 0},
                   {"op": "replace", "path": "/l/1", "value": 2}) == {"l": [0, 2]}
    # the value is copied: patching twice does not share it
    value = {"k": "v"}
    one, two = patched({}, {"op": "add", "path": "/v", "value": value}), patched(
        {}, {"op": "add", "path": "/v", "value": value})
    one["v"]["k"] = "changed"
    assert two["v"] == {"k": "v"} and value == {"k": "v"}


@pytest.mark.parametrize(("doc", "op", "message"), [
    ({"a": {}}, {"op": "replace", "path": "/a/b", "value": 1}, "does not exist"),
    ({"a": {}}, {"op": "remove", "path": "/a/b"}, "does not exist"),
    ({}, {"op": "add", "path": "/a/b", "value": 1}, "does not exist"),  # no parent
    ({"l": [1]}, {"op": "add", "path": "/l/2", "value": 1}, "out of range"),
    ({"l": [1]}, {"op": "replace", "path": "/l/1", "value": 1}, "out of range"),
    ({"l": [1]}, {"op": "remove", "path": "/l/-"}, "not a list index"),
    ({"l": [1]}, {"op": "replace", "path": "/l/-1", "value": 1}, "not a list index"),
    ({"l": [1, 2]}, {"op": "remove", "path": "/l/01"}, "not a list index"),
    ({"l": [1]}, {"op": "add", "path": "/l/x", "value": 1}, "not a list index"),
    ({"a": 1}, {"op": "add", "path": "/a/b", "value": 1}, "scalar"),
    ({}, {"op": "add", "path": "a", "value": 1}, "does not start with '/'"),
    ({}, {"op": "add", "path": "/a~2", "value": 1}, "'~' must be followed by 0 or 1"),
    ({}, {"op": "replace", "path": "", "value": {}}, "root path"),
    ({}, {"op": "add", "path": "/a"}, "missing value"),
    ({"a": 1}, {"op": "remove", "path": "/a", "value": 1}, "takes no value"),
    ({}, {"op": "add", "value": 1}, "missing path"),
])
def test_json_patch_errors(doc, op, message):
    with pytest.raises(KustomizeError, match=re.escape(message)):
        render.apply_json_patch(doc, [op], "test")


def test_namespace_transformer_is_kustomizes():
    docs = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "anything"}},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
             "metadata": {"name": "cr"}},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
             "metadata": {"name": "rb", "namespace": "old"},
             "subjects": [{"kind": "ServiceAccount", "name": "default"},
                          {"kind": "ServiceAccount", "name": "other"},
                          {"kind": "User", "name": "u"}]}]
    for doc in docs:
        render.set_namespace(doc, "ns")
    namespace, cluster_role, binding = docs
    assert namespace["metadata"] == {"name": "ns"}
    assert "namespace" not in cluster_role["metadata"]
    assert binding["metadata"]["namespace"] == "ns"  # replaced, as kustomize does
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "default",
                                    "namespace": "ns"},
                                   {"kind": "ServiceAccount", "name": "other"},
                                   {"kind": "User", "name": "u"}]


def test_images_transformer_is_kustomizes():
    assert render.split_image("tuoyu/a:1.0") == ("tuoyu/a", "1.0", "")
    assert render.split_image("localhost:5000/tuoyu/a") == ("localhost:5000/tuoyu/a", "", "")
    assert render.split_image("localhost:5000/a:1@sha256:ab") == (
        "localhost:5000/a", "1", "sha256:ab")
    assert render.split_image("a@sha256:ab") == ("a", "", "sha256:ab")
    pod = {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "j"},
           "spec": {"jobTemplate": {"spec": {"template": {"spec": {
               "initContainers": [{"name": "i", "image": "tuoyu/a@sha256:ab"}],
               "containers": [{"name": "c", "image": "tuoyu/a:0.1"},
                              {"name": "d", "image": "tuoyu/ab:0.1"},
                              {"name": "e", "image": "other/tuoyu/a:0.1"}]}}}}}}
    render.apply_image([pod], {"name": "tuoyu/a", "newTag": "2.0"}, "test")
    spec = pod["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert [c["image"] for c in spec["initContainers"] + spec["containers"]] == [
        "tuoyu/a:2.0", "tuoyu/a:2.0", "tuoyu/ab:0.1", "other/tuoyu/a:0.1"]
    render.apply_image([pod], {"name": "tuoyu/a", "newName": "r.io/a", "digest": "sha256:cd"},
                       "test")
    assert spec["containers"][0]["image"] == "r.io/a@sha256:cd"
    with pytest.raises(KustomizeError, match="regular expressions"):
        render.apply_image([pod], {"name": "tuoyu/.*", "newTag": "1"}, "test")


def test_generators_labels_and_order(tmp_path):
    d = write(tmp_path, {"c.yaml": CONFIGMAP + "---\n" + (
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d\nspec:\n"
        "  selector:\n    matchLabels: {app: d}\n  template:\n    metadata:\n"
        "      labels: {app: d}\n    spec:\n      containers: [{name: c, image: i}]\n"),
        "kustomization.yaml": KUSTOMIZATION + (
        "namespace: ns\nresources: [c.yaml]\n"
        "labels:\n  - pairs: {env: x}\n    includeSelectors: false\n"
        "    includeTemplates: true\n"
        "secretGenerator:\n  - name: s\n    options: {disableNameSuffixHash: true}\n"
        "    literals: [A=b=c, \"B='quoted'\"]\n")})
    docs = render.render(d)
    assert [x["kind"] for x in docs] == ["ConfigMap", "Secret", "Deployment"]
    configmap, secret, deployment = docs
    assert secret == {"apiVersion": "v1", "kind": "Secret",
                      "metadata": {"name": "s", "namespace": "ns", "labels": {"env": "x"}},
                      "type": "Opaque",
                      "data": {"A": base64.b64encode(b"b=c").decode(),
                               "B": base64.b64encode(b"quoted").decode()}}
    assert deployment["spec"]["template"]["metadata"]["labels"] == {"app": "d", "env": "x"}
    assert deployment["spec"]["selector"]["matchLabels"] == {"app": "d"}
    write(tmp_path, {"kustomization.yaml": KUSTOMIZATION + (
        "resources: [c.yaml]\nsecretGenerator:\n  - name: s\n    literals: [A=b]\n")})
    with pytest.raises(KustomizeError, match="disableNameSuffixHash"):
        render.render(d)


def test_yaml_that_kubectl_would_read_otherwise_is_refused(tmp_path):
    for n, value in enumerate(("on", "no", "0755", "1_000", "2024-01-01", "1e3")):
        d = write(tmp_path / str(n), {"kustomization.yaml": f"{KUSTOMIZATION}resources: "
                                      "[c.yaml]\n", "c.yaml": CONFIGMAP + f"  x: {value}\n"})
        with pytest.raises(KustomizeError, match="quote it"):
            render.render(d)
    d = write(tmp_path / "quoted", {"kustomization.yaml": f"{KUSTOMIZATION}resources: "
                                    "[c.yaml]\n", "c.yaml": CONFIGMAP + '  x: "on"\n'})
    assert render.render(d)[0]["data"]["x"] == "on"
    assert "'on'" in render.dump(render.render(d))  # and kubectl reads a string back
    d = write(tmp_path / "dup", {"kustomization.yaml": f"{KUSTOMIZATION}resources: "
                                 "[c.yaml]\n", "c.yaml": CONFIGMAP + "  a: c\n"})
    with pytest.raises(KustomizeError, match="duplicate key 'a'"):
        render.render(d)


def test_resources_outside_the_subset_are_refused(tmp_path):
    write(tmp_path, {"outside.yaml": CONFIGMAP})
    cases = {"../outside.yaml": "load restriction", "https://example.com/x.yaml": "remote",
             "missing.yaml": "no such file"}
    for n, (resource, message) in enumerate(cases.items()):
        d = write(tmp_path / str(n), {"kustomization.yaml":
                                      f"{KUSTOMIZATION}resources: ['{resource}']\n"})
        with pytest.raises(KustomizeError, match=message):
            render.render(d)
    d = write(tmp_path / "twice", {"c.yaml": CONFIGMAP, "d.yaml": CONFIGMAP,
                                   "kustomization.yaml":
                                   f"{KUSTOMIZATION}resources: [c.yaml, d.yaml]\n"})
    with pytest.raises(KustomizeError, match="already registered id"):
        render.render(d)


def test_the_command_line_prints_what_render_returns():
    result = subprocess.run([sys.executable, str(K8S / "render.py"), "overlays/production"],
                            capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    printed = render.load_yaml(result.stdout, "stdout")
    assert printed == render.render(K8S / "overlays" / "production")
