#!/usr/bin/env python3
"""Print bench/run.sh's table from its results file (key <TAB> round <TAB> value per line).

    report.py RESULTS.tsv --seconds S --rounds R --pin MODE --cold N --flood N [--variants "..."]
              [--only main,telemetry,dpop,shadow,httpdoor] [--dpop-tokens N] [--dpop-proofs N]

Means over rounds; ratios are ratios of the means (the per-round ratios are shown beside them).
"""

from __future__ import annotations

import argparse
import os
import math
import platform
import re
import subprocess
from collections import defaultdict

TARGETS = {
    "warm_vs_allow": 0.95,
    "warm_vs_jwt": 0.85,
    "direct_vs_allow": 0.90,
    "p99_us": 1000,
    "openssl_gap": 1.5,
    "idle_mib": 64,
    "flood_mib": 128,
    "trace0_vs_off": 0.98,
}


def load(path: str) -> dict[str, dict[int, float]]:
    data: dict[str, dict[int, float]] = defaultdict(dict)
    with open(path, encoding="utf-8") as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 3:
                continue
            key, rnd, val = parts
            try:
                data[key][int(rnd)] = float(val)
            except ValueError:
                continue
    return data


def machine(rev: str) -> str:
    model = "?"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo", encoding="utf-8") as f:
            mem_kib = int(f.readline().split()[1])
    except OSError:
        mem_kib = 0
    envoy = "?"
    try:
        out = subprocess.run([".venv/bin/envoy", "--version"], capture_output=True, text=True, timeout=10).stdout
        m = re.search(r"version: [0-9a-f]+/([0-9.]+)/", out)
        envoy = m.group(1) if m else out.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    if not rev:
        try:
            rev = subprocess.run(
                ["git", "describe", "--always", "--dirty"], capture_output=True, text=True, timeout=10
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            rev = "?"
    return (
        f"commit {rev or '?'}; {os.cpu_count()} cores ({model}), {mem_kib / 1048576:.1f} GiB RAM, "
        f"{platform.system()} {platform.release()}, Envoy {envoy}"
    )


def main_part(d, a, rounds, w, vals, mean, one, errors, us_per, ratio) -> None:
    w("Through Envoy: wrk -t1 -c32, 1,000 distinct RS256 tokens round-robin, Envoy --concurrency 1, direct_response")
    w(f"  {'configuration':<46} {'req/s':>9}  {'rounds':<26} {'CPU µs/req: Envoy':>17} {'authz':>6}  notes")
    rows = [
        ("plain", "(a) Envoy alone"),
        ("jwt", "(b) + jwt_authn (no cache)"),
        ("jwt_cache", "(c) + jwt_authn + jwt_cache_config"),
        ("allow", "(d) + ext_authz gRPC -> allow-all"),
        ("warm", "(e) + ext_authz gRPC -> oidc-authz, warm"),
        ("cold", "(f) + ext_authz gRPC -> oidc-authz, cold"),
    ] + [
        (f"allow_{v}", "    allow-all answering like oidc-authz" if v == "rich" else f"    variant {v} -> allow-all")
        for v in a.variants.split()
    ]
    for key, label in rows:
        k = f"envoy.{key}"
        note = []
        if errors(k):
            note.append(f"{errors(k)} ERRORS")
        if key == "cold" and a.cold and any(v > a.cold for v in vals(k + ".requests")):
            note.append(f"wrapped past {a.cold} tokens: some cache hits")
        w(
            f"  {label:<46} {mean(k):>9.0f}  {' '.join(f'{v:.0f}' for v in vals(k)):<26} "
            f"{us_per(k + '.envoy_cpu_s', k + '.requests'):>17} {us_per(k + '.authz_cpu_s', k + '.requests'):>6}  {', '.join(note)}"
        )
    w("")
    w("Direct gRPC Check: bench/loadgen.rs, pre-encoded CheckRequests, every answer checked")
    w(f"  {'configuration':<46} {'Checks/s':>9}  {'rounds':<26} {'server CPU µs/Check':>19}  notes")
    for key, label in [
        ("direct.allow", "allow-all, 2 conns x 16 streams"),
        ("direct.warm", "oidc-authz warm, 2 conns x 16 streams"),
        ("direct.cold", "oidc-authz cold (every token new)"),
        ("direct.nocache", "oidc-authz cold, cache off (max_entries: 0)"),
    ]:
        e = errors(key)
        w(
            f"  {label:<46} {mean(key + '.checks_per_s'):>9.0f}  "
            f"{' '.join(f'{v:.0f}' for v in vals(key + '.checks_per_s')):<26} "
            f"{us_per(key + '.cpu_s', key + '.checks'):>19}  {f'{e} ERRORS' if e else ''}"
        )

    def per_cpu(key: str) -> float:
        rs = [r for r in rounds if r in d.get(key + ".cpu_s", {})]
        checks, cpu = sum(d[key + ".checks"][r] for r in rs), sum(d[key + ".cpu_s"][r] for r in rs)
        return checks / cpu if cpu else float("nan")

    per_core = per_cpu("direct.cold")
    per_core_nc = per_cpu("direct.nocache")
    ossl = mean("openssl.verify")
    w(f"  {'cold: RS256 verifications per CPU-second':<46} {per_core:>9.0f}  (oidc-authz process CPU time, all threads)")
    w(f"  {'cold, cache off: verifications per CPU-second':<46} {per_core_nc:>9.0f}")
    w(
        f"  {'openssl speed -seconds 3 rsa2048, verify/s':<46} {ossl:>9.0f}  "
        f"{' '.join(f'{v:.0f}' for v in vals('openssl.verify')):<26} (one core)"
    )
    w("")
    w(f"Fixed rate {5000} Checks/s, 1 conn x 32 streams (latency from send; lag = send vs schedule)")
    w(f"  {'server':<46} {'p50':>6} {'p99':>6} {'p99.9':>6} {'max':>7} {'lag p99':>8}  (µs, mean of rounds; p99 per round)")
    for key, label in [("rate.allow", "allow-all"), ("rate.warm", "oidc-authz warm")]:
        e = errors(key)
        w(
            f"  {label:<46} {mean(key + '.p50_us'):>6.0f} {mean(key + '.p99_us'):>6.0f} {mean(key + '.p999_us'):>6.0f} "
            f"{max(vals(key + '.max_us') or [0]):>7.0f} {mean(key + '.lag_p99_us'):>8.0f}  "
            f"{' '.join(f'{v:.0f}' for v in vals(key + '.p99_us'))} "
            f"({mean(key + '.checks_per_s'):.0f}/s){'  ' + str(e) + ' ERRORS' if e else ''}"
        )
    w("")
    idle = one("mem.idle.hwm_kib") / 1024
    flood_hwm = one("mem.flood.hwm_kib") / 1024
    killed = {k.split(".", 1)[1]: max(v.values()) / 1024 for k, v in d.items() if k.startswith("killed.")}
    kills = {k.split(".", 1)[1]: len(v) for k, v in d.items() if k.startswith("killed.")}
    if math.isnan(flood_hwm) and "flood" in killed:
        flood_hwm = killed["flood"]
    hits = one('metric.oidc_authz_token_cache_requests_total{result="hit"}')
    miss = one('metric.oidc_authz_token_cache_requests_total{result="miss"}')
    w("Memory of oidc-authz (VmHWM = peak RSS)")
    w(f"  idle, 10 clients configured:                   VmHWM {idle:6.1f} MiB   VmRSS {one('mem.idle.rss_kib') / 1024:6.1f} MiB")
    fe = int(one("flood.errors")) if "flood.errors" in d else 0
    w(
        f"  flood of distinct valid EdDSA tokens:          VmHWM {flood_hwm:6.1f} MiB   VmRSS {one('mem.flood.rss_kib') / 1024:6.1f} MiB"
        f"   ({one('flood.checks'):.0f} of {a.flood} tokens sent and allowed at {one('flood.checks_per_s'):.0f}/s; default cache cap 100,000 entries / 64 MiB;"
        f" cache hit/miss {hits:.0f}/{miss:.0f}){'  ' + str(fe) + ' ERRORS' if fe else ''}"
    )
    for name, mib in sorted(killed.items()):
        w(
            f"  !! the watchdog killed oidc-authz ({name}) {kills[name]} time(s), at RSS up to {mib:.0f} MiB"
            " (BENCH_RSS_LIMIT_MIB): its cache did not hold its cap"
        )
    w("")

    r_wa, per_wa = ratio("envoy.warm", "envoy.allow")
    r_wj, per_wj = ratio("envoy.warm", "envoy.jwt")
    r_wc, per_wc = ratio("envoy.warm", "envoy.jwt_cache")
    r_aj, per_aj = ratio("envoy.allow", "envoy.jwt")
    r_fd, per_fd = ratio("envoy.cold", "envoy.allow")
    r_dd, per_dd = ratio("direct.warm.checks_per_s", "direct.allow.checks_per_s")
    p99 = mean("rate.warm.p99_us")
    gap = ossl / per_core if per_core else float("nan")
    any_errors = any(
        errors(k)
        for k in ["envoy.plain", "envoy.jwt", "envoy.jwt_cache", "envoy.allow", "envoy.warm", "envoy.cold",
                  "direct.allow", "direct.warm", "direct.cold", "direct.nocache", "rate.allow", "rate.warm"]
    ) or fe or bool(killed)

    def fmt_per(per: list[float]) -> str:
        return " ".join(f"{x:.3f}" for x in per)

    def met(ok: bool) -> str:
        return "met" if ok else "NOT MET"

    w("Targets (issue 5)")
    w(f"  {'':<58} {'measured':>9} {'target':>8}  {'':<8} per round")
    t = [
        ("(e)/(d) oidc-authz warm vs allow-all, through Envoy", f"{r_wa:.3f}", "≥ 0.95", r_wa >= TARGETS["warm_vs_allow"], fmt_per(per_wa)),
        ("(e)/(b) oidc-authz warm vs jwt_authn without cache", f"{r_wj:.3f}", "≥ 0.85", r_wj >= TARGETS["warm_vs_jwt"], fmt_per(per_wj)),
        ("direct Check, warm vs allow-all", f"{r_dd:.3f}", "≥ 0.90", r_dd >= TARGETS["direct_vs_allow"], fmt_per(per_dd)),
        ("p99 at 5k Checks/s (µs)", f"{p99:.0f}", "≤ 1000", p99 <= TARGETS["p99_us"], " ".join(f"{v:.0f}" for v in vals("rate.warm.p99_us"))),
        ("cold: openssl verify/s ÷ oidc-authz verifications/CPU-s", f"{gap:.2f}x", "≤ 1.5x", gap <= TARGETS["openssl_gap"], ""),
        ("idle peak RSS, 10 clients (MiB)", f"{idle:.1f}", "≤ 64", idle <= TARGETS["idle_mib"], ""),
        (f"peak RSS under a flood of {one('flood.checks'):.0f} distinct tokens (MiB)", f"{flood_hwm:.1f}", "≤ 128", flood_hwm <= TARGETS["flood_mib"], ""),
    ]
    for label, m, goal, ok, per in t:
        w(f"  {label:<58} {m:>9} {goal:>8}  {met(ok):<8} {per}")
    w("  for context:")
    w(f"  {'(e)/(c) oidc-authz warm vs jwt_authn with cache':<58} {r_wc:>9.3f}")
    w(f"  {'(d)/(b) allow-all (the hop alone) vs jwt_authn without cache':<58} {r_aj:>9.3f}")
    w(f"  {'(f)/(d) oidc-authz cold vs allow-all':<58} {r_fd:>9.3f}")
    w(f"  {'cold with the cache off: openssl ÷ oidc-authz per CPU-second':<58} {ossl / per_core_nc if per_core_nc else float('nan'):>8.2f}x")
    if any_errors:
        w("  !! some measurements had errors (non-2xx, socket errors, denied Checks): see the rows above")


def cpu_us(d, rounds, key: str) -> list[float]:
    """Server CPU µs per Check of each round (from KEY.cpu_s and KEY.checks)."""
    return [
        d[key + ".cpu_s"][r] * 1e6 / d[key + ".checks"][r]
        for r in rounds
        if r in d.get(key + ".cpu_s", {}) and d.get(key + ".checks", {}).get(r)
    ]


def telemetry_part(d, a, rounds, w, vals, mean, one, errors, us_per, ratio) -> None:
    w("Tracing cost: direct gRPC Check, loadgen closed loop 2 conns x 16 streams, 1,000 RS256 tokens, warm cache,")
    w("no traceparent sent; three instances of the same config, measured in alternating slices (a b c a b c …) per round")
    sliced_rows(
        d, rounds, w, vals, mean, errors, us_per,
        [
            ("tel.off", "(a) no telemetry section"),
            ("tel.r0", "(b) telemetry, sample: {ratio: 0}"),
            ("tel.r1", "(c) telemetry, sample: {ratio: 1.0}"),
        ],
    )
    r_b, per_b = ratio("tel.r0.checks_per_s", "tel.off.checks_per_s")
    r_c, per_c = ratio("tel.r1.checks_per_s", "tel.off.checks_per_s")
    cpu = {k: cpu_us(d, rounds, k) for k in ("tel.off", "tel.r0", "tel.r1")}

    def cpu_ratio(k: str) -> tuple[float, list[float]]:
        per = [x / y for x, y in zip(cpu[k], cpu["tel.off"]) if y]
        tot = lambda key: sum(vals(key + ".cpu_s")) / max(sum(vals(key + ".checks")), 1)  # noqa: E731
        base = tot("tel.off")
        return (tot(k) / base if base else float("nan")), per

    cb, cb_per = cpu_ratio("tel.r0")
    cc, cc_per = cpu_ratio("tel.r1")
    ok = r_b >= TARGETS["trace0_vs_off"]
    w(f"  {'':<58} {'measured':>9} {'target':>8}  {'':<8} per round")
    w(f"  {'(b)/(a) Checks/s: tracing configured, 0 % sampled ÷ off':<58} {r_b:>9.3f} {'≥ 0.98':>8}  "
      f"{'met' if ok else 'NOT MET':<8} {' '.join(f'{x:.3f}' for x in per_b)}")
    w(f"  {'(c)/(a) Checks/s: 100 % sampled ÷ off':<58} {r_c:>9.3f} {'':>8}  {'':<8} {' '.join(f'{x:.3f}' for x in per_c)}")
    w(f"  {'(b)/(a) server CPU per Check':<58} {cb:>9.3f} {'':>8}  {'':<8} {' '.join(f'{x:.3f}' for x in cb_per)}")
    w(f"  {'(c)/(a) server CPU per Check':<58} {cc:>9.3f} {'':>8}  {'':<8} {' '.join(f'{x:.3f}' for x in cc_per)}")
    checks_c = one("tel.r1.checks_total")
    spans_c = one("tel.r1.check_spans_total")
    win = [s / c for s, c in zip(vals("tel.r1.spans"), vals("tel.r1.checks")) if c]
    w(
        f"  (c) export: {spans_c:.0f} oidc_authz.check spans received for {checks_c:.0f} Checks "
        f"({spans_c / checks_c if checks_c else float('nan'):.3f} per Check; in the measured windows "
        f"{' '.join(f'{x:.3f}' for x in win)}); oidc_authz_trace_export_errors_total {one('tel.r1.export_errors'):.0f}"
    )
    w(
        f"  (b) export: {one('tel.r0.spans_total'):.0f} spans received for {one('tel.r0.checks_total'):.0f} Checks; "
        f"oidc_authz_trace_export_errors_total {one('tel.r0.export_errors'):.0f}"
    )
    if checks_c and spans_c < 0.99 * checks_c:
        w("  !! (c) fewer spans arrived than Checks were traced: the batch queue (4096) dropped the rest")
    w("")


def dpop_part(d, a, rounds, w, vals, mean, one, errors, us_per, ratio) -> None:
    w(
        f"DPoP cost: one instance, client `binding: {{dpop: {{algorithms: [ES256]}}}}`, restarted per round; "
        f"{a.dpop_tokens} plain + {a.dpop_tokens} DPoP-bound"
    )
    w(
        f"RS256 tokens, all in the cache; closed loop 2 x 16; {a.dpop_proofs} fresh ES256 proofs per round, each sent once; "
        "which goes first alternates"
    )
    w(f"  {'configuration':<46} {'Checks/s':>9}  {'rounds':<26} {'server CPU µs/Check':>19}  {'rounds':<18} notes")
    for key, label in [
        ("dpop.plain", "plain: Bearer token, warm"),
        ("dpop.bound", "DPoP: bound token, warm, + proof"),
    ]:
        e = errors(key)
        notes = [f"{e} ERRORS"] if e else []
        if any(vals(key + ".exhausted")):
            notes.append("proofs used up before the end in some rounds (Checks/s from the time used)")
        w(
            f"  {label:<46} {mean(key + '.checks_per_s'):>9.0f}  "
            f"{' '.join(f'{v:.0f}' for v in vals(key + '.checks_per_s')):<26} "
            f"{us_per(key + '.cpu_s', key + '.checks'):>19}  "
            f"{' '.join(f'{v:.1f}' for v in cpu_us(d, rounds, key)):<18} {', '.join(notes)}"
        )
    plain, bound = cpu_us(d, rounds, "dpop.plain"), cpu_us(d, rounds, "dpop.bound")

    def tot(key: str) -> float:
        return sum(vals(key + ".cpu_s")) * 1e6 / max(sum(vals(key + ".checks")), 1)

    tp, tb = tot("dpop.plain"), tot("dpop.bound")
    r_t, per_t = ratio("dpop.bound.checks_per_s", "dpop.plain.checks_per_s")
    w(
        f"  {'DPoP ÷ plain, server CPU per Check':<58} {tb / tp if tp else float('nan'):>9.2f}x "
        f"(+{tb - tp:.1f} µs per Check)  per round {' '.join(f'{b / p:.2f}x' for b, p in zip(bound, plain) if p)}"
    )
    w(f"  {'DPoP ÷ plain, Checks/s':<58} {r_t:>9.3f}   per round {' '.join(f'{x:.3f}' for x in per_t)}")
    w("")


def tot_us(vals, key: str, cpu: str = "cpu_s") -> float:
    """CPU µs per Check over all rounds (total CPU ÷ total Checks); `cpu` names the process's
    CPU field (cpu_s: the measured server or proxy; authz_cpu_s: the authz server behind a proxy)."""
    return sum(vals(f"{key}.{cpu}")) * 1e6 / max(sum(vals(key + ".checks")), 1)


def rate_cells(key: str, label: str, vals, mean) -> str:
    """The columns every sliced table starts with: label, mean rate, the rate of each round."""
    return (
        f"  {label:<46} {mean(key + '.checks_per_s'):>9.0f}  "
        f"{' '.join(f'{v:.0f}' for v in vals(key + '.checks_per_s')):<26} "
    )


def sliced_rows(d, rounds, w, vals, mean, errors, us_per, rows, unit="Checks") -> None:
    w(f"  {'configuration':<46} {unit + '/s':>9}  {'rounds':<26} {'server CPU µs/' + unit[:-1]:>19}  {'rounds':<18} notes")
    for key, label in rows:
        e = errors(key)
        w(
            rate_cells(key, label, vals, mean)
            + f"{us_per(key + '.cpu_s', key + '.checks'):>19}  "
            f"{' '.join(f'{v:.1f}' for v in cpu_us(d, rounds, key)):<18} {f'{e} ERRORS' if e else ''}"
        )


def shadow_part(d, a, rounds, w, vals, mean, one, errors, us_per, ratio) -> None:
    w("Shadow config cost: direct gRPC Check, loadgen closed loop 2 conns x 16 streams, warm cache; 1,000-line token mix")
    w("(200 RS256 tokens: 9 lines in 10 agree, every 10th disagrees: live allow, candidate deny claim_mismatch on rule api);")
    w("two instances of the same config, (b) with --shadow-config, measured in alternating slices per round")
    sliced_rows(
        d, rounds, w, vals, mean, errors, us_per,
        [("shadow.off", "(a) serve"), ("shadow.on", "(b) serve --shadow-config CANDIDATE")],
    )
    r_t, per_t = ratio("shadow.on.checks_per_s", "shadow.off.checks_per_s")
    off, on = cpu_us(d, rounds, "shadow.off"), cpu_us(d, rounds, "shadow.on")
    ta, tb = tot_us(vals, "shadow.off"), tot_us(vals, "shadow.on")
    w(f"  {'(b)/(a) Checks/s':<58} {r_t:>9.3f}   per round {' '.join(f'{x:.3f}' for x in per_t)}")
    w(
        f"  {'(b)/(a) server CPU per Check':<58} {tb / ta if ta else float('nan'):>9.3f}   (+{tb - ta:.1f} µs per Check)  "
        f"per round {' '.join(f'{y / x:.3f}' for x, y in zip(off, on) if x)}"
    )
    checks = one("shadow.on.checks_total")
    dis = one("shadow.on.disagreements")
    exp_series = one("shadow.on.disagreements_expected_series")
    share = dis / checks if checks else float("nan")
    ok = checks and abs(share - 0.1) < 0.002 and dis == exp_series
    w(
        f"  (b) oidc_authz_shadow_disagreements_total {dis:.0f} for {checks:.0f} Checks = {share:.4f} (expected 0.1000); "
        f"{exp_series:.0f} of them {{live_decision=allow, shadow_decision=deny, rule=api}}  "
        f"{'as expected' if ok else '!! NOT AS EXPECTED'}"
    )
    w(f"  (a) oidc_authz_checks_total {one('shadow.off.checks_total'):.0f}")
    w("")


def httpdoor_part(d, a, rounds, w, vals, mean, one, errors, us_per, ratio) -> None:
    def per_round(xs) -> str:
        return " ".join(f"{x:.3f}" for x in xs)

    def authz_us(key: str) -> list[float]:
        """The authz server's CPU µs per request of each round (KEY.authz_cpu_s over KEY.checks)."""
        return [
            d[key + ".authz_cpu_s"][r] * 1e6 / d[key + ".checks"][r]
            for r in rounds
            if r in d.get(key + ".authz_cpu_s", {}) and d.get(key + ".checks", {}).get(r)
        ]

    def noise(xs: list[float]) -> float:
        return max((max(xs) - min(xs)) / 2 if xs else 0.0, 0.05)

    w("HTTP door vs gRPC door: one oidc-authz instance (listen.grpc + listen.http), 1,000 RS256 tokens, warm cache;")
    w("allow-all servers of each transport (bench/allow_all.rs, --http); the eleven measurements below alternate in")
    w("slices per round (order rotating)")
    w("Through Envoy (--concurrency 1, direct_response route, wrk -t1 -c32): ext_authz gRPC vs http_service")
    w("(path_prefix /ext-authz, HTTP/1.1, the header lists of deploy/envoy/envoy-http.yaml), each to its allow-all:")
    def proxy_rows(proxy: str, rows) -> None:
        """req/s, the proxy's CPU (KEY.cpu_s) and the authz server's (KEY.authz_cpu_s) per request."""
        w(f"  {'configuration':<46} {'req/s':>9}  {'rounds':<26} {proxy + ' CPU µs/req':>19}  {'authz server CPU µs/req':>24}")
        for key, label in rows:
            e = errors(key)
            w(
                rate_cells(key, label, vals, mean)
                + f"{us_per(key + '.cpu_s', key + '.checks'):>19}  "
                f"{us_per(key + '.authz_cpu_s', key + '.checks') or '–':>24} {f'{e} ERRORS' if e else ''}"
            )

    proxy_rows(
        "Envoy",
        [
            ("door.egallow", "Envoy + ext_authz gRPC → allow-all"),
            ("door.egrpc", "Envoy + ext_authz gRPC → oidc-authz"),
            ("door.ehallow", "Envoy + http_service → allow-all HTTP"),
            ("door.ehttp", "Envoy + http_service → oidc-authz"),
        ],
    )
    eg_r, eg_per = ratio("door.egrpc.checks_per_s", "door.egallow.checks_per_s")
    eh_r, eh_per = ratio("door.ehttp.checks_per_s", "door.ehallow.checks_per_s")
    w(f"  {'':<58} {'measured':>9} {'target':>8}  {'':<8} per round")
    w(f"  {'gRPC: oidc-authz ÷ allow-all, req/s':<58} {eg_r:>9.3f} {'':>8}  {'':<8} {per_round(eg_per)}")
    w(
        f"  {'http_service: oidc-authz ÷ allow-all, req/s':<58} {eh_r:>9.3f} {'≥ 0.95':>8}  "
        f"{'met' if eh_r >= 0.95 else 'NOT MET':<8} {per_round(eh_per)}"
    )
    rel_per = [h / g for h, g in zip(eh_per, eg_per) if g]
    w(
        f"  {'  that ÷ the gRPC ratio':<58} {eh_r / eg_r if eg_r else float('nan'):>9.3f} {'':>8}  {'':<8} "
        f"{per_round(rel_per)}"
    )
    th, tg = tot_us(vals, "door.ehttp", "authz_cpu_s"), tot_us(vals, "door.egrpc", "authz_cpu_s")
    c_per = [h / g for h, g in zip(authz_us("door.ehttp"), authz_us("door.egrpc")) if g]
    c = th / tg if tg else float("nan")
    w(
        f"  {'oidc-authz CPU per decision, http_service ÷ gRPC':<58} {c:>9.3f} {'≤ 1 ±':>8}  "
        f"{'met' if c <= 1 + noise(c_per) else 'NOT MET':<8} {per_round(c_per)}  ({th:.1f} vs {tg:.1f} µs)"
    )
    w(
        f"  Envoy CPU µs per request above its allow-all: gRPC {tot_us(vals, 'door.egrpc') - tot_us(vals, 'door.egallow'):.1f}, "
        f"http_service {tot_us(vals, 'door.ehttp') - tot_us(vals, 'door.ehallow'):.1f}"
    )
    w("Direct (no proxy): gRPC loadgen closed loop 2 x 16; HTTP wrk -t1 -c32 (HTTP/1.1 keep-alive):")
    sliced_rows(
        d, rounds, w, vals, mean, errors, us_per,
        [
            ("door.gallow", "allow-all gRPC (loadgen)"),
            ("door.grpc", "oidc-authz gRPC Check (loadgen)"),
            ("door.hallow", "allow-all HTTP (wrk)"),
            ("door.fwd", "oidc-authz /forward-auth (wrk)"),
            ("door.envoy", "oidc-authz /ext-authz/api/items (wrk)"),
        ],
        unit="decisions",
    )
    g_r, g_per = ratio("door.grpc.checks_per_s", "door.gallow.checks_per_s")
    w(f"  {'':<58} {'measured':>9} {'target':>8}  {'':<8} per round")
    w(f"  {'gRPC door ÷ allow-all gRPC, decisions/s':<58} {g_r:>9.3f} {'':>8}  {'':<8} {per_round(g_per)}")
    grpc_cpu = cpu_us(d, rounds, "door.grpc")
    tg = tot_us(vals, "door.grpc")
    for key, name in (("door.fwd", "/forward-auth"), ("door.envoy", "/ext-authz")):
        h_r, h_per = ratio(key + ".checks_per_s", "door.hallow.checks_per_s")
        w(f"  {name + ' ÷ allow-all HTTP, decisions/s':<58} {h_r:>9.3f} {'':>8}  {'':<8} {per_round(h_per)}")
        th = tot_us(vals, key)
        cpu_per = [h / g for h, g in zip(cpu_us(d, rounds, key), grpc_cpu) if g]
        c = th / tg if tg else float("nan")
        w(
            f"  {'  server CPU per decision ÷ the gRPC door':<58} {c:>9.3f} {'≤ 1 ±':>8}  "
            f"{'met' if c <= 1 + noise(cpu_per) else 'NOT MET':<8} {per_round(cpu_per)}"
            f"  ({th:.1f} vs {tg:.1f} µs)"
        )
    ga = tot_us(vals, "door.gallow")
    ha = tot_us(vals, "door.hallow")
    w(
        f"  server CPU µs per decision above the same transport's allow-all: gRPC door {tg - ga:.1f}, "
        f"/forward-auth {tot_us(vals, 'door.fwd') - ha:.1f}, /ext-authz {tot_us(vals, 'door.envoy') - ha:.1f} "
        f"(allow-all: gRPC {ga:.1f}, HTTP {ha:.1f})"
    )
    w("  (direct, the ratio to an allow-all is not a target: with no proxy the allow-all HTTP server's whole cost is the")
    w("   HTTP parsing both share, so the decision weighs far more than behind a proxy; ± noise: the larger of 0.05 and")
    w("   half the spread of the per-round CPU ratios)")
    w("nginx (1 process) → allow-all HTTP upstream, wrk -t1 -c32, same slices:")
    proxy_rows("nginx", [("door.nplain", "nginx alone"), ("door.nauth", "nginx + auth_request → /forward-auth")])
    n_r, n_per = ratio("door.nauth.checks_per_s", "door.nplain.checks_per_s")
    w(f"  {'nginx + auth_request ÷ nginx alone, req/s':<58} {n_r:>9.3f}   per round {per_round(n_per)}")
    w("")


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("results")
    p.add_argument("--seconds", default="10")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--pin", default="none")
    p.add_argument("--cold", type=int, default=0)
    p.add_argument("--flood", type=int, default=0)
    p.add_argument("--variants", default="")
    p.add_argument("--rev", default="", help="git describe of the build measured")
    p.add_argument("--only", default="main,telemetry,dpop,shadow,httpdoor", help="the parts that ran (BENCH_ONLY)")
    p.add_argument("--dpop-tokens", type=int, default=0)
    p.add_argument("--dpop-proofs", type=int, default=0)
    a = p.parse_args()
    parts = set(a.only.split(","))
    d = load(a.results)
    rounds = list(range(1, a.rounds + 1))

    def vals(key: str) -> list[float]:
        return [d[key][r] for r in rounds if r in d.get(key, {})]

    def mean(key: str) -> float:
        v = vals(key)
        return sum(v) / len(v) if v else float("nan")

    def one(key: str) -> float:
        v = d.get(key, {})
        return next(iter(v.values())) if v else float("nan")

    def errors(prefix: str) -> int:
        return int(sum(vals(prefix + ".errors")))

    def us_per(cpu_key: str, count_key: str) -> str:
        """CPU µs per request over the rounds where the process survived."""
        rs = [r for r in rounds if r in d.get(cpu_key, {}) and d.get(count_key, {}).get(r)]
        if not rs:
            return ""
        return f"{sum(d[cpu_key][r] for r in rs) * 1e6 / sum(d[count_key][r] for r in rs):.1f}"

    def ratio(num: str, den: str) -> tuple[float, list[float]]:
        per = [d[num][r] / d[den][r] for r in rounds if r in d.get(num, {}) and r in d.get(den, {}) and d[den][r]]
        return mean(num) / mean(den), per

    out: list[str] = []
    w = out.append
    w("")
    w(f"oidc-authz bench — {machine(a.rev)}")
    w(
        f"{a.rounds} interleaved rounds x {a.seconds} s per measurement; CPU placement: "
        + ("Envoy / servers on CPU 0, wrk / loadgen on CPU 1 (taskset)" if a.pin == "split" else "unpinned")
    )
    comp = [int(v) for v in vals("compiles")] + [int(one("compiles.end"))]
    w(
        "compile processes seen at each round start / end: "
        + " ".join(str(c) for c in comp)
        + ("   <- other work was running: re-run for clean numbers" if any(comp) else "")
    )
    steal = one("steal.share")
    if steal == steal:  # not NaN: recorded by this version of run.sh
        w(
            f"CPU steal during the rounds (time the hypervisor gave to other guests): {steal * 100:.0f} %"
            + ("   <- a shared VM: compare ratios within a round, not absolute figures" if steal > 0.05 else "")
        )
    w("")
    if "main" in parts:
        main_part(d, a, rounds, w, vals, mean, one, errors, us_per, ratio)
    if "telemetry" in parts:
        telemetry_part(d, a, rounds, w, vals, mean, one, errors, us_per, ratio)
    if "dpop" in parts:
        dpop_part(d, a, rounds, w, vals, mean, one, errors, us_per, ratio)
    if "shadow" in parts:
        shadow_part(d, a, rounds, w, vals, mean, one, errors, us_per, ratio)
    if "httpdoor" in parts:
        httpdoor_part(d, a, rounds, w, vals, mean, one, errors, us_per, ratio)
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
