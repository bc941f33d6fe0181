#!/usr/bin/env python3
"""Check the PromQL of the Grafana dashboard and of the Prometheus rules against what the server
exports. Python standard library only (plus `promtool` for parsing).

    scripts/check-dashboard.py [--promtool PATH]

Checks, each failure printed as `FAIL  <where>: <what>`:
  * the exported metrics are derived from src/observe/metrics.rs (not a hand-kept list): every
    `let x = <Type>::new(opts("name", "help"), &["label", …])` that is registered; histograms
    add `_bucket` (with `le`), `_sum` and `_count`;
  * every PromQL expression of deploy/grafana/oidc-authz.json (panel targets, `label_values`
    variables) and of deploy/prometheus/oidc-authz.rules.yaml uses only those metric names,
    plus, in the rules, the series the rules record themselves; the dashboard must not depend on
    recorded series (it works without the rules) and may use exactly one metric that is not
    exported yet, FUTURE_METRICS below, in a panel whose title says FUTURE;
  * label names in selectors exist on the metric (or are target labels such as job/instance),
    and `reason` values are reason codes of src/decision.rs;
  * every expression parses: all are written into one temporary rules file and checked with
    `promtool check rules` (Grafana variables replaced: $__rate_interval → 5m, others → 1);
  * the dashboard's panels use the `${datasource}` variable; every alert has a `runbook_url`
    pointing at a heading of docs/operations.md that is the alert's name.
Exit 0 when all pass, 1 otherwise, 2 when promtool is missing.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
METRICS_RS = ROOT / "src/observe/metrics.rs"
DECISION_RS = ROOT / "src/decision.rs"
DASHBOARD = ROOT / "deploy/grafana/oidc-authz.json"
RULES = ROOT / "deploy/prometheus/oidc-authz.rules.yaml"
OPERATIONS = ROOT / "docs/operations.md"

# Metrics the dashboard shows before the server exports them. Exactly these, and only in the
# dashboard, in a panel titled FUTURE. Remove an entry once src/observe/metrics.rs defines it.
FUTURE_METRICS = {"oidc_authz_shadow_disagreements_total"}

# Labels Prometheus attaches at scrape time (and Kubernetes service discovery commonly adds).
TARGET_LABELS = {"job", "instance", "namespace", "pod", "service", "endpoint", "container", "cluster"}

PROMQL_KEYWORDS = {"and", "or", "unless", "offset", "bool", "inf", "nan", "atan2", "by", "without",
                   "on", "ignoring", "group_left", "group_right"}

failures = []


def fail(where, what):
    failures.append(f"FAIL  {where}: {what}")
    print(failures[-1])


def rel(p):
    return str(Path(p).relative_to(ROOT))


# --- exported metrics, from src/observe/metrics.rs -------------------------------------------------------

STMT = re.compile(
    r"let\s+(?P<var>\w+)\s*=\s*(?P<type>(?:Int)?(?:Counter|Gauge)(?:Vec)?|Histogram(?:Vec)?)"
    r"::(?:new|with_opts)\((?P<args>.*?)\)\?;",
    re.S,
)
OPTS_CALL = re.compile(r'\b(?P<ctor>opts|Opts::new|HistogramOpts::new)\(\s*"(?P<name>[^"]+)"\s*,\s*"(?P<help>[^"]*)"')
NAMESPACE = re.compile(r'\.namespace\(\s*"([^"]+)"\s*\)')


def exported_metrics():
    src = METRICS_RS.read_text(encoding="utf-8")
    helper = re.search(r"fn\s+opts\s*\([^)]*\)\s*->\s*Opts\s*\{(.*?)\n\}", src, re.S)
    helper_ns = None
    if helper:
        m = NAMESPACE.search(helper.group(1))
        helper_ns = m.group(1) if m else ""
    metrics = {}
    for st in STMT.finditer(src):
        args = st.group("args")
        oc = OPTS_CALL.search(args)
        if not oc:
            continue
        if oc.group("ctor") == "opts":
            if helper_ns is None:
                fail(rel(METRICS_RS), "`opts(` is used but `fn opts` with a namespace was not found")
                continue
            ns = helper_ns
        else:
            m = NAMESPACE.search(args)
            ns = m.group(1) if m else ""
        name = f"{ns}_{oc.group('name')}" if ns else oc.group("name")
        after = args[oc.end():]
        lm = re.search(r"&\[([^\]]*)\]", after)
        labels = set(re.findall(r'"([^"]+)"', lm.group(1))) if lm else set()
        var = st.group("var")
        if not re.search(rf"\bregister\(\s*Box::new\(\s*{var}\b", src):
            continue  # defined but not registered: not exported
        kind = "histogram" if st.group("type").startswith("Histogram") else st.group("type").lower()
        metrics[name] = {"kind": kind, "labels": labels, "help": oc.group("help")}
    # Guard against a definition style this parser does not understand: every metric name
    # literal handed to an Opts constructor must have been found above.
    literals = {m.group("name") for m in OPTS_CALL.finditer(src)}
    found = set(metrics)
    for lit in literals:
        if not any(n == lit or n.endswith("_" + lit) for n in found):
            fail(rel(METRICS_RS), f"metric `{lit}` is defined in a way this script does not parse (or is not registered)")
    if not metrics:
        fail(rel(METRICS_RS), "no metric definitions found (has the file's style changed?)")
    names = {}
    for name, m in metrics.items():
        if m["kind"] == "histogram":
            names[name + "_bucket"] = m["labels"] | {"le"}
            names[name + "_sum"] = set(m["labels"])
            names[name + "_count"] = set(m["labels"])
        else:
            names[name] = set(m["labels"])
    return metrics, names


def reason_codes():
    src = DECISION_RS.read_text(encoding="utf-8")
    body = re.search(r"fn\s+code\s*\(self\)\s*->\s*&'static str\s*\{(.*?)\n    \}", src, re.S)
    if not body:
        fail(rel(DECISION_RS), "fn code (the reason codes) not found")
        return set()
    return set(re.findall(r'=>\s*"([a-z_]+)"', body.group(1)))


# --- the rules file (a small YAML reader for its own style; cross-checked with PyYAML if present)


def read_rules():
    """[(kind, name, expr, runbook_url)] for each rule, kind 'record' or 'alert'."""
    lines = RULES.read_text(encoding="utf-8").splitlines()
    rules = []
    cur = None
    i = 0
    key_re = re.compile(r"^(?P<indent>\s*)(?P<dash>- )?(?P<key>record|alert|expr|runbook_url):\s*(?P<val>.*)$")
    while i < len(lines):
        m = key_re.match(lines[i])
        if not m:
            i += 1
            continue
        key, val = m.group("key"), m.group("val").strip()
        col = len(m.group("indent")) + (2 if m.group("dash") else 0)
        if key in ("record", "alert"):
            cur = {"kind": key, "name": unquote(val), "expr": None, "runbook_url": None, "line": i + 1}
            rules.append(cur)
            i += 1
            continue
        if cur is None:
            fail(rel(RULES), f"line {i + 1}: `{key}:` outside a rule")
            i += 1
            continue
        if key == "expr" and val in ("|", "|-", "|+", ">", ">-", ">+"):
            block = []
            i += 1
            while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > col):
                block.append(lines[i])
                i += 1
            text = "\n".join(block)
            cur["expr"] = dedent(text) if val.startswith("|") else " ".join(text.split())
            continue
        if val.startswith(("|", ">", "&", "*", "!", "[", "{")):
            fail(rel(RULES), f"line {i + 1}: `{key}: {val}` — this YAML form is not supported by check-dashboard.py")
        cur[key] = unquote(val)
        i += 1
    for r in rules:
        if not r["expr"]:
            fail(rel(RULES), f"line {r['line']}: {r['kind']} {r['name']} has no expr")
    try:
        import yaml  # optional cross-check of the reader above
    except ImportError:
        return rules
    doc = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    ref = [(("record" if "record" in r else "alert"), r.get("record") or r.get("alert"), r["expr"])
           for g in doc["groups"] for r in g["rules"]]
    mine = [(r["kind"], r["name"], r["expr"]) for r in rules]
    if [(k, n, " ".join(str(e).split())) for k, n, e in ref] != [(k, n, " ".join(e.split())) for k, n, e in mine]:
        fail(rel(RULES), "the rules read by this script differ from PyYAML's reading: fix read_rules()")
    return rules


def unquote(v):
    v = v.split(" #", 1)[0].strip() if not v.startswith(("'", '"')) else v
    if len(v) >= 2 and v[0] == v[-1] == '"':
        return json.loads(v)
    if len(v) >= 2 and v[0] == v[-1] == "'":
        return v[1:-1].replace("''", "'")
    return v


def dedent(text):
    ls = [l for l in text.splitlines() if l.strip()]
    n = min((len(l) - len(l.lstrip()) for l in ls), default=0)
    return "\n".join(l[n:] for l in text.splitlines()).strip("\n")


# --- the dashboard --------------------------------------------------------------------------------


def walk_panels(panels):
    for p in panels:
        yield p
        yield from walk_panels(p.get("panels", []))


def dashboard_exprs(dash):
    """[(where, expr, future_ok)]"""
    out = []
    vars_ = dash.get("templating", {}).get("list", [])
    if not any(v.get("type") == "datasource" and v.get("query") == "prometheus" for v in vars_):
        fail(rel(DASHBOARD), "no Prometheus datasource variable (templating: type datasource, query prometheus)")
    ds_names = {v["name"] for v in vars_ if v.get("type") == "datasource"}
    ids = set()
    for p in walk_panels(dash.get("panels", [])):
        title = p.get("title", "?")
        if p.get("id") in ids:
            fail(rel(DASHBOARD), f"panel {title!r}: duplicate id {p.get('id')}")
        ids.add(p.get("id"))
        for t in p.get("targets", []):
            ds = (t.get("datasource") or p.get("datasource") or {}).get("uid", "")
            if ds.strip("${}") not in ds_names:
                fail(rel(DASHBOARD), f"panel {title!r}: datasource {ds!r} is not the datasource variable")
            if "expr" not in t or not t["expr"].strip():
                fail(rel(DASHBOARD), f"panel {title!r} target {t.get('refId')}: no expr")
                continue
            out.append((f"dashboard panel {title!r} {t.get('refId')}", t["expr"], "FUTURE" in title))
    for v in vars_:
        if v.get("type") != "query":
            continue
        q = v.get("query")
        q = q.get("query", "") if isinstance(q, dict) else (q or "")
        m = re.fullmatch(r"\s*label_values\((.*),\s*(\w+)\s*\)\s*", q)
        if m:
            out.append((f"dashboard variable {v['name']}", m.group(1), False))
        elif re.fullmatch(r"\s*label_values\(\s*\w+\s*\)\s*", q):
            continue
        else:
            m = re.fullmatch(r"\s*query_result\((.*)\)\s*", q)
            if m:
                out.append((f"dashboard variable {v['name']}", m.group(1), False))
            else:
                fail(rel(DASHBOARD), f"variable {v['name']}: query {q!r} not understood")
    return out


# --- PromQL --------------------------------------------------------------------------------------

GRAFANA_INTERVALS = re.compile(r"\$\{?__(?:rate_interval|interval|range)(?:_ms|_s)?\}?")
STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')


def substitute_grafana(expr):
    expr = GRAFANA_INTERVALS.sub("5m", expr)
    # other variables: keep them inside strings (label values), make them numbers elsewhere
    parts, last = [], 0
    for m in STRING.finditer(expr):
        parts.append(re.sub(r"\$\{?\w+\}?|\[\[\w+\]\]", "1", expr[last:m.start()]))
        parts.append(m.group(0))
        last = m.end()
    parts.append(re.sub(r"\$\{?\w+\}?|\[\[\w+\]\]", "1", expr[last:]))
    return "".join(parts)


def selectors(expr):
    """[(metric name or '', {label: [(op, value)]})] for each vector selector."""
    out = []
    # strings first, so braces inside label values do not confuse the scan
    strings = []

    def keep(m):
        # a placeholder free of ASCII digits and letters, which the scans below look for
        strings.append(m.group(0))
        return '"\x00' + "".join(chr(0x2460 + int(d)) for d in str(len(strings) - 1)) + '\x00"'

    s = STRING.sub(keep, expr)
    s = re.sub(r"\[[^\]]*\]", " ", s)  # ranges, subqueries
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    s = re.sub(r"\boffset\s+-?[0-9smhdwy]+", " ", s)
    # numbers (so that the exponent of 1e3 is not read as a name)
    s = re.sub(r"(?<![A-Za-z0-9_:])(?:0[xX][0-9a-fA-F]+|[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)", " ", s)
    pos = 0
    token = re.compile(r"(?P<name>[A-Za-z_:][A-Za-z0-9_:]*)?\s*(?P<brace>\{(?P<m>[^}]*)\})?")
    while pos < len(s):
        m = token.match(s, pos)
        if not m or m.end() == pos:
            pos += 1
            continue
        name, brace = m.group("name"), m.group("brace")
        pos = m.end()
        if name and (s[pos:].lstrip().startswith("(") or name.lower() in PROMQL_KEYWORDS):
            name = None
            if not brace:
                continue
        if name and re.match(r"^[0-9]", name):
            continue
        if not name and not brace:
            continue
        matchers = {}
        if brace:
            for mm in re.finditer(r'([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"\x00([\u2460-\u2469]+)\x00"', m.group("m")):
                lit = strings[int("".join(str(ord(c) - 0x2460) for c in mm.group(3)))]
                val = json.loads(lit) if lit[0] == '"' else lit[1:-1]
                matchers.setdefault(mm.group(1), []).append((mm.group(2), val))
        out.append((name or "", matchers))
    return out


def strip_numbers_then_names(expr):
    """Check helper: identifiers that are neither functions nor keywords (metric names)."""
    return [n for n, _ in selectors(expr) if n]


def check_expr(where, expr, allowed, labels_of, reasons, future_ok, recorded):
    sub = substitute_grafana(expr)
    for name, matchers in selectors(sub):
        if not name:
            if "__name__" in matchers:
                fail(where, "a selector by __name__ cannot be checked: name the metric")
            else:
                fail(where, f"selector without a metric name: {matchers}")
            continue
        if name in FUTURE_METRICS and future_ok:
            continue
        if name not in allowed:
            hint = ""
            if name in FUTURE_METRICS:
                hint = " (a FUTURE metric: allowed only in a dashboard panel titled FUTURE)"
            elif name in recorded:
                hint = " (a series recorded by the rules: the dashboard must work without them)"
            fail(where, f"metric `{name}` is not exported by the server (src/observe/metrics.rs){hint}")
            continue
        if name in labels_of:
            for label, ms in matchers.items():
                if label not in labels_of[name] and label not in TARGET_LABELS and label != "__name__":
                    fail(where, f"`{name}` has no label `{label}` (labels: {sorted(labels_of[name]) or 'none'})")
                if label == "reason":
                    for op, val in ms:
                        vals = val.split("|") if op in ("=~", "!~") and re.fullmatch(r"[a-z_|]*", val) else [val] if op in ("=", "!=") else []
                        for v in vals:
                            if v and v not in reasons:
                                fail(where, f"reason `{v}` is not a reason code of src/decision.rs")
    return sub


def promtool_parse(promtool, exprs):
    """exprs: [(where, promql)] → writes them as recording rules, runs promtool check rules."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "exprs.rules.yaml"
        lines = ["groups:", "  - name: check-dashboard", "    rules:"]
        for i, (_, e) in enumerate(exprs):
            lines.append(f"      - record: check_dashboard:expr_{i}")
            lines.append(f"        expr: {json.dumps(e)}")
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        r = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)
        if r.returncode != 0:
            out = r.stdout + r.stderr
            bad = set(int(n) for n in re.findall(r"check_dashboard:expr_(\d+)", out))
            for i in sorted(bad):
                fail(exprs[i][0], f"does not parse: {exprs[i][1]!r}")
            if not bad:
                fail("promtool check rules", out.strip())
            print("      " + out.strip().replace("\n", "\n      "))
        return r.returncode == 0


