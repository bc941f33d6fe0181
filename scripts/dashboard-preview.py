#!/usr/bin/env python3
"""Draw docs/img/dashboard.png: a preview of deploy/grafana/oidc-authz.json from a REAL run's metrics.

It starts the demo stack on 127.0.0.1 (examples/demo_issuer, oidc-authz, e2e/upstream.py, the real Envoy
with deploy/envoy/envoy.yaml, as scripts/demo.sh does), drives a bounded mix of allowed and denied requests
through Envoy for --seconds (a deny spike of tampered tokens, a config reload, a failed reload and its fix
along the way), scrapes oidc-authz's /metrics every second, and plots the dashboard's main panels with the
same arithmetic as its PromQL (rate over a 5 s window, histogram_quantile's linear interpolation):
decisions by reason and by client, latency percentiles, token-cache hit ratio, key-set age vs max_stale,
config reloads.

    python3 -m venv /tmp/preview && /tmp/preview/bin/pip install matplotlib
    /tmp/preview/bin/python scripts/dashboard-preview.py \\
        [--bin-dir target/release] [--envoy .venv/bin/envoy] [--seconds 100] [--out docs/img/dashboard.png]
    /tmp/preview/bin/python scripts/dashboard-preview.py --replay scrapes.json   # re-plot a saved run

--bin-dir holds oidc-authz and examples/demo_issuer (cargo build --release --bin oidc-authz --example
demo_issuer). The scrapes are saved next to --out as JSON unless --no-save. Only loopback traffic; the
request loop stops by itself after --seconds.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "e2e"))
from render_envoy import render  # noqa: E402

WINDOW = 5  # seconds: the rate() window
MAX_STALE = 180  # the run's jwks.max_stale (3m), drawn on the key-set age panel

CONFIG = """\
listen:
  grpc: 127.0.0.1:{grpc}
  admin: 127.0.0.1:{admin}
token:
  sources:
    - header: authorization
jwks:
  refresh_interval: 40s
  min_refresh_interval: 5s
  max_stale: 3m
clients:
  - name: core-web
    issuer: {issuer}
    audiences: [core-web]
    roles: [realm_access.roles]
    headers:
      x-auth-subject: sub
      x-auth-roles: realm_access.roles
  - name: reports
    issuer: {issuer}
    audiences: [reports-app]
    roles: [realm_access.roles]
    headers:
      x-auth-subject: sub
rules:
  - name: health
    match: {{ path: /healthz }}
    auth: none
  - name: names-write
    match: {{ prefix: /api/names, methods: [POST, PUT, PATCH, DELETE] }}
    roles: {{ all_of: [names_editor] }}
  - name: reports
    match: {{ prefix: /api/reports }}
    clients: [reports]
  - name: api
    match: {{ prefix: /api }}
