"""deploy/kubernetes: every object is valid against the Kubernetes API schemas (strict: an
unknown field is an error), the ServiceMonitors against the Prometheus Operator's types, the
objects refer to each other consistently, and the larder command lines are ones the binary
accepts. validate() collects every problem; the mutation test shows it finds them."""

import copy
import re

import pytest
import yaml

from conftest import DEPLOY, check_with_binary

K8S = DEPLOY / "kubernetes"
# The oldest release the manifests need (preStop `sleep` is on by default from 1.30) and the
# newest the validator knows.
KUBERNETES_VERSIONS = ("1.30.0", None)
# The Secrets a deployment creates (docs/OPERATING.md, "Kubernetes") and their keys.
SECRETS = {
    "larder-credentials": {"cache-password", "cache-token", "api-token", "database-password"},
    "larder-tls": {"tls.crt", "tls.key", "ca.crt"},
}


def load():
    """The kustomization and the objects it lists, plus its generated ConfigMaps' names."""
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    objects = []
    for name in kustomization["resources"]:
        objects += [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]
    return kustomization, objects


def servicemonitor_schema():
    """A JSON schema of ServiceMonitor from the Prometheus Operator's types (the
    cloudcoil-models-prometheus-operator package, generated from its CRDs), made strict: an
    object with declared properties takes no others, as `kubectl apply` (strict field
    validation) and the API server's pruning treat them."""
    models = pytest.importorskip("cloudcoil.models.prometheus_operator.v1")
    schema = models.ServiceMonitor.model_json_schema(by_alias=True)

    def strict(node):
        if isinstance(node, dict):
            if "properties" in node and not isinstance(node.get("additionalProperties"), dict):
                node["additionalProperties"] = False
            for value in node.values():
                strict(value)
        elif isinstance(node, list):
            for value in node:
                strict(value)

    strict(schema)
    return schema


def pod_templates(objects):
    return {(o["kind"], o["metadata"]["name"]): o for o in objects
            if o["kind"] in ("Deployment", "StatefulSet")}


