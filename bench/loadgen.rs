//! gRPC Check load generator for bench/run.sh and bench/curves.sh.
//!
//! Sends pre-encoded `envoy.service.auth.v3.Authorization/Check` requests (one per token in a
//! file, shaped like the CheckRequests Envoy sends: method, path, host and the header map with
//! `authorization: Bearer <token>`) over `--connections` HTTP/2 connections with `--streams`
//! concurrent streams each. Tokens are used round-robin through one shared counter, so a file of
//! N distinct tokens sends N distinct tokens before any repeats (the cold mix) and reports
//! `wrapped=1` if the run was long enough to repeat one.
//!
//! `--dpop FILE` instead of `--tokens`: each line is `token<TAB>proof` (bench_tokens' DPoP mode);
//! the request carries `authorization: DPoP <token>` and `dpop: <proof>`. Every line is sent
//! once at most (a DPoP proof is single-use: the server remembers its `jti`), so the run ends
//! when the file is used up even before `--duration`; `exhausted=1` in the output says so.
//!
//! Every answer is checked: transport errors, non-OK gRPC statuses, and a CheckResponse whose
//! `status.code` is not the expected one (`--expect allow` = 0 + OkHttpResponse, the default;
//! `--expect any` counts only transport errors) are counted as errors.
//!
//! Modes:
//! * closed loop (default): every stream sends its next request as soon as the previous answer
//!   arrived; prints Checks/s.
//! * fixed rate (`--rate R`): R Checks/s in total, spread over the streams with staggered
//!   phases; latency is measured from the moment a request is sent (`lag_*` reports how late a
//!   send was against its schedule: with a 1 ms timer wheel a few hundred µs is normal).
//! * `--requests N`: stop after N requests (memory flood, cold path); a `--duration` given as
//!   well bounds such a run in time.
//!
//! Output: one line of `key=value` pairs (checks, errors, seconds, checks_per_s, p50_us,
//! p99_us, p999_us, max_us, lag_p99_us, distinct_tokens, wrapped, exhausted), parsed by
//! bench/run.sh.
//!
//!     loadgen --addr 127.0.0.1:9001 --tokens warm.txt --connections 2 --streams 16 --duration 10
//!     loadgen --addr 127.0.0.1:9001 --tokens warm.txt --rate 5000 --duration 10
//!     loadgen --addr 127.0.0.1:9001 --dpop dpop.txt --duration 10

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::{Buf as _, BufMut as _, Bytes};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest, CheckResponse};
use prost::Message as _;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::{Channel, Endpoint};

const CHECK_PATH: &str = "/envoy.service.auth.v3.Authorization/Check";

/// Sends already-encoded CheckRequest bytes; decodes CheckResponse.
#[derive(Clone, Copy, Default)]
struct RawCodec;
struct RawEncoder;
struct RawDecoder;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = CheckResponse;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