default: deny
"""


# ------------------------------------------------------------------------------------------------ run


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except Exception:  # noqa: BLE001 - not up yet
            time.sleep(0.1)
    raise SystemExit(f"dashboard-preview: {what} did not come up ({url})")


def request(port: int, method: str, path: str, token: str | None) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(method, path, headers={"authorization": f"Bearer {token}"} if token else {})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text format -> {'name{a="x",b="y"}': value} with labels sorted."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)', line)
        if not m:
            continue
        labels = sorted(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        key = m.group(1) + "{" + ",".join(f'{k}="{v}"' for k, v in labels) + "}"
        out[key] = float(m.group(4).replace("+Inf", "inf"))
    return out


def run(args) -> dict:
    bindir = Path(args.bin_dir)
    authz, issuer_bin = bindir / "oidc-authz", bindir / "examples" / "demo_issuer"
    for b in (authz, issuer_bin):
        if not os.access(b, os.X_OK):
            raise SystemExit(f"dashboard-preview: {b} missing: cargo build --release --bin oidc-authz "
                             "--example demo_issuer, or --bin-dir")
    work = Path(tempfile.mkdtemp(prefix="dashboard-preview-"))
    procs: list[subprocess.Popen] = []

    def spawn(name: str, argv: list[str]) -> subprocess.Popen:
        p = subprocess.Popen(argv, stdout=open(work / f"{name}.log", "wb"), stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, start_new_session=True)
        procs.append(p)
        return p

    ports = {k: free_port() for k in ("issuer", "grpc", "admin", "envoy", "envoy_admin", "upstream")}
    issuer = f"http://127.0.0.1:{ports['issuer']}"
    try:
        spawn("issuer", [str(issuer_bin), f"127.0.0.1:{ports['issuer']}"])
        wait_http(f"{issuer}/.well-known/openid-configuration", "the demo issuer")
        cfg = work / "config.yaml"
        good = CONFIG.format(grpc=ports["grpc"], admin=ports["admin"], issuer=issuer)
        cfg.write_text(good)
        authz_p = spawn("oidc-authz", [str(authz), "--log-format", "text", "serve", "--config", str(cfg)])
        wait_http(f"http://127.0.0.1:{ports['admin']}/readyz", "oidc-authz")
        spawn("upstream", [sys.executable, str(ROOT / "e2e" / "upstream.py"), "--port", str(ports["upstream"])])
        (work / "envoy.yaml").write_text(render((ROOT / "deploy" / "envoy" / "envoy.yaml").read_text(), {
            "ENVOY_LISTEN_ADDRESS": "127.0.0.1", "ENVOY_PORT": ports["envoy"],
            "ENVOY_ADMIN_PORT": ports["envoy_admin"], "OIDC_AUTHZ_HOST": "127.0.0.1",
            "OIDC_AUTHZ_PORT": ports["grpc"], "UPSTREAM_HOST": "127.0.0.1", "UPSTREAM_PORT": ports["upstream"]}))
        spawn("envoy", [args.envoy, "-c", str(work / "envoy.yaml"), "--concurrency", "1", "--log-level", "warn",
                        "--disable-hot-restart"])
        wait_http(f"http://127.0.0.1:{ports['envoy_admin']}/ready", "Envoy")
        wait_http(f"http://127.0.0.1:{ports['upstream']}/", "the upstream")

        def mint(q: str) -> str:
            with urllib.request.urlopen(f"{issuer}/mint?{q}", timeout=5) as r:
                return r.read().decode().strip()

        tokens = {
            "editor": mint("aud=core-web&sub=alice&roles=names_editor,viewer"),
            "viewer": mint("aud=core-web&sub=bob&roles=viewer"),
            "reports": mint("aud=reports-app&sub=carol&roles=auditor"),
        }
        t0 = time.monotonic()
        stop = threading.Event()
        lock = threading.Lock()

        def traffic(seed: int) -> None:
            rnd = random.Random(seed)
            port = ports["envoy"]
            while not stop.is_set():
                t = time.monotonic() - t0
                r = rnd.random()
                if 30 <= t < 45 and r < 0.5:  # a flood of tampered tokens
                    request(port, "GET", "/api/profile", tokens["viewer"][:-6] + "AAAAAA")
                elif r < 0.40:
                    request(port, "GET", "/api/profile", tokens[rnd.choice(["editor", "viewer"])])
                elif r < 0.55:
                    request(port, "POST", "/api/names", tokens["editor"])
                elif r < 0.62:
                    request(port, "POST", "/api/names", tokens["viewer"])  # 403 missing_required_roles
                elif r < 0.75:
                    request(port, "GET", "/api/reports/q3", tokens["reports"])
                elif r < 0.79:
                    request(port, "GET", "/api/reports/q3", tokens["editor"])  # 403 client_not_allowed
                elif r < 0.86:
                    request(port, "GET", "/api/profile", None)  # 401 authorization_header_missing
                elif r < 0.90:
                    request(port, "GET", "/other", tokens["viewer"])  # default deny
                else:  # a fresh token: a cache miss
                    with lock:
                        fresh = mint(f"aud=core-web&sub=user{rnd.randrange(10**6)}&roles=viewer")
                    request(port, "GET", "/api/profile", fresh)
                time.sleep(rnd.uniform(0, 0.01))

        threads = [threading.Thread(target=traffic, args=(i,), daemon=True) for i in range(args.clients)]
        for th in threads:
            th.start()
        scrapes = []
        events = []
        next_at = t0
        while (now := time.monotonic()) - t0 < args.seconds:
            t = now - t0
            if not events and t >= 55:  # a good reload
                cfg.write_text(good.replace("min_refresh_interval: 5s", "min_refresh_interval: 6s"))
                authz_p.send_signal(signal.SIGHUP)
                events.append((t, "reload ok"))
            elif len(events) == 1 and t >= 65:  # a broken config: rejected, the old one keeps serving
                cfg.write_text(good + "bogus_key: 1\n")
                authz_p.send_signal(signal.SIGHUP)
                events.append((t, "reload rejected"))
            elif len(events) == 2 and t >= 80:  # fixed
                cfg.write_text(good)
                authz_p.send_signal(signal.SIGHUP)
                events.append((t, "fixed"))
            with urllib.request.urlopen(f"http://127.0.0.1:{ports['admin']}/metrics", timeout=5) as r:
                scrapes.append({"t": t, "unix": time.time(), "m": parse_metrics(r.read().decode())})
            next_at += 1.0
            time.sleep(max(0.0, next_at - time.monotonic()))
        stop.set()
        for th in threads:
            th.join(10)
        data = {"scrapes": scrapes, "events": events, "binary": str(authz), "clients": args.clients}
        shutil.rmtree(work, ignore_errors=True)  # kept (with every log) when the run failed
        return data
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()


# ------------------------------------------------------------------------------------------------ plot


def series(scrapes, name: str, **match) -> dict[str, list[tuple[float, float]]]:
    """Samples of metric `name` whose labels include `match`, keyed by the full key."""
    out: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for s in scrapes:
        for key, v in s["m"].items():
            if key.split("{", 1)[0] != name:
                continue
            if all(f'{k}="{val}"' in key for k, val in match.items()):
                out[key].append((s["t"], v))
    return out


def label(key: str, name: str) -> str:
    m = re.search(rf'{name}="((?:[^"\\]|\\.)*)"', key)
    return m.group(1) if m else ""


def rate_by(scrapes, name: str, by: tuple[str, ...], **match) -> dict[tuple, list[tuple[float, float]]]:
    """sum by (by) (rate(name{match}[WINDOW])) at each scrape."""
    grouped: dict[tuple, dict[float, float]] = defaultdict(lambda: defaultdict(float))
    for key, pts in series(scrapes, name, **match).items():
        g = tuple(label(key, b) for b in by)
        vals = dict(pts)
        for t, v in pts:
            past = [(tp, vp) for tp, vp in pts if t - WINDOW - 0.5 <= tp <= t - WINDOW + 0.5]
            if past:
                tp, vp = past[0]
                grouped[g][t] += max(0.0, v - vp) / (t - tp)
        del vals
    return {g: sorted(d.items()) for g, d in grouped.items()}


def quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """histogram_quantile over (le, cumulative count) pairs."""
    buckets = sorted(buckets)
    total = buckets[-1][1]
    if total <= 0:
        return math.nan
    rank = q * total
    prev_le, prev_c = 0.0, 0.0
    for le, c in buckets:
        if c >= rank:
            if math.isinf(le):
                return prev_le
            return prev_le + (le - prev_le) * (rank - prev_c) / max(c - prev_c, 1e-12)
        prev_le, prev_c = le, c
    return prev_le


def plot(data: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scrapes = data["scrapes"]
    bg, panel, fg, grid = "#111217", "#181b1f", "#ccccdc", "#2c3235"
    plt.rcParams.update({"font.size": 9, "text.color": fg, "axes.labelcolor": fg, "xtick.color": fg,
                         "ytick.color": fg, "axes.edgecolor": grid, "axes.facecolor": panel,
                         "figure.facecolor": bg, "legend.facecolor": panel, "legend.edgecolor": grid,
                         "legend.fontsize": 7.5, "axes.titleweight": "bold", "axes.titlesize": 10,
                         "axes.titlecolor": fg})
    fig, axes = plt.subplots(3, 2, figsize=(15, 11.5), dpi=110)
    fig.subplots_adjust(left=0.06, right=0.985, top=0.885, bottom=0.05, hspace=0.42, wspace=0.14)
    palette = ["#73bf69", "#f2495c", "#ff9830", "#5794f2", "#b877d9", "#fade2a", "#8ab8ff", "#ff7383",
               "#96d98d", "#ffb357", "#ca95e5", "#c0d8ff"]

    def finish(ax, title, ylabel, legend=True, loc="upper left"):
        ax.set_title(title, loc="left")
        ax.set_ylabel(ylabel)
        ax.set_xlabel("seconds into the run")
        ax.grid(color=grid, linewidth=0.6)
        for t, what in data["events"]:
            ax.axvline(t, color="#8e8e8e", linestyle=":", linewidth=0.9)
        if legend and ax.get_legend_handles_labels()[0]:
            ax.legend(loc=loc, ncol=2, framealpha=0.85)

    # 1. decisions by reason
    ax = axes[0][0]
    rates = rate_by(scrapes, "oidc_authz_checks_total", ("decision", "reason"))
    for i, ((d, r), pts) in enumerate(sorted(rates.items(), key=lambda kv: (kv[0][0] != "allow", kv[0]))):
        if not any(v for _, v in pts):
            continue
        ax.plot(*zip(*pts), label=f"{d} {r}".strip(), color="#73bf69" if d == "allow" else palette[1 + i % 11],
                linewidth=1.6)
    finish(ax, "Decisions by reason", "Checks/s")

    # 2. decisions by client
    ax = axes[0][1]
    rates = rate_by(scrapes, "oidc_authz_checks_total", ("client", "decision"))
    for i, ((c, d), pts) in enumerate(sorted(rates.items())):
        if any(v for _, v in pts):
            ax.plot(*zip(*pts), label=f"{c or '(no client)'} {d}", color=palette[i % 12], linewidth=1.6,
                    linestyle="-" if d == "allow" else "--")
    finish(ax, "Decisions by client", "Checks/s")

    # 3. latency percentiles
    ax = axes[1][0]
    bucket_rates = rate_by(scrapes, "oidc_authz_check_duration_seconds_bucket", ("le",))
    by_t: dict[float, list[tuple[float, float]]] = defaultdict(list)
    for (le,), pts in bucket_rates.items():
        for t, v in pts:
            by_t[t].append((float(le.replace("+Inf", "inf")), v))
    for q, color in [(0.5, "#73bf69"), (0.9, "#fade2a"), (0.99, "#ff9830"), (0.999, "#f2495c")]:
        pts = [(t, quantile(q, b) * 1000) for t, b in sorted(by_t.items())]
        ax.plot(*zip(*pts), label=f"p{q * 100:g}", color=color, linewidth=1.6)
    ax.axhline(10, color="#f2495c", linestyle="--", linewidth=0.9, label="SLO 10 ms")
    ax.set_yscale("log")
    finish(ax, "Check latency percentiles", "ms (log)", loc="lower right")

    # 4. token cache hit ratio
    ax = axes[1][1]
    cache = rate_by(scrapes, "oidc_authz_token_cache_requests_total", ("result",))
    hits = dict(cache.get(("hit",), []))
    misses = dict(cache.get(("miss",), []))
    pts = [(t, hits[t] / (hits[t] + misses.get(t, 0))) for t in sorted(hits) if hits[t] + misses.get(t, 0) > 0]
    if pts:
        ax.plot(*zip(*pts), color="#5794f2", linewidth=1.8, label="hit ratio")
        ax.fill_between(*zip(*pts), color="#5794f2", alpha=0.15)
    ax.set_ylim(0, 1.05)
    finish(ax, "Token cache hit ratio", "hits / lookups")

    # 5. key-set age vs max_stale
    ax = axes[2][0]
    for i, (key, pts) in enumerate(sorted(series(scrapes, "oidc_authz_jwks_last_success_timestamp_seconds").items())):
        unix = {s["t"]: s["unix"] for s in scrapes}
        age = [(t, unix[t] - v) for t, v in pts if v > 0]
        if age:
            ax.plot(*zip(*age), label=label(key, "key_set"), color=palette[3 + i], linewidth=1.6)
    ax.axhline(MAX_STALE, color="#f2495c", linestyle="--", linewidth=1.1, label=f"max_stale ({MAX_STALE}s)")
    ax.set_ylim(0, MAX_STALE * 1.15)
    finish(ax, "Key-set age vs max_stale", "seconds since last good fetch")

    # 6. config reloads
    ax = axes[2][1]
    ts = [s["t"] for s in scrapes]
    for result, color in [("ok", "#73bf69"), ("error", "#f2495c")]:
        pts = next(iter(series(scrapes, "oidc_authz_config_reloads_total", result=result).values()), [])
        if pts:
            ax.step(*zip(*pts), where="post", color=color, linewidth=1.8, label=f"reloads {result} (total)")
    last = next(iter(series(scrapes, "oidc_authz_config_last_reload_success").values()), [])
    if last:
        ax2 = ax.twinx()
        ax2.step(*zip(*last), where="post", color="#fade2a", linewidth=1.2, linestyle="--")
        ax2.set_ylim(-0.1, 1.3)
        ax2.set_yticks([0, 1])
        ax2.set_ylabel("last reload succeeded", color="#fade2a")
        ax.plot([], [], color="#fade2a", linestyle="--", label="last reload succeeded (right)")
    ax.set_xlim(min(ts), max(ts))
    for t, what in data["events"]:
        ax.annotate(what, (t, 0), xytext=(3, 4), textcoords="offset points", color="#b0b0b0", fontsize=7.5,
                    xycoords=("data", "axes fraction"))
    finish(ax, "Config reloads", "count")

    total = sum(v for k, v in scrapes[-1]["m"].items() if k.startswith("oidc_authz_checks_total{"))
    denied = sum(v for k, v in scrapes[-1]["m"].items()
                 if k.startswith("oidc_authz_checks_total{") and 'decision="deny"' in k)
    fig.suptitle("oidc-authz — dashboard preview (deploy/grafana/oidc-authz.json)", x=0.06, ha="left",
                 fontsize=15, fontweight="bold", color=fg)
    build = "debug" if "/debug/" in data["binary"] else "release"
    note = (f"A real run, scraped every second: {len(scrapes)} s, {int(total):,} Checks through Envoy "
            f"({denied / max(total, 1):.0%} denied) from {data['clients']} request loops; tampered-token flood "
            f"at 30-45 s; config reload ok / rejected / fixed at the dotted lines. Rates over {WINDOW} s windows.\n"
            f"oidc-authz {build} build ({Path(data['binary']).name} from {Path(data['binary']).parent.name}/)")
    if build == "debug":
        note += ": an unoptimised build, so the latency panel shows shapes, not production figures"
    fig.text(0.06, 0.925, note, fontsize=9, color="#9fa7b3", linespacing=1.5)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, facecolor=bg)
    print(f"dashboard-preview: wrote {out}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin-dir", default=str(ROOT / "target" / "release"))
    ap.add_argument("--envoy", default=str(ROOT / ".venv" / "bin" / "envoy"))
    ap.add_argument("--seconds", type=int, default=100)
    ap.add_argument("--clients", type=int, default=4, help="concurrent request loops")
    ap.add_argument("--out", default=str(ROOT / "docs" / "img" / "dashboard.png"))
    ap.add_argument("--replay", help="plot a saved scrapes JSON instead of running")
    ap.add_argument("--no-save", action="store_true")
    args = ap.parse_args()
    out = Path(args.out)
    if args.replay:
        data = json.loads(Path(args.replay).read_text())
    else:
        data = run(args)
        if not args.no_save:
            saved = out.with_suffix(".scrapes.json")
            saved.parent.mkdir(parents=True, exist_ok=True)
            saved.write_text(json.dumps(data))
            print(f"dashboard-preview: scrapes saved to {saved}")
    plot(data, out)


if __name__ == "__main__":
    main()
