//! The project's own admin gRPC API (proto/oidc_authz/admin/v1/admin.proto), served only on a
//! loopback listener: `Explain` (the full decision trace for a request against the live config
//! and keys) and `KeySets` (each key set's kids, age and last fetch result).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::core::check::CheckInput;
use crate::core::token::Headers;
use crate::decision::Decision;
use crate::ops::state::ServerState;

/// Generated from proto/ by build.rs.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod pb {
    tonic::include_proto!("oidc_authz.admin.v1");
}

use pb::admin_server::Admin;
use pb::{ExplainRequest, ExplainResponse, KeySet, KeySetsRequest, KeySetsResponse, TraceStep};

#[derive(Clone)]
pub struct AdminService {
    state: Arc<ServerState>,
}

impl AdminService {
    pub fn new(state: Arc<ServerState>) -> Self {
        AdminService { state }
    }

    pub fn server(state: Arc<ServerState>) -> pb::admin_server::AdminServer<AdminService> {
        pb::admin_server::AdminServer::new(AdminService::new(state))
    }
}

/// Explain a request against a snapshot; shared by the gRPC call and the offline CLI.
pub async fn explain_request(
    snap: &crate::core::snapshot::Snapshot,
    req: &ExplainRequest,
) -> ExplainResponse {
    let bearer = (!req.token.is_empty()).then(|| format!("Bearer {}", req.token));
    let lowered: Vec<(String, &str)> = req
        .headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.as_str()))
        .collect();
    let mut headers = Headers::with_capacity(lowered.len() + 1);
    for (k, v) in &lowered {
        if bearer.is_some() && k == "authorization" {
            continue; // the explicit token wins
        }
        headers.push(k, v);
    }
    if let Some(b) = &bearer {
        headers.push("authorization", b);
    }
    let method = if req.method.is_empty() {
        "GET"
    } else {
        req.method.as_str()
    };
    let input = CheckInput {
        method,
        host: &req.host,
        path: &req.path,
        headers,
        ..Default::default()
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let ex = crate::core::explain::explain(snap, &input, now).await;
    let steps = ex
        .steps
        .iter()
        .map(|(s, o)| TraceStep {
            step: s.clone(),
            outcome: o.clone(),
        })
        .collect();
    let mut resp = ExplainResponse {
        decision: ex.decision_name().into(),
        steps,
        roles: ex.roles.clone(),
        config_generation: ex.config_generation,
        ..Default::default()
    };
    match &ex.decision {
        Decision::Allow(a) => {
            resp.http_status = 200;
            resp.rule = a.rule.clone();
            resp.client = a.client.clone().unwrap_or_default();
            resp.set_headers = a.set_headers.iter().cloned().collect();
            resp.remove_headers = a.remove_headers.clone();
        }
        Decision::Deny {
            deny, rule, client, ..
        } => {
            resp.http_status = u32::from(deny.reason.http_status());
            resp.reason = deny.reason.code().into();
            resp.detail = deny.detail.into();
            resp.rule = rule.clone().unwrap_or_default();
            resp.client = client.clone().unwrap_or_default();
        }
    }
    resp
}

/// Describe every key set of a snapshot.
pub fn key_sets(snap: &crate::core::snapshot::Snapshot) -> KeySetsResponse {
    let key_sets = snap
        .key_sets()
        .iter()
        .map(|ks| {
            let st = ks.state();
            KeySet {
                id: ks.id().to_owned(),
                kids: st
                    .keys
                    .iter()
                    .map(|k| k.kid.clone().unwrap_or_else(|| "(no kid)".into()))
                    .collect(),
                loaded: st.loaded(),
                available: ks.available(&st),
                age_seconds: st.last_success.map_or(-1.0, |t| t.elapsed().as_secs_f64()),
                last_error: st.last_error.clone().unwrap_or_default(),
                generation: st.generation,
                clients: snap
                    .clients
                    .iter()
                    .filter(|c| Arc::ptr_eq(&c.key_set, ks))
                    .map(|c| c.cfg.name.clone())
                    .collect(),
            }
        })
        .collect();
    KeySetsResponse { key_sets }
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn explain(
        &self,
        request: tonic::Request<ExplainRequest>,
    ) -> Result<tonic::Response<ExplainResponse>, tonic::Status> {
        let snap = self.state.snapshot();
        Ok(tonic::Response::new(
            explain_request(&snap, request.get_ref()).await,
        ))
    }

    async fn key_sets(
        &self,
        _request: tonic::Request<KeySetsRequest>,
    ) -> Result<tonic::Response<KeySetsResponse>, tonic::Status> {
        Ok(tonic::Response::new(key_sets(&self.state.snapshot())))
    }
}
