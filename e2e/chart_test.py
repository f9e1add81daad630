#!/usr/bin/env python3
"""Tests of the Helm chart charts/natrix, without a helm binary.

Needs PyPI `helm-python-sdk` (the Helm v4 engine as a library) and `pyyaml`:

    .venv/bin/pip install helm-python-sdk pyyaml
    .venv/bin/python e2e/chart_test.py

1. `helm lint --strict` with several value sets.
2. Renders (defaults; cluster.create + 3 replicas + custom image; a list of watched
   namespaces; the ServiceMonitor) and checks the objects: Deployment, ServiceAccount,
   RBAC rules equal to e2e/examples/operator-rbac.yaml, labels, images, leader election,
   only ClusterIP Services, the example NatsCluster against the CRD schema.
3. charts/natrix/crds/ is identical to crds/ (regenerate with crdgen, then copy).
4. When kubectl and the test kube-apiserver (../shared/k8s, /work/shared/k8s or
   $NATRIX_K8S_SCRIPTS) are there: applies the CRDs and the rendered manifests to a real
   kube-apiserver 1.20 and checks the ServiceAccount's permissions with `kubectl auth can-i`.
   NATRIX_CHART_K8S=0 skips it; NATRIX_CHART_K8S=1 makes its absence a failure.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

try:
    import tomllib
except ImportError:  # Python < 3.11
    tomllib = None

import yaml

try:
    import helm_python as helm
except ImportError:
    sys.exit("chart_test.py needs helm-python-sdk: pip install helm-python-sdk pyyaml")

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "natrix"
RBAC_EXAMPLE = ROOT / "e2e" / "examples" / "operator-rbac.yaml"
RELEASE = "natrix"
NAMESPACE = "natrix-system"
STANDARD_LABELS = (
    "helm.sh/chart",
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
)


# --- helpers -------------------------------------------------------------------------

def workspace_version() -> str:
    text = (ROOT / "Cargo.toml").read_text()
    if tomllib is not None:
        return tomllib.loads(text)["workspace"]["package"]["version"]
    m = re.search(r'\[workspace\.package\][^\[]*?\nversion\s*=\s*"([^"]+)"', text)
    assert m, "no [workspace.package] version in Cargo.toml"
    return m.group(1)


def render(values: dict | None = None, namespace: str = NAMESPACE,
           release: str = RELEASE) -> tuple[list[dict], str]:
    """Rendered objects (all templates) and NOTES.txt."""
    with helm.Chart.load(CHART) as chart:
        out = chart.render(values=values or {}, name=release, namespace=namespace, is_install=True)
    objs, notes = [], ""
    for path, text in sorted(out.items()):
        if path.endswith("NOTES.txt"):
            notes = text
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                assert "kind" in doc and "apiVersion" in doc, f"{path}: not an object: {doc}"
                objs.append(doc)
    return objs, notes


def by_kind(objs: list[dict], kind: str) -> list[dict]:
    return [o for o in objs if o["kind"] == kind]


def one(objs: list[dict], kind: str) -> dict:
    found = by_kind(objs, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def example_rules() -> list[dict]:
    docs = [d for d in yaml.safe_load_all(RBAC_EXAMPLE.read_text()) if d]
    return one(docs, "ClusterRole")["rules"]


def operator_container(objs: list[dict]) -> dict:
    dep = one(objs, "Deployment")
    containers = dep["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, containers
    return containers[0]


def check_common(objs: list[dict], values: dict | None = None) -> None:
    """Invariants of every render."""
    values = values or {}
    version = workspace_version()
    # Labels: the standard set on every object, one instance/name/version.
    for o in objs:
        labels = o["metadata"].get("labels") or {}
        for key in STANDARD_LABELS:
            assert key in labels, f"{o['kind']}/{o['metadata']['name']}: no label {key}"
        assert labels["app.kubernetes.io/instance"] == RELEASE, labels
        assert labels["app.kubernetes.io/name"] == "natrix", labels
        assert labels["app.kubernetes.io/version"] == version, labels
        assert labels["app.kubernetes.io/managed-by"] == "Helm", labels
    # The Deployment: selector within the pod labels, the natrix-controller command.
    dep = one(objs, "Deployment")
    selector = dep["spec"]["selector"]["matchLabels"]
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= pod_labels.items(), (selector, pod_labels)
    assert dep["metadata"]["namespace"] == NAMESPACE
    c = operator_container(objs)
    assert c["command"] == ["natrix-controller"], c["command"]
    args = c["args"]
    metrics_port = int(values.get("metrics", {}).get("port", 8080))
    assert f"--metrics-addr=0.0.0.0:{metrics_port}" in args, args
    port = {p["name"]: p for p in c["ports"]}["metrics"]
    assert port["containerPort"] == metrics_port
    for probe in ("livenessProbe", "readinessProbe"):
        get = c[probe]["httpGet"]
        assert get["path"] == "/healthz" and get["port"] == "metrics", (probe, get)
    env = {e["name"]: e for e in c["env"]}
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    # Non-root, no privilege escalation.
    psc = dep["spec"]["template"]["spec"]["securityContext"]
    assert psc["runAsNonRoot"] is True and psc["runAsUser"] != 0, psc
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    # The ServiceAccount the pods run as exists in the release namespace.
    sa = one(objs, "ServiceAccount")
    assert sa["metadata"]["namespace"] == NAMESPACE
    assert dep["spec"]["template"]["spec"]["serviceAccountName"] == sa["metadata"]["name"]
    # Services: ClusterIP only (metrics/monitoring never public), selecting the operator pods.
    for svc in by_kind(objs, "Service"):
        spec = svc["spec"]
        assert spec.get("type", "ClusterIP") == "ClusterIP", f"public Service: {svc}"
        assert not spec.get("externalIPs") and not spec.get("loadBalancerIP"), svc
        assert spec["selector"] == selector, (spec["selector"], selector)
    # Every binding names the chart's ServiceAccount and a Role/ClusterRole of the chart.
    roles = {(r["kind"], r["metadata"].get("namespace"), r["metadata"]["name"])
             for r in by_kind(objs, "Role") + by_kind(objs, "ClusterRole")}
    for b in by_kind(objs, "RoleBinding") + by_kind(objs, "ClusterRoleBinding"):
        ns = b["metadata"].get("namespace")
        ref = b["roleRef"]
        assert (ref["kind"], ns if ref["kind"] == "Role" else None, ref["name"]) in roles, b
        assert b["subjects"] == [{"kind": "ServiceAccount", "name": sa["metadata"]["name"],
                                  "namespace": NAMESPACE}], b["subjects"]
    assert not by_kind(objs, "CustomResourceDefinition"), "CRDs belong in crds/, not templates/"


def schema_check(obj, schema: dict, path: str = "spec") -> None:
    """Every field of obj is declared by the (structural) CRD schema, with the right type."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return
    t = schema.get("type")
    if isinstance(obj, dict):
        assert t in (None, "object"), f"{path}: object where the schema says {t}"
        props = schema.get("properties")
        if props is None:
            extra = schema.get("additionalProperties")
            if isinstance(extra, dict):
                for k, v in obj.items():
                    schema_check(v, extra, f"{path}.{k}")
            return
        for k, v in obj.items():
            assert k in props, f"{path}.{k}: not in the CRD schema ({sorted(props)})"
            schema_check(v, props[k], f"{path}.{k}")
    elif isinstance(obj, list):
        assert t == "array", f"{path}: list where the schema says {t}"
        for i, v in enumerate(obj):
            schema_check(v, schema.get("items", {}), f"{path}[{i}]")
    elif isinstance(obj, bool):
        assert t == "boolean", f"{path}: boolean where the schema says {t}"
    elif isinstance(obj, int):
        assert t in ("integer", "number"), f"{path}: integer where the schema says {t}"
        if "minimum" in schema:
            assert obj >= schema["minimum"], f"{path}: {obj} < {schema['minimum']}"
        if "maximum" in schema:
            assert obj <= schema["maximum"], f"{path}: {obj} > {schema['maximum']}"
    elif isinstance(obj, str):
        assert t == "string" or schema.get("x-kubernetes-int-or-string"), \
            f"{path}: string where the schema says {t}"
        if "pattern" in schema:
            assert re.search(schema["pattern"], obj), f"{path}: {obj!r} !~ {schema['pattern']}"
        if "enum" in schema:
            assert obj in schema["enum"], f"{path}: {obj!r} not in {schema['enum']}"


