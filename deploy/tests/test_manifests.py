"""The deployment's promises, as tests: what a security review signs off must not regress.

Renders every kustomization with `kubectl kustomize` (KUBECTL overrides the binary) and checks the
objects. Run by scripts/test-deploy; alone: `.venv-tools/bin/pytest deploy/tests` from the repo root.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
KUSTOMIZATIONS = {
    "base": "deploy/kubernetes/base",
    "pod-network": "deploy/kubernetes/overlays/pod-network",
    "without-operator": "deploy/kubernetes/overlays/without-operator",
    "web-config": "deploy/kubernetes/overlays/web-config",
    "pod-identity": "deploy/kubernetes/overlays/pod-identity",
}
PORT = 19254
UID = 65532
HOST_DS = "imds-exporter"
POD_DS = "imds-exporter-pod-network"

# Pod Security Standards, `baseline` capabilities allow-list (kubernetes.io/docs/concepts/security/
# pod-security-standards). Anything else added needs the `privileged` level.
BASELINE_CAPS = {"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
                 "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"}


def kustomize_command(path: pathlib.Path) -> list[str]:
    """`kubectl kustomize` (KUBECTL overrides the binary), else the standalone `kustomize build`."""
    kubectl = shutil.which(os.environ.get("KUBECTL") or "kubectl")
    if kubectl:
        return [kubectl, "kustomize", str(path)]
    kustomize = shutil.which("kustomize")
    if kustomize:
        return [kustomize, "build", str(path)]
    # A manifest test that cannot render the manifests has checked nothing: fail, never skip.
    pytest.fail("neither kubectl nor kustomize is installed: the kustomizations cannot be rendered "
                "(scripts/test-deploy installs kubectl into .venv-tools)")


def render(path: str) -> list[dict]:
    out = subprocess.run(kustomize_command(ROOT / path), check=True, capture_output=True,
                         text=True).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


@pytest.fixture(scope="module", params=sorted(KUSTOMIZATIONS))
def objects(request) -> list[dict]:
    return render(KUSTOMIZATIONS[request.param])


@pytest.fixture(scope="module")
def overlay() -> list[dict]:
    return render(KUSTOMIZATIONS["pod-network"])


def find(objs, kind, name):
    matches = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


def container(ds) -> dict:
    containers = ds["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, "one container per exporter pod"
    return containers[0]


def effective(ds, field):
    """A security field as the kubelet applies it: the container's value, else the pod's."""
    c = container(ds).get("securityContext", {})
    return c[field] if field in c else ds["spec"]["template"]["spec"].get("securityContext", {}).get(field)


def selects(selector: dict, labels: dict) -> bool:
    assert "matchExpressions" not in selector, "keep selectors to matchLabels"
    return all(labels.get(k) == v for k, v in selector["matchLabels"].items())


# ---------------------------------------------------------------- both DaemonSets, every overlay

def daemonsets(objs):
    return [o for o in objs if o["kind"] == "DaemonSet"]


def test_every_kustomization_has_the_host_view(objects):
    find(objects, "DaemonSet", HOST_DS)


def test_pods_run_as_uid_65532_and_non_root(objects):
    for ds in daemonsets(objects):
        assert effective(ds, "runAsNonRoot") is True, ds["metadata"]["name"]
        assert effective(ds, "runAsUser") == UID
        assert effective(ds, "runAsGroup") == UID
        pod_ctx = ds["spec"]["template"]["spec"]["securityContext"]
        assert pod_ctx["runAsNonRoot"] is True and pod_ctx["runAsUser"] == UID


def test_root_filesystem_is_read_only_and_privileges_cannot_grow(objects):
    for ds in daemonsets(objects):
        ctx = container(ds)["securityContext"]
        assert ctx["readOnlyRootFilesystem"] is True
        assert ctx["allowPrivilegeEscalation"] is False
        assert ctx.get("privileged", False) is False
        assert "procMount" not in ctx


def test_seccomp_is_runtime_default(objects):
    for ds in daemonsets(objects):
        assert effective(ds, "seccompProfile") == {"type": "RuntimeDefault"}
        assert ds["spec"]["template"]["spec"]["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}


def test_all_capabilities_dropped(objects):
    for ds in daemonsets(objects):
        assert container(ds)["securityContext"]["capabilities"]["drop"] == ["ALL"]


def test_no_service_account_token_anywhere(objects):
    for ds in daemonsets(objects):
        spec = ds["spec"]["template"]["spec"]
        assert spec["automountServiceAccountToken"] is False
        sa = find(objects, "ServiceAccount", spec["serviceAccountName"])
        assert sa["automountServiceAccountToken"] is False
    assert not [o for o in objects if o["kind"] in ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding")]


def test_host_view_runs_under_the_base_service_account(objects):
    # An IRSA annotation or RBAC binding on `imds-exporter` must reach the host view's pods; with
    # two ServiceAccounts that both started as `imds-exporter`, kustomize once rewrote the host
    # DaemonSet's reference to the pod view's renamed copy.
    ds = find(objects, "DaemonSet", HOST_DS)
    assert ds["spec"]["template"]["spec"]["serviceAccountName"] == "imds-exporter"
    assert [o["metadata"]["name"] for o in objects if o["kind"] == "ServiceAccount"] == ["imds-exporter"]


WEB_CONFIG_VOLUME = {"name": "web-config", "secret": {"secretName": "imds-exporter-web-config", "defaultMode": 0o440}}


def test_no_host_namespaces_or_volumes_beyond_the_network(objects):
    for ds in daemonsets(objects):
        spec = ds["spec"]["template"]["spec"]
        assert not spec.get("hostPID") and not spec.get("hostIPC")
        # The exporter needs no volume, least of all a hostPath; only its web configuration, read
        # only, from a Secret (overlay web-config).
        assert spec.get("volumes", []) in ([], [WEB_CONFIG_VOLUME])
        assert container(ds).get("volumeMounts", []) in (
            [], [{"name": "web-config", "mountPath": "/etc/imds_exporter", "readOnly": True}])
        assert not any(p.get("hostPort") not in (None, PORT) for p in container(ds)["ports"])


def test_probes_hit_health_and_readiness_on_the_metrics_port(objects):
    for ds in daemonsets(objects):
        c = container(ds)
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        assert ports == {"metrics": PORT}
        live, ready = c["livenessProbe"]["httpGet"], c["readinessProbe"]["httpGet"]
        assert live["path"] == "/-/healthy" and ports.get(live["port"], live["port"]) == PORT
        assert ready["path"] == "/-/ready" and ports.get(ready["port"], ready["port"]) == PORT
        # HTTPS exactly when the exporter serves TLS (its web configuration file).
        tls = any(a.startswith("--web.config.file=") for a in c["args"])
        for probe in (live, ready):
            assert probe.get("scheme", "HTTP") == ("HTTPS" if tls else "HTTP")
        assert "--web.listen-address=:19254" in c["args"]


def test_rolling_update_ten_percent_at_a_time(objects):
    for ds in daemonsets(objects):
        strategy = ds["spec"]["updateStrategy"]
        assert strategy == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "10%"}}


def test_every_node_but_fargate(objects):
    for ds in daemonsets(objects):
        spec = ds["spec"]["template"]["spec"]
        assert {"operator": "Exists"} in spec["tolerations"]
        terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
        for term in terms:  # terms are ORed: each one must exclude Fargate
            assert {"key": "eks.amazonaws.com/compute-type", "operator": "NotIn",
                    "values": ["fargate"]} in term["matchExpressions"]


def test_resources_requested_memory_limited_cpu_not_throttled(objects):
    for ds in daemonsets(objects):
        res = container(ds)["resources"]
        assert res["requests"] == {"cpu": "10m", "memory": "32Mi"}
        assert res["limits"] == {"memory": "64Mi"}, "no CPU limit: throttling would skew latencies"


def test_node_name_from_the_downward_api(objects):
    for ds in daemonsets(objects):
        env = {e["name"]: e for e in container(ds)["env"]}
        assert env["NODE_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}


def test_image_is_pinned_to_a_version(objects):
    for ds in daemonsets(objects):
        image = container(ds)["image"]
        assert ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest"), image


def test_selectors_of_the_two_daemonsets_never_overlap(objects):
    sets = daemonsets(objects)
    for a in sets:
        for b in sets:
            if a is not b:
                assert not selects(a["spec"]["selector"], b["spec"]["template"]["metadata"]["labels"])


# ---------------------------------------------------------------- host view

def test_host_view_uses_the_host_network_with_cluster_dns(objects):
    spec = find(objects, "DaemonSet", HOST_DS)["spec"]["template"]["spec"]
    assert spec["hostNetwork"] is True
    assert spec["dnsPolicy"] == "ClusterFirstWithHostNet"


def test_host_view_adds_only_sys_time(objects):
    caps = container(find(objects, "DaemonSet", HOST_DS))["securityContext"]["capabilities"]
    assert caps == {"drop": ["ALL"], "add": ["SYS_TIME"]}


def test_host_view_is_system_node_critical(objects):
    spec = find(objects, "DaemonSet", HOST_DS)["spec"]["template"]["spec"]
    assert spec["priorityClassName"] == "system-node-critical"


def test_host_view_leaves_baseline_only_for_host_network_and_sys_time(objects):
    """The exact list a Pod Security review has to accept; a new item fails here."""
    ds = find(objects, "DaemonSet", HOST_DS)
    assert baseline_violations(ds) == ["capability SYS_TIME", "hostNetwork", "hostPort 19254"]


# ---------------------------------------------------------------- pod view (overlay)

def test_pod_view_lives_in_the_pod_network(overlay):
    spec = find(overlay, "DaemonSet", POD_DS)["spec"]["template"]["spec"]
    assert spec.get("hostNetwork", False) is False
    assert spec["dnsPolicy"] == "ClusterFirst"
    assert "priorityClassName" not in spec, "a diagnostic must not preempt workloads"


def test_pod_view_runs_only_the_imds_probe_without_any_capability(overlay):
    c = container(find(overlay, "DaemonSet", POD_DS))
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    for flag in ("--collector.ntp=false", "--collector.clock=false", "--collector.ethtool=false"):
        assert flag in c["args"]


def test_pod_view_meets_the_restricted_pod_security_standard(overlay):
    ds = find(overlay, "DaemonSet", POD_DS)
    assert baseline_violations(ds) == []
    assert effective(ds, "runAsNonRoot") is True
    assert container(ds)["securityContext"]["allowPrivilegeEscalation"] is False
    assert set(container(ds)["securityContext"]["capabilities"].get("add", [])) <= {"NET_BIND_SERVICE"}


def test_overlay_adds_exactly_one_of_each_pod_view_object(overlay):
    names = sorted((o["kind"], o["metadata"]["name"]) for o in overlay)
    assert names == sorted([
        ("ServiceAccount", HOST_DS),
        ("Service", HOST_DS),
        ("DaemonSet", HOST_DS), ("DaemonSet", POD_DS),
        ("PodMonitor", HOST_DS), ("PodMonitor", POD_DS),
        ("PrometheusRule", HOST_DS), ("PrometheusRule", POD_DS),
    ])


# ---------------------------------------------------------------- scraping

@pytest.mark.parametrize("ds_name,pm_name,view", [(HOST_DS, HOST_DS, "host"), (POD_DS, POD_DS, "pod")])
def test_podmonitor_scrapes_its_daemonset_with_node_name_as_instance(overlay, ds_name, pm_name, view):
    ds, pm = find(overlay, "DaemonSet", ds_name), find(overlay, "PodMonitor", pm_name)
    template_labels = ds["spec"]["template"]["metadata"]["labels"]
    assert selects(pm["spec"]["selector"], template_labels)
    for other in daemonsets(overlay):
        if other is not ds:
            assert not selects(pm["spec"]["selector"], other["spec"]["template"]["metadata"]["labels"])
    assert pm["spec"]["jobLabel"] in template_labels
    (endpoint,) = pm["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] == "metrics" and endpoint["path"] == "/metrics"
    relabel = endpoint["relabelings"]
    assert {"action": "replace", "sourceLabels": ["__meta_kubernetes_pod_node_name"],
            "targetLabel": "instance"} in relabel
    assert {"action": "replace", "targetLabel": "view", "replacement": view} in relabel


def test_web_config_overlay_mounts_its_secret_and_scrapes_over_https_with_basic_auth():
    objs = render(KUSTOMIZATIONS["web-config"])
    ds, pm = find(objs, "DaemonSet", HOST_DS), find(objs, "PodMonitor", HOST_DS)
    spec = ds["spec"]["template"]["spec"]
    assert spec["volumes"] == [WEB_CONFIG_VOLUME]
    assert spec["securityContext"]["fsGroup"] == UID, "the Secret's files are readable by the exporter's group"
    assert "--web.config.file=/etc/imds_exporter/web-config.yml" in container(ds)["args"]
    (endpoint,) = pm["spec"]["podMetricsEndpoints"]
    assert endpoint["scheme"] == "https"
    assert endpoint["tlsConfig"] == {"serverName": "imds-exporter",
                                     "ca": {"secret": {"name": "imds-exporter-scrape", "key": "ca.crt"}}}
    assert endpoint["basicAuth"] == {"username": {"name": "imds-exporter-scrape", "key": "username"},
                                     "password": {"name": "imds-exporter-scrape", "key": "password"}}
    assert "insecureSkipVerify" not in endpoint["tlsConfig"]
    # Nothing else differs from the base.
    base = render(KUSTOMIZATIONS["base"])
    assert sorted((o["kind"], o["metadata"]["name"]) for o in objs) == sorted(
        (o["kind"], o["metadata"]["name"]) for o in base)


def test_pod_identity_overlay_is_the_base_and_carries_nothing_secret():
    # The association lives in EKS (README.md of the overlay): the manifests stay the base's, with no
    # Secret, no credential variable and no token volume of their own (EKS's webhook adds those).
    objs = render(KUSTOMIZATIONS["pod-identity"])
    assert objs == render(KUSTOMIZATIONS["base"])
    assert not [o for o in objs if o["kind"] == "Secret"]
    for ds in daemonsets(objs):
        names = {e["name"] for e in container(ds).get("env", [])}
        assert not names & {"AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                            "AWS_CONTAINER_AUTHORIZATION_TOKEN", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    text = (ROOT / KUSTOMIZATIONS["pod-identity"] / "kustomization.yaml").read_text()
    assert "aws eks create-pod-identity-association" in text and "--service-account imds-exporter" in text


def test_headless_service_names_the_metrics_port(objects):
    svc = find(objects, "Service", HOST_DS)
    assert svc["spec"]["clusterIP"] == "None"
    assert svc["spec"]["ports"] == [{"name": "metrics", "port": PORT, "targetPort": "metrics", "protocol": "TCP"}]
    assert selects({"matchLabels": svc["spec"]["selector"]},
                   find(objects, "DaemonSet", HOST_DS)["spec"]["template"]["metadata"]["labels"])


# ---------------------------------------------------------------- rules

@pytest.mark.parametrize("rules,generated", [
    ("alerts/imds_exporter.rules.yml", "deploy/kubernetes/base/prometheusrule.yaml"),
    ("alerts/imds_exporter_pod_network.rules.yml", "deploy/kubernetes/overlays/pod-network/prometheusrule.yaml"),
])
def test_prometheusrule_spec_is_the_rule_file(rules, generated):
    rule_file = yaml.safe_load((ROOT / rules).read_text())
    prometheus_rule = yaml.safe_load((ROOT / generated).read_text())
    assert prometheus_rule["spec"] == rule_file


def test_networkpolicy_example_admits_only_prometheus_to_the_port(overlay):
    policy = yaml.safe_load((ROOT / "deploy/kubernetes/examples/networkpolicy.yaml").read_text())
    for ds in daemonsets(overlay):
        assert selects(policy["spec"]["podSelector"], ds["spec"]["template"]["metadata"]["labels"])
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    (rule,) = policy["spec"]["ingress"]
    assert rule["ports"] == [{"port": PORT, "protocol": "TCP"}]
    (peer,) = rule["from"]  # one peer holding both selectors = AND, not OR
    assert set(peer) == {"namespaceSelector", "podSelector"}


# ---------------------------------------------------------------- helpers

def baseline_violations(ds) -> list[str]:
    """The checks of the `baseline` Pod Security Standard that a pod template fails."""
    spec = ds["spec"]["template"]["spec"]
    found = []
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(field):
            found.append(field)
    for c in spec.get("initContainers", []) + spec["containers"]:
        ctx = c.get("securityContext", {})
        if ctx.get("privileged"):
            found.append("privileged")
        for cap in ctx.get("capabilities", {}).get("add", []):
            if cap not in BASELINE_CAPS:
                found.append(f"capability {cap}")
        for port in c.get("ports", []):
            # With hostNetwork the API server defaults hostPort to containerPort before admission.
            host_port = port.get("hostPort", port["containerPort"] if spec.get("hostNetwork") else 0)
            if host_port:
                found.append(f"hostPort {host_port}")
        if ctx.get("procMount", "Default") != "Default":
            found.append("procMount")
        if ctx.get("seccompProfile", {}).get("type") == "Unconfined":
            found.append("seccomp Unconfined")
    if any("hostPath" in v for v in spec.get("volumes", [])):
        found.append("hostPath")
    if spec.get("securityContext", {}).get("seccompProfile", {}).get("type") == "Unconfined":
        found.append("seccomp Unconfined")
    return sorted(found)


# ---------------------------------------------------------------- Prometheus without the Operator

def test_operator_less_scrape_config_labels_like_the_podmonitors():
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    assert job["kubernetes_sd_configs"][0]["role"] == "pod"
    relabel = job["relabel_configs"]
    assert {"source_labels": ["__meta_kubernetes_pod_label_app_kubernetes_io_name"],
            "regex": "imds-exporter", "action": "keep"} in relabel
    assert {"source_labels": ["__meta_kubernetes_pod_container_port_name"],
            "regex": "metrics", "action": "keep"} in relabel
    assert {"source_labels": ["__meta_kubernetes_pod_node_name"], "target_label": "instance"} in relabel
    views = {r["regex"]: r["replacement"] for r in relabel if r.get("target_label") == "view"}
    assert views == {"host-network-probe": "host", "pod-network-probe": "pod"}
    assert job["metrics_path"] == "/metrics"