impl Encoder for RawEncoder {
    type Item = Bytes;
    type Error = tonic::Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawDecoder {
    type Item = CheckResponse;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<CheckResponse>, tonic::Status> {
        let r = CheckResponse::decode(src.copy_to_bytes(src.remaining()))
            .map_err(|e| tonic::Status::internal(e.to_string()))?;
        Ok(Some(r))
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Expect {
    Allow,
    Any,
}

struct Args {
    addr: String,
    tokens: String,
    dpop: bool,
    connections: usize,
    streams: usize,
    duration: Duration,
    duration_given: bool,
    rate: f64,
    requests: Option<u64>,
    expect: Expect,
    path: String,
    host: String,
    threads: usize,
}

fn usage() -> ! {
    eprintln!(
        "usage: loadgen --addr HOST:PORT (--tokens FILE | --dpop FILE) [--connections 2] [--streams 16] \
         [--duration 10] [--rate CHECKS_PER_S] [--requests N] [--expect allow|any] \
         [--path /api/items] [--host bench.local] [--threads 1]"
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut a = Args {
        addr: String::new(),
        tokens: String::new(),
        dpop: false,
        connections: 2,
        streams: 16,
        duration: Duration::from_secs(10),
        duration_given: false,
        rate: 0.0,
        requests: None,
        expect: Expect::Allow,
        path: "/api/items".into(),
        host: "bench.local".into(),
        threads: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--addr" => a.addr = val(),
            "--tokens" => a.tokens = val(),
            "--dpop" => {
                a.tokens = val();
                a.dpop = true;
            }
            "--connections" => a.connections = val().parse().unwrap_or_else(|_| usage()),
            "--streams" => a.streams = val().parse().unwrap_or_else(|_| usage()),
            "--duration" => {
                a.duration = Duration::from_secs_f64(val().parse().unwrap_or_else(|_| usage()));
                a.duration_given = true;
            }
            "--rate" => a.rate = val().parse().unwrap_or_else(|_| usage()),
            "--requests" => a.requests = Some(val().parse().unwrap_or_else(|_| usage())),
            "--expect" => {
                a.expect = match val().as_str() {
                    "allow" => Expect::Allow,
                    "any" => Expect::Any,
                    _ => usage(),
                }
            }
            "--path" => a.path = val(),
            "--host" => a.host = val(),
            "--threads" => a.threads = val().parse().unwrap_or_else(|_| usage()),
            _ => usage(),
        }
    }
    if a.addr.is_empty() || a.tokens.is_empty() || a.connections == 0 || a.streams == 0 {
        usage();
    }
    a
}

/// One CheckRequest per token (or per `token<TAB>proof` line with `--dpop`), shaped like
/// Envoy's (HTTP/1.1 request through the listener).
fn encode_requests(args: &Args) -> Vec<Bytes> {
    let text = std::fs::read_to_string(&args.tokens).unwrap_or_else(|e| {
        eprintln!("loadgen: {}: {e}", args.tokens);
        std::process::exit(2)
    });
    text.lines()
        .filter(|l| !l.is_empty())
        .enumerate()
        .map(|(i, line)| {
            let id = format!("{i:016x}-bench");
            let (authorization, proof) = if args.dpop {
                let (token, proof) = line.split_once('\t').unwrap_or_else(|| {
                    eprintln!(
                        "loadgen: {}: line {} is not token<TAB>proof",
                        args.tokens,
                        i + 1
                    );
                    std::process::exit(2)
                });
                (format!("DPoP {token}"), Some(proof))
            } else {
                (format!("Bearer {line}"), None)
            };
            let mut headers: HashMap<String, String> = [
                (":authority", args.host.as_str()),
                (":method", "GET"),
                (":path", args.path.as_str()),
                (":scheme", "http"),
                ("authorization", authorization.as_str()),
                ("user-agent", "wrk"),
                ("x-forwarded-proto", "http"),
                ("x-request-id", id.as_str()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
            if let Some(p) = proof {
                headers.insert("dpop".to_owned(), p.to_owned());
            }
            let req = CheckRequest {
                attributes: Some(AttributeContext {
                    request: Some(Request {
                        http: Some(HttpRequest {
                            id,
                            method: "GET".into(),
                            path: args.path.clone(),
                            host: args.host.clone(),
                            scheme: "http".into(),
                            protocol: "HTTP/1.1".into(),
                            headers,
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
            };
            Bytes::from(req.encode_to_vec())
        })
        .collect()
}

#[derive(Default)]
struct Tally {
    ok: u64,
    errors: u64,
    latencies_us: Vec<u32>,
    lags_us: Vec<u32>,
    first_error: Option<String>,
}

struct Shared {
    requests: Vec<Bytes>,
    next: AtomicU64,
    limit: Option<u64>,
    stop: AtomicBool,
    expect: Expect,
}

impl Shared {
    /// The next request, or None when `--requests` are all sent or the run is over.
    fn take(&self) -> Option<Bytes> {
        if self.stop.load(Ordering::Relaxed) {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        if self.limit.is_some_and(|l| i >= l) {
            return None;
        }
        Some(self.requests[(i % self.requests.len() as u64) as usize].clone())
    }
}

async fn one(
    grpc: &mut tonic::client::Grpc<Channel>,
    body: Bytes,
    expect: Expect,
) -> Result<(), String> {
    grpc.ready().await.map_err(|e| format!("not ready: {e}"))?;
    let resp = grpc
        .unary(
            tonic::Request::new(body),
            tonic::codegen::http::uri::PathAndQuery::from_static(CHECK_PATH),
            RawCodec,
        )
        .await
        .map_err(|s| format!("grpc-status {:?}: {}", s.code(), s.message()))?
        .into_inner();
    if expect == Expect::Allow {
        let code = resp.status.as_ref().map_or(0, |s| s.code);
        if code != 0 {
            let reason = resp
                .status
                .as_ref()
                .map(|s| s.message.clone())
                .unwrap_or_default();
            return Err(format!("denied: status.code {code} ({reason})"));
        }
        if !matches!(resp.http_response, Some(HttpResponse::OkResponse(_))) {
            return Err("allow without an OkHttpResponse".into());
        }
    }
    Ok(())
}

fn record(t: &mut Tally, r: Result<(), String>, sent: Instant, lag: Option<Duration>) {
    let us = sent.elapsed().as_micros().min(u32::MAX as u128) as u32;
    match r {
        Ok(()) => {
            t.ok += 1;
            t.latencies_us.push(us);
            if let Some(l) = lag {
                t.lags_us.push(l.as_micros().min(u32::MAX as u128) as u32);
            }
        }
        Err(e) => {
            t.errors += 1;
            if t.first_error.is_none() {
                t.first_error = Some(e);
            }
        }
    }
}

async fn closed_loop(mut grpc: tonic::client::Grpc<Channel>, shared: Arc<Shared>) -> Tally {
    let mut t = Tally::default();
    while let Some(body) = shared.take() {
        let sent = Instant::now();
        let r = one(&mut grpc, body, shared.expect).await;
        record(&mut t, r, sent, None);
    }
    t
}

async fn fixed_rate(
    mut grpc: tonic::client::Grpc<Channel>,
    shared: Arc<Shared>,
    period: Duration,
    phase: Duration,
) -> Tally {
    let mut t = Tally::default();
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + phase, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    loop {
        let scheduled = tick.tick().await;
        let Some(body) = shared.take() else { break };
        let sent = Instant::now();
        let lag = tokio::time::Instant::now().saturating_duration_since(scheduled);
        let r = one(&mut grpc, body, shared.expect).await;
        record(&mut t, r, sent, Some(lag));
    }
    t
}

fn pct(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let requests = encode_requests(&args);
    if requests.is_empty() {
        return Err("no tokens in the file".into());
    }
    let n = requests.len() as u64;
    // A DPoP proof is single-use: never wrap around.
    let limit = if args.dpop {
        Some(args.requests.map_or(n, |r| r.min(n)))
    } else {
        args.requests
    };
    let shared = Arc::new(Shared {
        requests,
        next: AtomicU64::new(0),
        limit,
        stop: AtomicBool::new(false),
        expect: args.expect,
    });
    let endpoint = Endpoint::from_shared(format!("http://{}", args.addr))?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(5));
    let mut channels = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        // One Endpoint::connect = one HTTP/2 connection.
        channels.push(endpoint.connect().await?);
    }
    let tasks = args.connections * args.streams;
    let start = Instant::now();
    let mut handles = Vec::with_capacity(tasks);
    for k in 0..tasks {
        let grpc = tonic::client::Grpc::new(channels[k % args.connections].clone());
        let shared = shared.clone();
        if args.rate > 0.0 {
            let period = Duration::from_secs_f64(tasks as f64 / args.rate);
            let phase = period.mul_f64(k as f64 / tasks as f64);
            handles.push(tokio::spawn(fixed_rate(grpc, shared, period, phase)));
        } else {
            handles.push(tokio::spawn(closed_loop(grpc, shared)));
        }
    }
    if limit.is_none() || args.duration_given || args.dpop {
        let stopper = shared.clone();
        let d = args.duration;
        tokio::spawn(async move {
            tokio::time::sleep(d).await;
            stopper.stop.store(true, Ordering::Relaxed);
        });
    }
    let mut total = Tally::default();
    for h in handles {
        let t = h.await?;
        total.ok += t.ok;
        total.errors += t.errors;
        total.latencies_us.extend(t.latencies_us);
        total.lags_us.extend(t.lags_us);
        if total.first_error.is_none() {
            total.first_error = t.first_error;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    total.latencies_us.sort_unstable();
    total.lags_us.sort_unstable();
    let l = &total.latencies_us;
    let sent = shared
        .next
        .load(Ordering::Relaxed)
        .min(total.ok + total.errors);
    println!(
        "checks={} errors={} seconds={:.3} checks_per_s={:.0} p50_us={} p99_us={} p999_us={} max_us={} lag_p99_us={} distinct_tokens={} wrapped={} exhausted={}",
        total.ok,
        total.errors,
        secs,
        total.ok as f64 / secs,
        pct(l, 0.50),
        pct(l, 0.99),
        pct(l, 0.999),
        l.last().copied().unwrap_or(0),
        pct(&total.lags_us, 0.99),
        n,
        u8::from(sent > n),
        u8::from(args.dpop && sent >= n),
    );
    if let Some(e) = total.first_error {
        eprintln!("loadgen: {} errors; first: {e}", total.errors);
    }
    Ok(())
}

fn main() {
    let args = parse_args();
    let rt = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()
    }
    .unwrap();
    if let Err(e) = rt.block_on(run(args)) {
        eprintln!("loadgen: {e}");
        std::process::exit(1);
    }
}