def crd_schema(kind: str) -> dict:
    for f in sorted((CHART / "crds").glob("*.yaml")):
        crd = yaml.safe_load(f.read_text())
        if crd["spec"]["names"]["kind"] == kind:
            return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    raise AssertionError(f"no CRD for {kind}")


# --- tests ---------------------------------------------------------------------------

def test_chart_metadata():
    with helm.Chart.load(CHART) as chart:
        meta = chart.metadata
        crd_files = sorted(c["filename"] for c in chart.crds)
    assert meta["apiVersion"] == "v2", meta
    assert meta["name"] == "natrix", meta
    assert meta["appVersion"] == workspace_version(), \
        f"Chart.yaml appVersion {meta['appVersion']} != crate version {workspace_version()}"
    assert crd_files, "the chart ships no CRDs"


def test_crds_identical_to_generated():
    generated = {p.name: p.read_bytes() for p in (ROOT / "crds").glob("*.yaml")}
    shipped = {p.name: p.read_bytes() for p in (CHART / "crds").glob("*.yaml")}
    assert generated, "crds/ is empty"
    assert sorted(shipped) == sorted(generated), \
        f"charts/natrix/crds {sorted(shipped)} != crds {sorted(generated)}"
    drift = [n for n in generated if generated[n] != shipped[n]]
    assert not drift, (f"charts/natrix/crds/ differs from crds/ for {drift}: "
                       "run `cargo run -p natrix-controller --bin crdgen` then "
                       "`cp crds/*.yaml charts/natrix/crds/`")


