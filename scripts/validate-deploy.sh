#!/usr/bin/env bash
# Offline validation of the deployment artefacts: deploy/kubernetes (kustomize base and the
# ServiceMonitor component), deploy/istio, the Dockerfile, and the example config's
# acceptance by `oidc-authz check-config`. No cluster and no registry access needed once the
# Python tools are installed.
#
#   scripts/validate-deploy.sh            # local: skips check-config if the binary is not built
#   CI=true scripts/validate-deploy.sh    # CI: builds the binary; every skip is a failure
#
# Environment:
#   CI=true           CI mode (see above)
#   VENV=.venv        Python venv holding deploy/requirements.txt (created / completed if needed;
#                     shared with the e2e harness: only ever `pip install`ed into)
#   K8S_VERSIONS      Kubernetes versions to validate against (default "1.30.0 1.37.0":
#                     the oldest supported — gRPC probes, preStop sleep — and the newest bundled)
#   OIDC_AUTHZ_BIN    binary for check-config (default target/release/oidc-authz)
#   BUILD=1           build the release binary locally too (always done in CI mode)
#
# Prints one "PASS|FAIL|SKIP  <check> — <detail>" line per check and a summary; exits 1 if any
# check failed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

CI_MODE=false
case "${CI:-}" in true | TRUE | True | 1 | yes) CI_MODE=true ;; esac
VENV="${VENV:-.venv}"
K8S_VERSIONS="${K8S_VERSIONS:-1.30.0 1.37.0}"
OIDC_AUTHZ_BIN="${OIDC_AUTHZ_BIN:-target/release/oidc-authz}"

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
RESULTS="$WORK/results"
: >"$RESULTS"
export RESULTS

pass() { printf 'PASS  %s\n' "$*" | tee -a "$RESULTS"; }
fail() { printf 'FAIL  %s\n' "$*" | tee -a "$RESULTS"; }
# A skipped check is a failure in CI: CI must prove everything.
skip() {
  if $CI_MODE; then fail "$* (skipped, not allowed with CI=true)"; else printf 'SKIP  %s\n' "$*" | tee -a "$RESULTS"; fi
}
indent() { sed 's/^/      /'; }

echo "validate-deploy: repo $ROOT, CI mode $CI_MODE, Kubernetes versions: $K8S_VERSIONS"

# --- tools ------------------------------------------------------------------------------
if command -v kubectl >/dev/null 2>&1; then
  KUSTOMIZE=(kubectl kustomize)
elif command -v kustomize >/dev/null 2>&1; then
  KUSTOMIZE=(kustomize build)
else
  KUSTOMIZE=()
fi

tools_ok=true
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV" || tools_ok=false
fi
if $tools_ok && ! "$VENV/bin/python" - deploy/requirements.txt >/dev/null 2>&1 <<'PY'
# exit 0 iff every pinned requirement is installed at its pinned version
import sys
from importlib.metadata import version, PackageNotFoundError
for line in open(sys.argv[1]):
    line = line.split("#", 1)[0].strip()
    if not line:
        continue
    name, _, want = line.partition("==")
    try:
        if version(name) != want:
            sys.exit(1)
    except PackageNotFoundError:
        sys.exit(1)
PY
then
  echo "installing deploy/requirements.txt into $VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r deploy/requirements.txt || tools_ok=false
fi
if $tools_ok; then
  pass "tools — $VENV has deploy/requirements.txt (kubernetes-validate $("$VENV/bin/python" -c 'import kubernetes_validate.version as v; print(v.__version__)'), $("$VENV/bin/hadolint" --version))"
else
  fail "tools — could not create $VENV or install deploy/requirements.txt into it"