def matches(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def check_schemas(objects, errors):
    import jsonschema
    import kubernetes_validate

    monitor_schema = servicemonitor_schema()
    for obj in objects:
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        if obj["kind"] == "ServiceMonitor":
            validator = jsonschema.Draft202012Validator(monitor_schema)
            errors += [f"{name}: {e.json_path}: {e.message}" for e in validator.iter_errors(obj)]
            continue
        for version in KUBERNETES_VERSIONS:
            version = version or kubernetes_validate.latest_version()
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                errors.append(f"{name} (Kubernetes {version}): {e.message} at {list(e.path)}")


def check_containers(kind, obj, configmaps, errors):
    spec = obj["spec"]["template"]["spec"]
    name = f"{kind}/{obj['metadata']['name']}"
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    for volume in volumes.values():
        if "configMap" in volume and volume["configMap"]["name"] not in configmaps:
            errors.append(f"{name}: volume {volume['name']} names an unknown ConfigMap")
        if "secret" in volume and volume["secret"]["secretName"] not in SECRETS:
            errors.append(f"{name}: volume {volume['name']} names an unknown Secret")
    for container in spec["containers"]:
        ports = {p["name"] for p in container.get("ports", [])}
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            port = container.get(probe, {}).get("httpGet", {}).get("port")
            if port is None:
                errors.append(f"{name}: no {probe}")
            elif port not in ports:
                errors.append(f"{name}: {probe} uses port {port!r}, not a container port")
        if "preStop" not in container.get("lifecycle", {}):
            errors.append(f"{name}: no preStop")
        resources = container.get("resources", {})
        if not {"cpu", "memory"} <= set(resources.get("requests", {})) or \
                "memory" not in resources.get("limits", {}):
            errors.append(f"{name}: requests (cpu, memory) and a memory limit are needed")
        for env in container.get("env", []):
            ref = env.get("valueFrom", {}).get("secretKeyRef")
            if ref and ref["key"] not in SECRETS.get(ref["name"], ()):
                errors.append(f"{name}: {env['name']} reads {ref['name']}/{ref['key']}, not a known secret key")
        for mount in container.get("volumeMounts", []):
            if mount["name"] not in volumes:
                errors.append(f"{name}: mount {mount['name']} has no volume")


def check_references(objects, configmaps, errors):
    workloads = pod_templates(objects)
    services = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Service"}
    for (kind, wname), obj in workloads.items():
        labels = obj["spec"]["template"]["metadata"]["labels"]
        if not matches(obj["spec"]["selector"]["matchLabels"], labels):
            errors.append(f"{kind}/{wname}: selector does not match its pods")
        check_containers(kind, obj, configmaps, errors)
        if kind == "StatefulSet":
            headless = services.get(obj["spec"]["serviceName"])
            if not headless or headless["spec"].get("clusterIP") != "None":
                errors.append(f"StatefulSet/{wname}: serviceName is not a headless Service")
    for sname, svc in services.items():
        pods = [w for w in workloads.values()
                if matches(svc["spec"]["selector"], w["spec"]["template"]["metadata"]["labels"])]
        if not pods:
            errors.append(f"Service/{sname}: selects no pods")
            continue
        container_ports = {(p["name"], p.get("protocol", "TCP")) for w in pods
                           for c in w["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])}
        for port in svc["spec"]["ports"]:
            if (port["targetPort"], port.get("protocol", "TCP")) not in container_ports:
                errors.append(f"Service/{sname}: port {port['name']} targets no container port")
    for obj in objects:
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        if obj["kind"] == "PodDisruptionBudget":
            selector = obj["spec"]["selector"]["matchLabels"]
            if not any(matches(selector, w["spec"]["template"]["metadata"]["labels"]) for w in workloads.values()):
                errors.append(f"{name}: selects no pods")
        if obj["kind"] == "HorizontalPodAutoscaler":
            target = obj["spec"]["scaleTargetRef"]
            if (target["kind"], target["name"]) not in workloads:
                errors.append(f"{name}: scales an unknown {target['kind']}")
            elif "replicas" in workloads[(target["kind"], target["name"])]["spec"]:
                errors.append(f"{name}: its target sets replicas, which the HPA owns")
        if obj["kind"] == "ServiceMonitor":
            selector = obj["spec"]["selector"]["matchLabels"]
            selected = [s for s in services.values() if matches(selector, s["metadata"].get("labels", {}))]
            for endpoint in obj["spec"]["endpoints"]:
                if not any(endpoint["port"] in {p["name"] for p in s["spec"]["ports"]} for s in selected):
                    errors.append(f"{name}: no selected Service has port {endpoint['port']}")
                creds = endpoint.get("authorization", {}).get("credentials", {})
                if creds.get("key") not in SECRETS.get(creds.get("name"), ()):
                    errors.append(f"{name}: its bearer token is not a known secret key")


def check_cache_node_list(objects, errors):
    """The gateway lists every cache node by its per-pod DNS name, as many as there are."""
    workloads = pod_templates(objects)
    cache = workloads.get(("StatefulSet", "larder-cache"))
    api = workloads.get(("Deployment", "larder-api"))
    if not cache or not api:
        errors.append("larder-cache StatefulSet or larder-api Deployment missing")
        return
    args = api["spec"]["template"]["spec"]["containers"][0]["args"]
    listed = next((a.split("=", 1)[1] for a in args if a.startswith("--cache-nodes=")), "")
    service, replicas = cache["spec"]["serviceName"], cache["spec"]["replicas"]
    if not isinstance(replicas, int):
        return  # the schema check reports it
    expected = ",".join(f"larder-cache-{i}.{service}:7070" for i in range(replicas))
    if listed != expected:
        errors.append(f"larder-api --cache-nodes is {listed!r}, the StatefulSet has {expected!r}")


def validate(kustomization, objects):
    errors = []
    listed = set(kustomization["resources"])
    present = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    if listed != present:
        errors.append(f"kustomization resources {sorted(listed)} != files {sorted(present)}")
    configmaps = set()
    for generator in kustomization.get("configMapGenerator", []):
        configmaps.add(generator["name"])
        for file in generator["files"]:
            if not (K8S / file).is_file():
                errors.append(f"configMapGenerator file {file} missing")
    check_schemas(objects, errors)
    check_references(objects, configmaps, errors)
    check_cache_node_list(objects, errors)
    return errors


def test_manifests_are_valid():
    pytest.importorskip("kubernetes_validate")
    kustomization, objects = load()
    kinds = sorted(o["kind"] for o in objects)
    assert kinds == ["Deployment", "HorizontalPodAutoscaler", "Namespace", "PodDisruptionBudget",
                     "PodDisruptionBudget", "Service", "Service", "Service", "ServiceMonitor",
                     "ServiceMonitor", "StatefulSet"], kinds
    assert validate(kustomization, objects) == []


def mutate(objects, kind, name, change):
    objects = copy.deepcopy(objects)
    for obj in objects:
        if obj["kind"] == kind and obj["metadata"]["name"] == name:
            change(obj)
    return objects


def pod(obj):
    return obj["spec"]["template"]["spec"]["containers"][0]


MISTAKES = {
    "unknown field in a Deployment": (
        "Deployment", "larder-api", lambda o: o["spec"].update(replica=3), "replica"),
    "wrong type in a StatefulSet": (
        "StatefulSet", "larder-cache", lambda o: o["spec"].update(replicas="three"), "three"),
    "unknown field in a ServiceMonitor endpoint": (
        "ServiceMonitor", "larder-cache", lambda o: o["spec"]["endpoints"][0].update(pathh="/metrics"), "pathh"),
    "bad interval in a ServiceMonitor": (
        "ServiceMonitor", "larder-api", lambda o: o["spec"]["endpoints"][0].update(interval="15 seconds"), "interval"),
    "probe on a port the container lacks": (
        "StatefulSet", "larder-cache", lambda o: pod(o)["readinessProbe"]["httpGet"].update(port="http"), "readinessProbe"),
    "Service selecting nothing": (
        "Service", "larder-cache", lambda o: o["spec"]["selector"].update({"app.kubernetes.io/component": "cach"}), "selects no pods"),
    "secret key misspelt": (
        "Deployment", "larder-api", lambda o: pod(o)["env"][0]["valueFrom"]["secretKeyRef"].update(key="api_token"), "api_token"),
    "cache nodes out of step with the replicas": (
        "StatefulSet", "larder-cache", lambda o: o["spec"].update(replicas=4), "--cache-nodes"),
    "ServiceMonitor on a missing port": (
        "ServiceMonitor", "larder-api", lambda o: o["spec"]["endpoints"][0].update(port="http"), "no selected Service"),
    "no preStop": (
        "Deployment", "larder-api", lambda o: pod(o).pop("lifecycle"), "preStop"),
}


@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_validation_finds_mistakes(mistake):
    pytest.importorskip("kubernetes_validate")
    kind, name, change, expected = MISTAKES[mistake]
    kustomization, objects = load()
    errors = validate(kustomization, mutate(objects, kind, name, change))
    assert any(expected in e for e in errors), errors


def test_the_binary_accepts_every_larder_command(larder_bin):
    _, objects = load()
    for (kind, name), obj in pod_templates(objects).items():
        container = pod(obj)
        env = {e["name"]: "test-value" for e in container["env"] if e["name"].startswith("LARDER_")}
        printed = check_with_binary(larder_bin, container["args"], env, K8S / "larder.toml")
        assert re.search(r'(url|database) = "postgres://larder@postgres\.larder\.svc:5432/larder"', printed), name


def test_kustomize_renders_the_base():
    """Where kubectl is installed (it is not on every machine, and no registry here has it),
    the base renders, every object lands in the larder namespace, and both workloads mount
    the generated (hash-named) ConfigMap."""
    import shutil

    import kubernetes_validate

    from conftest import run

    kubectl = shutil.which("kubectl")
    if not kubectl:
        pytest.skip("kubectl not installed")
    result = run([kubectl, "kustomize", str(K8S)])
    assert result.returncode == 0, result.stderr
    objects = [d for d in yaml.safe_load_all(result.stdout) if d]
    configmap = next(o["metadata"]["name"] for o in objects if o["kind"] == "ConfigMap")
    assert configmap.startswith("larder-config-")
    for obj in objects:
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == "larder", obj["metadata"]["name"]
        if obj["kind"] in ("Deployment", "StatefulSet"):
            volumes = obj["spec"]["template"]["spec"]["volumes"]
            assert any(v.get("configMap", {}).get("name") == configmap for v in volumes)
            assert pod(obj)["image"] == "larder:0.1.0"
        if obj["kind"] != "ServiceMonitor":
            kubernetes_validate.validate(obj, kubernetes_validate.latest_version(), strict=True)