LINT_VALUES = [
    None,
    {"cluster": {"create": True}},
    {"operator": {"replicas": 3, "watchNamespaces": ["team-a", "team-b"]},
     "cluster": {"create": True, "namespace": "team-a"}},
    {"metrics": {"serviceMonitor": {"enabled": True}}},
]


def test_lint():
    for values in LINT_VALUES:
        report = helm.lint(CHART, values, strict=True, namespace=NAMESPACE)
        problems = [m for m in report["messages"] if m["severity"] >= 2]
        assert not report["errors"] and not problems, f"lint {values}: {report}"


def test_defaults():
    objs, notes = render()
    check_common(objs)
    kinds = sorted(o["kind"] for o in objs)
    assert kinds == ["ClusterRole", "ClusterRoleBinding", "Deployment", "Service",
                     "ServiceAccount"], kinds
    cr = one(objs, "ClusterRole")
    assert cr["rules"] == example_rules(), "ClusterRole rules differ from operator-rbac.yaml"
    dep = one(objs, "Deployment")
    assert dep["spec"]["replicas"] == 1
    c = operator_container(objs)
    assert c["image"] == f"ghcr.io/natrix-io/natrix:{workspace_version()}", c["image"]
    assert "--leader-elect" not in c["args"], c["args"]
    assert not any(a.startswith("--namespace") for a in c["args"]), c["args"]
    assert "--log-level=info" in c["args"]
    assert not any(e["name"].startswith("OTEL_") for e in c["env"]), c["env"]
    assert "kind: NatsCluster" in notes and "kubectl apply" in notes, notes