fi
if [ ${#KUSTOMIZE[@]} -gt 0 ]; then
  pass "tools — kustomize via '${KUSTOMIZE[*]}' ($(kubectl version --client 2>/dev/null | grep -i kustomize || kustomize version 2>/dev/null || true))"
else
  fail "tools — neither kubectl nor kustomize on PATH"
fi

# --- (a) kustomize renders ---------------------------------------------------------------
render() { # name dir out
  local name="$1" dir="$2" out="$3"
  if [ ${#KUSTOMIZE[@]} -eq 0 ]; then
    fail "render $name — no kustomize"
    return
  fi
  if "${KUSTOMIZE[@]}" "$dir" >"$out" 2>"$WORK/render.err"; then
    pass "render $name — ${KUSTOMIZE[*]} $dir: $(grep -c '^kind:' "$out") objects"
  else
    fail "render $name — ${KUSTOMIZE[*]} $dir"
    indent <"$WORK/render.err"
    : >"$out"
  fi
}
render base deploy/kubernetes "$WORK/base.yaml"

# The ServiceMonitor component is rendered through a throw-away overlay (kustomize wants
# paths relative to the kustomization).
mkdir -p "$WORK/overlay-servicemonitor"
rel() { python3 -c 'import os, sys; print(os.path.relpath(sys.argv[1], sys.argv[2]))' "$1" "$2"; }
cat >"$WORK/overlay-servicemonitor/kustomization.yaml" <<EOF
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: authz
resources:
  - $(rel "$ROOT/deploy/kubernetes" "$WORK/overlay-servicemonitor")
components:
  - $(rel "$ROOT/deploy/kubernetes/servicemonitor" "$WORK/overlay-servicemonitor")
EOF
render "base+servicemonitor (namespace authz)" "$WORK/overlay-servicemonitor" "$WORK/servicemonitor.yaml"

# --- (b) schemas, CRD structure, cross-references, docs ------------------------------------
if $tools_ok; then
  # Failures are reported line by line through $RESULTS; a non-zero exit means the checker
  # itself crashed.
  if ! "$VENV/bin/python" - "$WORK" "$K8S_VERSIONS" <<'PY'; then
import os, re, sys
import yaml
import kubernetes_validate
from kubernetes_validate.utils import SchemaNotFoundError

work, versions = sys.argv[1], sys.argv[2].split()
results = open(os.environ["RESULTS"], "a")

def report(status, msg, details=()):
    line = f"{status}  {msg}"
    print(line)
    results.write(line + "\n")
    for d in details:
        print("      " + d)
    results.flush()

def load_all(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]

def kn(o):
    return f"{o.get('kind')}/{(o.get('metadata') or {}).get('name')}"

sources = {
    "deploy/kubernetes (base)": load_all(os.path.join(work, "base.yaml")),
    "deploy/kubernetes + servicemonitor": load_all(os.path.join(work, "servicemonitor.yaml")),
    "deploy/istio/meshconfig.yaml": load_all("deploy/istio/meshconfig.yaml"),
    "deploy/istio/authorizationpolicy.yaml": load_all("deploy/istio/authorizationpolicy.yaml"),
    "deploy/istio/meshconfig-http.yaml": load_all("deploy/istio/meshconfig-http.yaml"),
}

# ---- structural checks for the CRDs kubernetes-validate has no schema for ----------------
DURATION = re.compile(r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$")

def keys_subset(errs, where, d, allowed):
    if not isinstance(d, dict):
        errs.append(f"{where}: expected a mapping, got {type(d).__name__}")
        return False
    extra = sorted(set(d) - set(allowed))
    if extra:
        errs.append(f"{where}: unknown field(s) {extra}")
    return True

def str_list(errs, where, v):
    if not (isinstance(v, list) and v and all(isinstance(x, str) and x for x in v)):
        errs.append(f"{where}: expected a non-empty list of strings")

def check_metadata(errs, o, namespaced_required=False):
    md = o.get("metadata")
    if not isinstance(md, dict) or not md.get("name"):
        errs.append("metadata.name: required")
    elif namespaced_required and not md.get("namespace"):
        errs.append("metadata.namespace: required (the policy applies in its own namespace)")

def check_label_selector(errs, where, sel):
    if keys_subset(errs, where, sel, {"matchLabels", "matchExpressions"}):
        if not sel:
            errs.append(f"{where}: empty selector")
        ml = sel.get("matchLabels", {})
        if not isinstance(ml, dict) or not all(isinstance(v, str) for v in ml.values()):
            errs.append(f"{where}.matchLabels: expected string values")

def check_servicemonitor(o):
    errs = []
    check_metadata(errs, o)
    spec = o.get("spec")
    if keys_subset(errs, "spec", spec, {
            "selector", "endpoints", "namespaceSelector", "jobLabel", "targetLabels",
            "podTargetLabels", "sampleLimit", "targetLimit", "labelLimit", "labelNameLengthLimit",
            "labelValueLengthLimit", "keepDroppedTargets", "attachMetadata", "scrapeProtocols",
            "fallbackScrapeProtocol", "scrapeClass", "bodySizeLimit", "selectorMechanism",
            "serviceDiscoveryRole", "convertClassicHistogramsToNHCB", "scrapeClassicHistograms",
            "nativeHistogramBucketLimit", "nativeHistogramMinBucketFactor"}):
        if "selector" not in spec:
            errs.append("spec.selector: required")
        else:
            check_label_selector(errs, "spec.selector", spec["selector"])
        eps = spec.get("endpoints")
        if not isinstance(eps, list) or not eps:
            errs.append("spec.endpoints: required, non-empty list")
        else:
            for i, ep in enumerate(eps):
                w = f"spec.endpoints[{i}]"
                if keys_subset(errs, w, ep, {
                        "port", "targetPort", "path", "scheme", "params", "interval",
                        "scrapeTimeout", "honorLabels", "honorTimestamps", "trackTimestampsStaleness",
                        "metricRelabelings", "relabelings", "tlsConfig", "bearerTokenSecret",
                        "authorization", "basicAuth", "oauth2", "followRedirects", "enableHttp2",
                        "filterRunning", "proxyUrl", "noProxy", "proxyFromEnvironment",
                        "proxyConnectHeader"}):
                    if not (ep.get("port") or ep.get("targetPort")):
                        errs.append(f"{w}: one of port / targetPort required")
                    if ep.get("scheme") not in (None, "http", "https", "HTTP", "HTTPS"):
                        errs.append(f"{w}.scheme: http or https")
                    for k in ("interval", "scrapeTimeout"):
                        if k in ep and not DURATION.match(str(ep[k])):
                            errs.append(f"{w}.{k}: not a duration: {ep[k]!r}")
                    if "path" in ep and not str(ep["path"]).startswith("/"):
                        errs.append(f"{w}.path: must start with /")
    return errs

OPERATION_KEYS = {"hosts", "notHosts", "ports", "notPorts", "methods", "notMethods", "paths", "notPaths"}
SOURCE_KEYS = {"principals", "notPrincipals", "requestPrincipals", "notRequestPrincipals",
               "namespaces", "notNamespaces", "ipBlocks", "notIpBlocks", "remoteIpBlocks",
               "notRemoteIpBlocks", "serviceAccounts", "notServiceAccounts"}

def check_authorizationpolicy(o):
    errs = []
    check_metadata(errs, o, namespaced_required=True)
    spec = o.get("spec")
    if keys_subset(errs, "spec", spec, {"selector", "targetRef", "targetRefs", "rules", "action", "provider"}):
        action = spec.get("action", "ALLOW")
        if action not in ("ALLOW", "DENY", "AUDIT", "CUSTOM"):
            errs.append(f"spec.action: {action!r} is not ALLOW/DENY/AUDIT/CUSTOM")
        if action == "CUSTOM":
            prov = spec.get("provider")
            if not (isinstance(prov, dict) and set(prov) == {"name"} and isinstance(prov["name"], str) and prov["name"]):
                errs.append("spec.provider: CUSTOM requires exactly {name: <extension provider>}")
        elif "provider" in spec:
            errs.append("spec.provider: only valid with action CUSTOM")
        if "selector" in spec:
            if keys_subset(errs, "spec.selector", spec["selector"], {"matchLabels"}):
                ml = spec["selector"].get("matchLabels")
                if not (isinstance(ml, dict) and ml and all(isinstance(v, str) for v in ml.values())):
                    errs.append("spec.selector.matchLabels: required, string values")
        rules = spec.get("rules")
        if not isinstance(rules, list) or not rules:
            errs.append("spec.rules: a CUSTOM/ALLOW policy without rules matches nothing")
        else:
            for i, r in enumerate(rules):
                w = f"spec.rules[{i}]"
                if not keys_subset(errs, w, r, {"from", "to", "when"}):
                    continue
                for j, t in enumerate(r.get("to", [])):
                    if keys_subset(errs, f"{w}.to[{j}]", t, {"operation"}):
                        op = t.get("operation")
                        if keys_subset(errs, f"{w}.to[{j}].operation", op, OPERATION_KEYS):
                            for k, v in op.items():
                                str_list(errs, f"{w}.to[{j}].operation.{k}", v)
                            for k in ("paths", "notPaths"):
                                for p in op.get(k, []):
                                    if not (p == "*" or p.startswith("/") or p.startswith("*")):
                                        errs.append(f"{w}.to[{j}].operation.{k}: {p!r} is not a path pattern")
                for j, f in enumerate(r.get("from", [])):
                    if keys_subset(errs, f"{w}.from[{j}]", f, {"source"}):
                        src = f.get("source")
                        if keys_subset(errs, f"{w}.from[{j}].source", src, SOURCE_KEYS):
                            for k, v in src.items():
                                str_list(errs, f"{w}.from[{j}].source.{k}", v)
                for j, c in enumerate(r.get("when", [])):
                    if keys_subset(errs, f"{w}.when[{j}]", c, {"key", "values", "notValues"}):
                        if not c.get("key"):
                            errs.append(f"{w}.when[{j}].key: required")
    return errs

GRPC_PROVIDER_KEYS = {"service", "port", "timeout", "failOpen", "statusOnError",
                      "includeRequestBodyInCheck", "clearRouteCache"}
HTTP_PROVIDER_KEYS = {"service", "port", "timeout", "pathPrefix", "failOpen", "statusOnError",
                      "includeRequestHeadersInCheck", "includeAdditionalHeadersInCheck",
                      "includeRequestBodyInCheck", "headersToUpstreamOnAllow", "headersToDownstreamOnAllow",
                      "headersToDownstreamOnDeny", "clearRouteCache", "includeHeadersInCheck"}
PROVIDER_TYPES = {"envoyExtAuthzHttp", "envoyExtAuthzGrpc", "zipkin", "lightstep", "datadog",
                  "stackdriver", "opencensus", "skywalking", "opentelemetry", "prometheus",
                  "envoyFileAccessLog", "envoyHttpAls", "envoyTcpAls", "envoyOtelAls", "sds"}
NORMALIZATIONS = {"DEFAULT", "NONE", "BASE", "MERGE_SLASHES", "DECODE_AND_MERGE_SLASHES"}

def check_meshconfig(errs, where, mc):
    if not isinstance(mc, dict):
        errs.append(f"{where}: expected a mapping")
        return
    eps = mc.get("extensionProviders")
    if not isinstance(eps, list) or not eps:
        errs.append(f"{where}.extensionProviders: required, non-empty list")
        return
    names = [p.get("name") for p in eps if isinstance(p, dict)]
    if len(names) != len(set(names)):
        errs.append(f"{where}.extensionProviders: duplicate names {names}")
    for i, p in enumerate(eps):
        w = f"{where}.extensionProviders[{i}]"
        if not isinstance(p, dict) or not p.get("name"):
            errs.append(f"{w}.name: required")
            continue
        kinds = set(p) - {"name"}
        if len(kinds) != 1 or not kinds <= PROVIDER_TYPES:
            errs.append(f"{w}: exactly one provider type required, got {sorted(kinds)}")
            continue
        if "envoyExtAuthzGrpc" in p:
            g = p["envoyExtAuthzGrpc"]
            if keys_subset(errs, f"{w}.envoyExtAuthzGrpc", g, GRPC_PROVIDER_KEYS):
                if not isinstance(g.get("service"), str) or not g.get("service"):
                    errs.append(f"{w}.envoyExtAuthzGrpc.service: required")
                if not (isinstance(g.get("port"), int) and 0 < g["port"] < 65536):
                    errs.append(f"{w}.envoyExtAuthzGrpc.port: required, 1-65535")
                if "timeout" in g and not DURATION.match(str(g["timeout"])):
                    errs.append(f"{w}.envoyExtAuthzGrpc.timeout: not a duration: {g['timeout']!r}")
                if "failOpen" in g and not isinstance(g["failOpen"], bool):
                    errs.append(f"{w}.envoyExtAuthzGrpc.failOpen: boolean")
                if "statusOnError" in g and not (isinstance(g["statusOnError"], str) and re.fullmatch(r"[1-5][0-9]{2}", g["statusOnError"])):
                    errs.append(f"{w}.envoyExtAuthzGrpc.statusOnError: a quoted HTTP status, e.g. \"503\"")
        if "envoyExtAuthzHttp" in p:
            g = p["envoyExtAuthzHttp"]
            if keys_subset(errs, f"{w}.envoyExtAuthzHttp", g, HTTP_PROVIDER_KEYS):
                if not isinstance(g.get("service"), str) or not g.get("service"):
                    errs.append(f"{w}.envoyExtAuthzHttp.service: required")
                if not (isinstance(g.get("port"), int) and 0 < g["port"] < 65536):
                    errs.append(f"{w}.envoyExtAuthzHttp.port: required, 1-65535")
                if "timeout" in g and not DURATION.match(str(g["timeout"])):
                    errs.append(f"{w}.envoyExtAuthzHttp.timeout: not a duration: {g['timeout']!r}")
                if "failOpen" in g and not isinstance(g["failOpen"], bool):
                    errs.append(f"{w}.envoyExtAuthzHttp.failOpen: boolean")
                if "statusOnError" in g and not (isinstance(g["statusOnError"], str) and re.fullmatch(r"[1-5][0-9]{2}", g["statusOnError"])):
                    errs.append(f"{w}.envoyExtAuthzHttp.statusOnError: a quoted HTTP status, e.g. \"503\"")
                for k in ("includeRequestHeadersInCheck", "headersToUpstreamOnAllow", "headersToDownstreamOnAllow",
                          "headersToDownstreamOnDeny"):
                    if k in g:
                        str_list(errs, f"{w}.envoyExtAuthzHttp.{k}", g[k])
    pn = mc.get("pathNormalization")
    if pn is not None and (not isinstance(pn, dict) or set(pn) != {"normalization"} or pn["normalization"] not in NORMALIZATIONS):
        errs.append(f"{where}.pathNormalization: {{normalization: one of {sorted(NORMALIZATIONS)}}}")

def check_istiooperator(o):
    errs = []
    check_metadata(errs, o)
    spec = o.get("spec")
    if keys_subset(errs, "spec", spec, {"profile", "hub", "tag", "revision", "namespace",
                                        "meshConfig", "components", "values",
                                        "unvalidatedValues", "installPackagePath"}):
        check_meshconfig(errs, "spec.meshConfig", spec.get("meshConfig"))
    return errs

STRUCTURAL = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): check_servicemonitor,
    ("security.istio.io/v1", "AuthorizationPolicy"): check_authorizationpolicy,
    ("install.istio.io/v1alpha1", "IstioOperator"): check_istiooperator,
}

# ---- (b) every object: Kubernetes JSON schema (strict) or the structural check ------------
for src, objs in sources.items():
    if not objs:
        report("FAIL", f"schema {src} — no objects (render failed?)")
        continue
    for o in objs:
        if not isinstance(o, dict) or "apiVersion" not in o or "kind" not in o:
            report("FAIL", f"schema {src} — document without apiVersion/kind")
            continue
        key = (o["apiVersion"], o["kind"])
        if key in STRUCTURAL:
            errs = STRUCTURAL[key](o)
            what = f"structural {src} {kn(o)} ({o['apiVersion']})"
            if errs:
                report("FAIL", what, errs)
            else:
                report("PASS", f"{what} — CRD, no bundled schema: checked apiVersion/kind/required and known fields")
            continue
        errs, checked = [], []
        for v in versions:
            try:
                got = kubernetes_validate.validate(o, v, strict=True)
                checked.append(got)
            except kubernetes_validate.ValidationError as e:
                path = ".".join(str(p) for p in e.path)
                errs.append(f"k8s {v}: {path}: {e.message}")
            except SchemaNotFoundError as e:
                errs.append(f"k8s {v}: no schema for {o['apiVersion']} {o['kind']} and no structural check: {e.message}")
        what = f"schema {src} {kn(o)} ({o['apiVersion']})"
        if errs:
            report("FAIL", what, errs)
        else:
            report("PASS", f"{what} — strict, Kubernetes {', '.join(checked)}")

# ---- cross-references: the objects must agree with each other and with the config ---------
def by_kind(objs, kind):
    return [o for o in objs if o.get("kind") == kind]

def subset(a, b):
    return all(b.get(k) == v for k, v in (a or {}).items())

def xref(src, objs):
    errs = []
    deps = by_kind(objs, "Deployment")
    if len(deps) != 1:
        return [f"expected exactly one Deployment, found {len(deps)}"]
    dep = deps[0]
    spec = dep["spec"]
    pod = spec["template"]["spec"]
    pod_labels = spec["template"]["metadata"].get("labels", {})
    if not subset(spec["selector"].get("matchLabels"), pod_labels):
        errs.append("Deployment selector does not match its pod labels")
    if spec.get("replicas", 1) < 2:
        errs.append("Deployment replicas < 2")
    ctrs = pod["containers"]
    c = ctrs[0]
    ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    if ports != {"grpc": 9001, "admin": 9002}:
        errs.append(f"container ports {ports} != grpc 9001, admin 9002")
    if c.get("args") != ["serve", "--config", "/etc/oidc-authz/config.yaml"]:
        errs.append(f"container args {c.get('args')}")
    lp, rp = c.get("livenessProbe", {}), c.get("readinessProbe", {})
    if lp.get("grpc", {}).get("port") != 9001:
        errs.append("livenessProbe is not grpc on 9001")
    if rp.get("httpGet", {}).get("path") != "/readyz" or rp["httpGet"].get("port") not in ("admin", 9002):
        errs.append("readinessProbe is not httpGet /readyz on admin")
    psc, csc = pod.get("securityContext", {}), c.get("securityContext", {})
    want = {"runAsNonRoot": True, "readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False}
    for k, v in want.items():
        if csc.get(k, psc.get(k)) != v:
            errs.append(f"securityContext.{k} != {v}")
    if csc.get("runAsUser", psc.get("runAsUser")) != 65532:
        errs.append("runAsUser != 65532")
    if csc.get("capabilities", {}).get("drop") != ["ALL"]:
        errs.append("capabilities.drop != [ALL]")
    if (csc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
        errs.append("seccompProfile != RuntimeDefault")
    for k in ("requests", "limits"):
        if not {"cpu", "memory"} <= set(c.get("resources", {}).get(k, {})):
            errs.append(f"resources.{k} must set cpu and memory")
    # config: a ConfigMap mounted as a directory (no subPath) that holds config.yaml
    cms = {o["metadata"]["name"]: o for o in by_kind(objs, "ConfigMap")}
    vols = {v["name"]: v for v in pod.get("volumes", [])}
    cfg_mounts = [m for m in c.get("volumeMounts", []) if m.get("mountPath") == "/etc/oidc-authz"]
    if len(cfg_mounts) != 1:
        errs.append("no single volumeMount at /etc/oidc-authz")
        config = None
    else:
        m = cfg_mounts[0]
        if "subPath" in m or "subPathExpr" in m:
            errs.append("config mount uses subPath: ConfigMap updates would never reach the pod")
        cm_name = vols.get(m["name"], {}).get("configMap", {}).get("name")
        if cm_name not in cms:
            errs.append(f"config volume refers to ConfigMap {cm_name!r}, not rendered")
            config = None
        elif "config.yaml" not in cms[cm_name].get("data", {}):
            errs.append(f"ConfigMap {cm_name} has no config.yaml")
            config = None
        else:
            config = yaml.safe_load(cms[cm_name]["data"]["config.yaml"])
    if config is not None:
        listen = config.get("listen", {})
        for name, port in (("grpc", 9001), ("admin", 9002)):
            addr = str(listen.get(name, ""))
            if not addr.endswith(f":{port}") or addr.startswith("127.") or addr.startswith("[::1]"):
                errs.append(f"config listen.{name} {addr!r} is not reachable on the pod port {port}")
    # Service
    svcs = by_kind(objs, "Service")
    if len(svcs) != 1:
        errs.append(f"expected one Service, found {len(svcs)}")
    else:
        s = svcs[0]["spec"]
        if not subset(s.get("selector"), pod_labels):
            errs.append("Service selector does not match the pod labels")
        sp = {p["name"]: p for p in s["ports"]}
        if sp.get("grpc", {}).get("port") != 9001 or sp["grpc"].get("appProtocol") != "grpc":
            errs.append("Service port grpc is not 9001 with appProtocol grpc")
        if sp.get("admin", {}).get("port") != 9002:
            errs.append("Service port admin is not 9002")
        for p in s["ports"]:
            if p.get("targetPort") not in ports and p.get("targetPort") not in ports.values():
                errs.append(f"Service targetPort {p.get('targetPort')!r} is no container port")
    # selectors of the satellites
    for kind in ("PodDisruptionBudget", "NetworkPolicy"):
        for o in by_kind(objs, kind):
            sel = o["spec"].get("selector") or o["spec"].get("podSelector")
            if not sel or not subset(sel.get("matchLabels"), pod_labels):
                errs.append(f"{kn(o)} selector does not select the pods")
    for o in by_kind(objs, "HorizontalPodAutoscaler"):
        ref = o["spec"]["scaleTargetRef"]
        if (ref["kind"], ref["name"]) != ("Deployment", dep["metadata"]["name"]):
            errs.append(f"{kn(o)} does not target the Deployment")
        if o["spec"].get("minReplicas", 1) < 2:
            errs.append(f"{kn(o)} minReplicas < 2")
    for o in by_kind(objs, "ServiceMonitor"):
        if not svcs or not subset(o["spec"]["selector"].get("matchLabels"), svcs[0]["metadata"].get("labels", {})):
            errs.append(f"{kn(o)} selector does not select the Service")
        if {ep.get("port") for ep in o["spec"]["endpoints"]} - {"admin"}:
            errs.append(f"{kn(o)} scrapes a port other than admin")
    sa = pod.get("serviceAccountName")
    if sa and sa not in {o["metadata"]["name"] for o in by_kind(objs, "ServiceAccount")}:
        errs.append(f"ServiceAccount {sa} not rendered")
    return errs, config

base_objs = sources["deploy/kubernetes (base)"]
configs = {}
for src in ("deploy/kubernetes (base)", "deploy/kubernetes + servicemonitor"):
    if not sources[src]:
        continue
    errs, config = xref(src, sources[src])
    configs[src] = config
    kinds = sorted({o["kind"] for o in sources[src]})
    if src.endswith("servicemonitor") and "ServiceMonitor" not in kinds:
        errs.append("the servicemonitor variant renders no ServiceMonitor")
    if src.endswith("(base)") and "ServiceMonitor" in kinds:
        errs.append("the base must render without the ServiceMonitor CRD")
    required = {"Deployment", "Service", "ConfigMap", "PodDisruptionBudget", "HorizontalPodAutoscaler", "NetworkPolicy"}
    if required - set(kinds):
        errs.append(f"missing kinds {sorted(required - set(kinds))}")
    if src.endswith("(base)") and any("namespace" in (o.get("metadata") or {}) for o in sources[src]):
        errs.append("the base must be namespace-agnostic (an object sets metadata.namespace)")
    if errs:
        report("FAIL", f"consistency {src}", errs)
    else:
        report("PASS", f"consistency {src} — selectors, ports, probes, config mount (directory, no subPath), security context, listen addresses")

# ---- Istio: provider ↔ Service, policy ↔ provider, Helm values ↔ IstioOperator -------------
errs = []
iop = sources["deploy/istio/meshconfig.yaml"]
aps = sources["deploy/istio/authorizationpolicy.yaml"]
try:
    mc = iop[0]["spec"]["meshConfig"]
    providers = {p["name"]: p for p in mc["extensionProviders"]}
    g = providers["oidc-authz"]["envoyExtAuthzGrpc"]
    svc = by_kind(base_objs, "Service")[0] if base_objs else None
    host = g["service"]
    if not re.fullmatch(r"oidc-authz\.[a-z0-9]([-a-z0-9]*[a-z0-9])?\.svc\.cluster\.local", host):
        errs.append(f"provider service {host!r} is not oidc-authz.<namespace>.svc.cluster.local")
    if svc and g["port"] != {p["name"]: p["port"] for p in svc["spec"]["ports"]}.get("grpc"):
        errs.append("provider port is not the Service's grpc port")
    if g.get("failOpen") is not False:
        errs.append("provider failOpen must be explicitly false")
    if "timeout" not in g:
        errs.append("provider timeout must be set (Istio's default is 600s)")
    for ap in aps:
        if ap.get("kind") == "AuthorizationPolicy" and ap["spec"].get("action") == "CUSTOM":
            if ap["spec"]["provider"]["name"] not in providers:
                errs.append(f"{kn(ap)} names provider {ap['spec']['provider']['name']!r}, not in meshconfig.yaml")
    values = yaml.safe_load(open("deploy/istio/istiod-values.yaml"))
    verrs = []
    check_meshconfig(verrs, "istiod-values.yaml meshConfig", values.get("meshConfig"))
    errs += verrs
    if values.get("meshConfig") != mc:
        errs.append("istiod-values.yaml meshConfig differs from meshconfig.yaml spec.meshConfig")
except (KeyError, IndexError, TypeError, OSError) as e:
    errs.append(f"cannot read the Istio provider: {type(e).__name__}: {e}")
# the HTTP-door provider (DESIGN §9): fail closed, 503 on error, /ext-authz prefix, the listen.http port
# that the NetworkPolicy opens to proxies only, the token headers in, the claim headers out
try:
    hp = {p["name"]: p for p in sources["deploy/istio/meshconfig-http.yaml"][0]["spec"]["meshConfig"]["extensionProviders"]}
    h = hp["oidc-authz-http"]["envoyExtAuthzHttp"]
    if h.get("pathPrefix") != "/ext-authz":
        errs.append("meshconfig-http.yaml: pathPrefix must be /ext-authz")
    if h.get("failOpen") is not False or h.get("statusOnError") != "503" or "timeout" not in h:
        errs.append("meshconfig-http.yaml: failOpen false, statusOnError \"503\" and a timeout are required")
    if h.get("port") != 9004:
        errs.append("meshconfig-http.yaml: port is not 9004 (listen.http in docs and the NetworkPolicy)")
    if not {"authorization", "cookie", "dpop"} <= set(h.get("includeRequestHeadersInCheck", [])):
        errs.append("meshconfig-http.yaml: includeRequestHeadersInCheck must pass authorization, cookie, dpop")
    if "x-authz-client" not in h.get("headersToUpstreamOnAllow", []):
        errs.append("meshconfig-http.yaml: headersToUpstreamOnAllow must include x-authz-client")
    if h.get("service") != g["service"]:
        errs.append("meshconfig-http.yaml: service differs from meshconfig.yaml's")
except (KeyError, IndexError, TypeError, NameError) as e:
    errs.append(f"cannot read the Istio HTTP provider: {type(e).__name__}: {e}")
nps = by_kind(base_objs, "NetworkPolicy")
if not any(any(p.get("port") == 9004 for p in r.get("ports", [])) for np_ in nps for r in np_["spec"].get("ingress", [])):
    errs.append("NetworkPolicy has no ingress rule for the HTTP authorization port 9004")
for np_ in nps:
    for r in np_["spec"].get("ingress", []):
        if any(p.get("port") == 9004 for p in r.get("ports", [])):
            if any(f == {"podSelector": {}} or not f for f in r.get("from", [{}])) or "from" not in r:
                errs.append("NetworkPolicy HTTP rule admits every pod (the HTTP door trusts X-Forwarded-*)")
if errs:
    report("FAIL", "consistency deploy/istio", errs)
else:
    report("PASS", "consistency deploy/istio — provider oidc-authz → Service grpc port, failOpen false, timeout set; AuthorizationPolicy provider exists; istiod-values.yaml == meshconfig.yaml; oidc-authz-http (envoyExtAuthzHttp) /ext-authz on 9004, fail closed 503; NetworkPolicy opens 9004 to named proxies only")

# ---- docs/deployment.md quotes the Istio files verbatim -------------------------------------
try:
    doc = open("docs/deployment.md").read()
    missing = [p for p in ("deploy/istio/meshconfig.yaml", "deploy/istio/istiod-values.yaml",
                           "deploy/istio/authorizationpolicy.yaml", "deploy/istio/meshconfig-http.yaml",
                           "deploy/nginx/oidc-authz.conf", "deploy/caddy/Caddyfile",
                           "deploy/traefik/dynamic.yaml")
               if open(p).read().strip() not in doc]
    if missing:
        report("FAIL", "docs docs/deployment.md — out of date, does not quote verbatim: " + ", ".join(missing))
    else:
        report("PASS", "docs docs/deployment.md — quotes deploy/istio/*.yaml and the HTTP-door proxy samples verbatim")
except OSError as e:
    report("FAIL", f"docs docs/deployment.md — {e}")

# ---- hand the rendered config to check-config ----------------------------------------------
config_text = None
for o in base_objs:
    if o.get("kind") == "ConfigMap" and "config.yaml" in o.get("data", {}):
        config_text = o["data"]["config.yaml"]
if config_text is not None:
    with open(os.path.join(work, "config.yaml"), "w") as f:
        f.write(config_text)
    # Negative control: check-config must reject an unknown key (DESIGN §3 deny_unknown_fields).
    with open(os.path.join(work, "config-bad.yaml"), "w") as f:
        f.write(config_text + "\nnot_a_setting: true\n")
PY
    fail "schema/consistency — the Python checker crashed (traceback above)"
  fi
else
  fail "schema — skipped: no Python tools"
fi

# --- Dockerfile lint --------------------------------------------------------------------
if $tools_ok; then
  if "$VENV/bin/hadolint" --no-color Dockerfile >"$WORK/hadolint.out" 2>&1; then
    pass "dockerfile Dockerfile — hadolint $("$VENV/bin/hadolint" --version | awk '{print $NF}'): no findings"
  else
    fail "dockerfile Dockerfile — hadolint findings:"
    indent <"$WORK/hadolint.out"
  fi
  # The image and the Deployment must agree (UID, ports, entrypoint + args).
  derrs=()
  grep -qx 'USER 65532:65532' Dockerfile || derrs+=("USER is not 65532:65532 (Deployment runAsUser)")
  grep -qx 'EXPOSE 9001 9002' Dockerfile || derrs+=("EXPOSE is not 9001 9002")
  grep -qx 'ENTRYPOINT \["/usr/local/bin/oidc-authz"\]' Dockerfile || derrs+=("ENTRYPOINT is not [/usr/local/bin/oidc-authz]")
  grep -qx 'CMD \["serve", "--config", "/etc/oidc-authz/config.yaml"\]' Dockerfile || derrs+=("CMD differs from the Deployment args")
  grep -q -- '--locked' Dockerfile || derrs+=("cargo build without --locked")
  for p in target .git .venv node_modules; do
    grep -qx "$p" .dockerignore || derrs+=(".dockerignore does not exclude $p")
  done
  if [ ${#derrs[@]} -eq 0 ]; then
    pass "dockerfile consistency — USER/EXPOSE/ENTRYPOINT/CMD match deploy/kubernetes; --locked; .dockerignore"
  else
    fail "dockerfile consistency"
    printf '%s\n' "${derrs[@]}" | indent
  fi
fi

# --- (c) check-config on the rendered ConfigMap -------------------------------------------
if [ ! -f "$WORK/config.yaml" ]; then
  fail "check-config — no config.yaml extracted from the rendered ConfigMap"
else
  if $CI_MODE || [ "${BUILD:-0}" = 1 ]; then
    echo "building the release binary (cargo build --release --locked --bin oidc-authz)"
    if ! cargo build --release --locked --bin oidc-authz >"$WORK/build.log" 2>&1; then
      fail "check-config — cargo build --release --locked failed:"
      tail -n 30 "$WORK/build.log" | indent
      build_failed=true
    fi
  fi
  if ${build_failed:-false}; then
    : # reported above
  elif [ ! -x "$OIDC_AUTHZ_BIN" ]; then
    skip "check-config — $OIDC_AUTHZ_BIN not built (cargo build --release, or BUILD=1 $0)"
  elif ! "$OIDC_AUTHZ_BIN" --help 2>&1 | grep -q 'check-config'; then
    skip "check-config — $OIDC_AUTHZ_BIN has no check-config subcommand (not in its --help) yet"
  else
    if "$OIDC_AUTHZ_BIN" check-config --config "$WORK/config.yaml" >"$WORK/cc.out" 2>&1; then
      pass "check-config — $OIDC_AUTHZ_BIN accepts the ConfigMap's config.yaml"
    else
      fail "check-config — $OIDC_AUTHZ_BIN rejects the ConfigMap's config.yaml:"
      indent <"$WORK/cc.out"
    fi
    if "$OIDC_AUTHZ_BIN" check-config --config "$WORK/config-bad.yaml" >"$WORK/cc-bad.out" 2>&1; then
      fail "check-config negative control — a config with an unknown key was accepted (check-config checks nothing?)"
    else
      pass "check-config negative control — an unknown key is rejected"
    fi
  fi
fi

# --- summary ----------------------------------------------------------------------------
n_pass=$(grep -c '^PASS' "$RESULTS" || true)
n_fail=$(grep -c '^FAIL' "$RESULTS" || true)
n_skip=$(grep -c '^SKIP' "$RESULTS" || true)
echo "validate-deploy: $n_pass passed, $n_fail failed, $n_skip skipped"
if [ "$n_fail" -gt 0 ]; then
  echo "validate-deploy: FAIL"
  exit 1
fi
echo "validate-deploy: PASS"