def github_slug(heading):
    s = heading.strip().lower()
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


def check_runbooks(rules):
    headings = {}
    for line in OPERATIONS.read_text(encoding="utf-8").splitlines():
        m = re.match(r"^#{1,6}\s+(.*?)\s*$", line)
        if m:
            headings[github_slug(m.group(1))] = m.group(1)
    for r in rules:
        if r["kind"] != "alert":
            continue
        url = r.get("runbook_url")
        where = f"{rel(RULES)} alert {r['name']}"
        if not url:
            fail(where, "no runbook_url annotation")
            continue
        if "/docs/operations.md#" not in url:
            fail(where, f"runbook_url {url!r} does not point into docs/operations.md")
            continue
        anchor = url.rsplit("#", 1)[1]
        if anchor not in headings:
            fail(where, f"runbook_url anchor #{anchor} is not a heading of {rel(OPERATIONS)}")
        elif headings[anchor] != r["name"]:
            fail(where, f"runbook heading {headings[anchor]!r} is not the alert's name")


def main():
    promtool = "promtool"
    if "--promtool" in sys.argv:
        promtool = sys.argv[sys.argv.index("--promtool") + 1]
    if not shutil.which(promtool):
        print(f"check-dashboard: `{promtool}` not found: install it (Debian/Ubuntu: apt-get install prometheus)")
        return 2

    metrics, names = exported_metrics()
    reasons = reason_codes()
    print(f"check-dashboard: {len(metrics)} metrics exported by {rel(METRICS_RS)}: "
          + ", ".join(f"{n} ({m['kind']})" for n, m in sorted(metrics.items())))
    for f in FUTURE_METRICS:
        if f in names:
            print(f"NOTE  {f} is exported now: remove it from FUTURE_METRICS and the FUTURE marking")

    rules = read_rules()
    recorded = {r["name"] for r in rules if r["kind"] == "record"}
    rule_allowed = set(names) | recorded
    dash = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    to_parse = []
    for r in rules:
        where = f"{rel(RULES)} {r['kind']} {r['name']}"
        if r["expr"]:
            to_parse.append((where, check_expr(where, r["expr"], rule_allowed, names, reasons, False, recorded)))
    n_rules = len(to_parse)
    for where, expr, future_ok in dashboard_exprs(dash):
        to_parse.append((where, check_expr(where, expr, set(names), names, reasons, future_ok, recorded)))
    promtool_parse(promtool, to_parse)
    check_runbooks(rules)

    used = set()
    for _, e in to_parse:
        used |= set(strip_numbers_then_names(e))
    print(f"check-dashboard: {n_rules} rule expressions, {len(to_parse) - n_rules} dashboard expressions; "
          f"metric names used: {', '.join(sorted(used))}")
    if failures:
        print(f"check-dashboard: {len(failures)} failure(s)")
        return 1
    print("check-dashboard: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