def test_cluster_replicas_image():
    values = {
        "image": {"repository": "registry.example.com/natrix", "tag": "9.9.9",
                  "pullPolicy": "Always"},
        "imagePullSecrets": [{"name": "regcred"}],
        "operator": {"replicas": 3, "logLevel": "debug",
                     "nodeSelector": {"kubernetes.io/os": "linux"},
                     "tolerations": [{"key": "dedicated", "operator": "Exists"}]},
        "metrics": {"port": 9090, "service": {"type": "NodePort"}},
        "cluster": {"create": True, "name": "events", "replicas": 5,
                    "jetstream": {"enabled": True,
                                  "fileStorage": {"size": "20Gi", "storageClassName": "fast"},
                                  "memoryStorageMaxSize": "1Gi"},
                    "resolver": {"enabled": True}},
    }
    objs, notes = render(values)
    check_common(objs, values)
    dep = one(objs, "Deployment")
    assert dep["spec"]["replicas"] == 3
    pod = dep["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert pod["tolerations"] == [{"key": "dedicated", "operator": "Exists"}]
    c = operator_container(objs)
    assert c["image"] == "registry.example.com/natrix:9.9.9", c["image"]
    assert c["imagePullPolicy"] == "Always"
    assert "--leader-elect" in c["args"], "leader election must be on with 3 replicas"
    assert "--log-level=debug" in c["args"]
    # A NodePort asked for in values does not make the metrics Service public.
    svc = one(objs, "Service")
    assert svc["spec"]["type"] == "ClusterIP" and svc["spec"]["ports"][0]["port"] == 9090
    nc = one(objs, "NatsCluster")
    assert nc["apiVersion"] == "natrix.io/v1alpha1"
    assert nc["metadata"] == {**nc["metadata"], "name": "events", "namespace": NAMESPACE}
    spec = nc["spec"]
    assert spec["replicas"] == 5
    assert spec["image"] == {"repository": "registry.example.com/natrix", "tag": "9.9.9",
                             "pullPolicy": "Always"}
    assert spec["imagePullSecrets"] == [{"name": "regcred"}]
    assert spec["jetstream"] == {"enabled": True,
                                 "fileStorage": {"size": "20Gi", "storageClassName": "fast"},
                                 "memoryStorage": {"maxSize": "1Gi"}}
    assert spec["resolver"]["enabled"] is True and spec["resolver"]["storage"]["size"] == "1Gi"
    assert spec["auth"] == {"operatorMode": True}, "the resolver needs operator mode"
    schema_check(spec, crd_schema("NatsCluster")["properties"]["spec"])
    assert "events" in notes


def test_tracing_env():
    objs, _ = render({"operator": {"tracing": {"otlpEndpoint": "http://otel:4318",
                                               "serviceName": "natrix-ops"}}})
    env = {e["name"]: e.get("value") for e in operator_container(objs)["env"]}
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel:4318", env
    assert env["OTEL_SERVICE_NAME"] == "natrix-ops", env
    objs, _ = render({"operator": {"tracing": {"otlpEndpoint": "http://otel:4318"}}})
    env = {e["name"] for e in operator_container(objs)["env"]}
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" in env and "OTEL_SERVICE_NAME" not in env, env


def test_single_replica_leader_elect_flag():
    objs, _ = render({"operator": {"leaderElect": True}})
    assert "--leader-elect" in operator_container(objs)["args"]
    objs, _ = render({"operator": {"replicas": 2}})
    assert "--leader-elect" in operator_container(objs)["args"]


def test_default_cluster_matches_crd():
    objs, _ = render({"cluster": {"create": True}})
    nc = one(objs, "NatsCluster")
    schema_check(nc["spec"], crd_schema("NatsCluster")["properties"]["spec"])
    assert nc["spec"]["replicas"] == 1 and nc["spec"]["jetstream"]["enabled"] is True
    assert "auth" not in nc["spec"]


def test_watched_namespaces():
    values = {"operator": {"replicas": 2, "watchNamespaces": ["team-a", "team-b"]},
              "cluster": {"create": True, "namespace": "team-b"}}
    objs, notes = render(values)
    check_common(objs, values)
    assert not by_kind(objs, "ClusterRole") and not by_kind(objs, "ClusterRoleBinding"), \
        "a namespace list must not grant cluster-wide access"
    c = operator_container(objs)
    assert "--namespace=team-a,team-b" in c["args"], c["args"]
    assert "--leader-elect" in c["args"]
    roles = {(r["metadata"]["namespace"], r["metadata"]["name"]): r for r in by_kind(objs, "Role")}
    for ns in ("team-a", "team-b"):
        assert roles[(ns, RELEASE)]["rules"] == example_rules(), f"Role in {ns}"
    # The Lease lives in the release namespace (not watched): only leases there.
    lease = roles[(NAMESPACE, f"{RELEASE}-leader-election")]
    assert lease["rules"] == [r for r in example_rules()
                              if r["apiGroups"] == ["coordination.k8s.io"]], lease["rules"]
    assert len(roles) == 3, sorted(roles)
    bindings = {(b["metadata"]["namespace"], b["metadata"]["name"])
                for b in by_kind(objs, "RoleBinding")}
    assert bindings == set(roles), (bindings, set(roles))
    assert one(objs, "NatsCluster")["metadata"]["namespace"] == "team-b"
    assert "team-a" in notes


def test_watched_namespaces_including_release_namespace():
    objs, _ = render({"operator": {"replicas": 2,
                                   "watchNamespaces": [NAMESPACE, "team-a", NAMESPACE]}})
    roles = sorted((r["metadata"]["namespace"], r["metadata"]["name"])
                   for r in by_kind(objs, "Role"))
    assert roles == [(NAMESPACE, RELEASE), ("team-a", RELEASE)], roles
    assert f"--namespace={NAMESPACE},team-a" in operator_container(objs)["args"]


def test_cluster_outside_watched_namespaces_fails():
    try:
        render({"operator": {"watchNamespaces": ["team-a"]}, "cluster": {"create": True}})
    except helm.HelmError as e:
        assert "watchNamespaces" in str(e), e
    else:
        raise AssertionError("a NatsCluster outside the watched namespaces must fail to render")


def test_service_monitor():
    objs, _ = render({"metrics": {"serviceMonitor": {"enabled": True,
                                                     "labels": {"release": "prom"}}}})
    check_common(objs)
    sm = one(objs, "ServiceMonitor")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["metadata"]["labels"]["release"] == "prom"
    svc = one(objs, "Service")
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert sm["spec"]["endpoints"][0]["port"] == svc["spec"]["ports"][0]["name"] == "metrics"
    assert sm["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    objs, _ = render({"metrics": {"service": {"enabled": False}}})
    assert not by_kind(objs, "Service") and not by_kind(objs, "ServiceMonitor")


def test_values_schema():
    bad = [
        {"operator": {"logLevel": "verbose"}},
        {"operator": {"replicas": "two"}},
        {"operator": {"watchNamespaces": "team-a"}},
        {"image": {"pullPolicy": "Sometimes"}},
        {"cluster": {"replicas": 16}},
        {"metrics": {"port": 70000}},
        {"operator": {"tracing": {"otlpEndpoint": "otel:4318"}}},
    ]
    for values in bad:
        try:
            render(values)
        except helm.HelmValuesError:
            continue
        raise AssertionError(f"values.schema.json accepted {values}")


def test_no_service_account_no_rbac():
    objs, _ = render({"serviceAccount": {"create": False, "name": "existing"},
                      "rbac": {"create": False}})
    assert not by_kind(objs, "ServiceAccount")
    assert not [o for o in objs if o["apiVersion"].startswith("rbac.")]
    assert one(objs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "existing"


# --- against a real kube-apiserver ---------------------------------------------------

def k8s_scripts() -> Path | None:
    for d in (os.environ.get("NATRIX_K8S_SCRIPTS"), ROOT.parent / "shared" / "k8s",
              "/work/shared/k8s"):
        if d and (Path(d) / "start-test-cluster.sh").is_file():
            return Path(d)
    return None


def strip_cel(v):
    if isinstance(v, dict):
        return {k: strip_cel(x) for k, x in v.items() if k != "x-kubernetes-validations"}
    if isinstance(v, list):
        return [strip_cel(x) for x in v]
    return v


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def to_yaml(objs: list[dict]) -> str:
    return yaml.safe_dump_all(objs, sort_keys=False)


def test_apply_to_kube_apiserver():
    mode = os.environ.get("NATRIX_CHART_K8S", "")
    if mode == "0":
        return "skipped (NATRIX_CHART_K8S=0)"
    scripts = k8s_scripts()
    kubectl = shutil.which("kubectl")
    bin_dir = Path(os.environ.get("BIN", "/var/cache/k8s-apiserver-build/bin"))
    missing = [what for what, ok in (("kubectl", kubectl), ("start-test-cluster.sh", scripts),
                                     (f"{bin_dir}/kube-apiserver",
                                      (bin_dir / "kube-apiserver").exists())) if not ok]
    if missing:
        assert mode != "1", f"NATRIX_CHART_K8S=1 but no {', '.join(missing)}"
        return f"skipped (no {', '.join(missing)})"

    d = Path(tempfile.mkdtemp(prefix="natrix-chart-k8s-"))
    env = {**os.environ, "D": str(d), "PORT": str(free_port()),
           "ETCD_PORT": str(free_port()), "ETCD_PEER_PORT": str(free_port())}
    kenv = {**os.environ, "KUBECONFIG": str(d / "kubeconfig")}

    def kc(*args: str, stdin: str | None = None, check: bool = True) -> str:
        p = subprocess.run([kubectl, *args], input=stdin, env=kenv, text=True,
                           capture_output=True, timeout=120)
        if check and p.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)}: {p.stdout}{p.stderr}")
        return p.stdout.strip()

    def can_i(verb: str, resource: str, ns: str | None, sa_ns: str, sa: str) -> bool:
        scope = ["-n", ns] if ns else ["--all-namespaces"]
        out = kc("auth", "can-i", verb, resource, *scope,
                 f"--as=system:serviceaccount:{sa_ns}:{sa}", check=False)
        return out == "yes"

    try:
        subprocess.run(["bash", str(scripts / "start-test-cluster.sh")], env=env, check=True,
                       capture_output=True, timeout=180)
        # The CRDs the chart installs first (helm's crds/), then wait for them. Kubernetes
        # 1.20 predates CEL: drop x-kubernetes-validations as the operator e2e test does.
        for f in sorted((CHART / "crds").glob("*.yaml")):
            kc("apply", "-f", "-", stdin=yaml.safe_dump(strip_cel(yaml.safe_load(f.read_text()))))
        kc("wait", "--for=condition=Established", "--timeout=60s",
           "crd/natsclusters.natrix.io", "crd/streams.natrix.io", "crd/accounts.natrix.io")
        for ns in (NAMESPACE, "team-a", "team-b"):
            kc("create", "namespace", ns)

        # 1. Cluster-wide install with the example NatsCluster.
        objs, _ = render({"cluster": {"create": True}, "operator": {"replicas": 2}})
        kc("apply", "-f", "-", stdin=to_yaml(objs))
        nc = yaml.safe_load(kc("get", "natsclusters.natrix.io", "nats", "-n", NAMESPACE,
                               "-o", "yaml"))
        assert nc["spec"]["replicas"] == 1 and nc["spec"]["jetstream"]["enabled"] is True
        # The CRD defaults were applied by the API server (the spec is structural and valid).
        assert nc["spec"]["ports"]["client"] == 4222, nc["spec"]
        kc("get", "deployment", RELEASE, "-n", NAMESPACE)
        svc = yaml.safe_load(kc("get", "service", f"{RELEASE}-metrics", "-n", NAMESPACE,
                                "-o", "yaml"))
        assert svc["spec"]["type"] == "ClusterIP"
        for verb, res, ns, want in [
            ("list", "natsclusters.natrix.io", None, True),
            ("watch", "streams.natrix.io", "team-a", True),
            ("patch", "accounts.natrix.io/status", "team-a", True),
            ("create", "statefulsets.apps", "team-b", True),
            ("delete", "poddisruptionbudgets.policy", "team-b", True),
            ("create", "events.events.k8s.io", "team-a", True),
            ("create", "leases.coordination.k8s.io", NAMESPACE, True),
            ("create", "secrets", "team-a", True),
            ("delete", "natsclusters.natrix.io", "team-a", False),
            ("create", "pods", "team-a", False),
            ("watch", "secrets", "team-a", False),
            ("delete", "leases.coordination.k8s.io", NAMESPACE, False),
        ]:
            assert can_i(verb, res, ns, NAMESPACE, RELEASE) == want, \
                f"cluster-wide: can-i {verb} {res} in {ns or 'all'} != {want}"

        # 2. Namespaced install (another release name; a list of watched namespaces).
        objs, _ = render({"operator": {"replicas": 2, "watchNamespaces": ["team-a"]},
                          "cluster": {"create": True, "namespace": "team-a"}},
                         release="natrix-ns")
        kc("apply", "-f", "-", stdin=to_yaml(objs))
        kc("get", "natsclusters.natrix.io", "nats", "-n", "team-a")
        for verb, res, ns, want in [
            ("list", "natsclusters.natrix.io", "team-a", True),
            ("create", "statefulsets.apps", "team-a", True),
            ("list", "natsclusters.natrix.io", "team-b", False),
            ("list", "natsclusters.natrix.io", None, False),
            ("create", "leases.coordination.k8s.io", NAMESPACE, True),
            ("list", "secrets", NAMESPACE, False),
        ]:
            assert can_i(verb, res, ns, NAMESPACE, "natrix-ns") == want, \
                f"namespaced: can-i {verb} {res} in {ns or 'all'} != {want}"
        version = yaml.safe_load(kc("get", "--raw", "/version"))["gitVersion"]
        return f"applied to kube-apiserver {version}"
    finally:
        subprocess.run(["bash", str(scripts / "stop-test-cluster.sh")], env=env,
                       capture_output=True, timeout=60)
        time.sleep(0.5)
        shutil.rmtree(d, ignore_errors=True)


def main() -> int:
    tests = [(n, f) for n, f in globals().items() if n.startswith("test_") and callable(f)]
    only = sys.argv[1:]
    failed = 0
    for name, fn in tests:
        if only and not any(o in name for o in only):
            continue
        t = time.monotonic()
        try:
            note = fn()
        except Exception:  # noqa: BLE001 - report every failure, then exit non-zero
            failed += 1
            print(f"FAIL {name}")
            traceback.print_exc()
            continue
        extra = f": {note}" if note else ""
        print(f"ok   {name} ({time.monotonic() - t:.1f}s){extra}")
    print(f"chart tests: {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
