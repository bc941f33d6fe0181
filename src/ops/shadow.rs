//! The shadow config (DESIGN §11, `serve --shadow-config CANDIDATE.yaml`): every Check is also
//! decided against the candidate — the same request, the same `now`, through the same
//! `core::check` — and where the two disagree it is counted
//! (`oidc_authz_shadow_disagreements_total{live_decision,shadow_decision,rule}`) and logged (at
//! most one line a second, with both reasons and rules). The answer always comes from the live
//! config.
//!
//! The candidate shares key sets with the live config where the source is the same (one
//! `KeyRegistry`), and has its own token cache and its own DPoP replay memory: the live decision
//! has just recorded the proof's `jti`, so a shared memory would make every DPoP request a false
//! disagreement. It reloads like the live config (`ops::reload`, `Target::Shadow`).
//!
//! Cost: a second decision per Check (a warm one after the first sight of a token; measured in
//! docs/performance.md). Nothing at all when no shadow config is set (one atomic load).

use crate::core::check::{self, CheckInput};
use crate::decision::Decision;
use crate::ops::state::ServerState;

/// A decision as metrics and logs name it: (decision, reason, rule, client).
fn outcome(d: &Decision) -> (&'static str, &'static str, &str, &str) {
    match d {
        Decision::Allow(a) => match &a.audit {
            None => ("allow", "", &a.rule, a.client.as_deref().unwrap_or("")),
            Some(deny) => (
                "audit_deny",
                deny.reason.code(),
                &a.rule,
                a.client.as_deref().unwrap_or(""),
            ),
        },
        Decision::Deny {
            deny, rule, client, ..
        } => (
            "deny",
            deny.reason.code(),
            rule.as_deref().unwrap_or(""),
            client.as_deref().unwrap_or(""),
        ),
    }
}

/// Whether two decisions disagree: a different decision, or a different deny reason.
pub fn disagree(live: &Decision, shadow: &Decision) -> bool {
    let (ld, lr, ..) = outcome(live);
    let (sd, sr, ..) = outcome(shadow);
    ld != sd || lr != sr
}

/// Decide `input` against the shadow config too (when one is set) and report a disagreement
/// with `live`. Runs outside the Check's span: the candidate's work is not the answer's.
pub async fn observe(state: &ServerState, input: &CheckInput<'_>, now: i64, live: &Decision) {
    let Some(shadow) = state.shadow() else {
        return;
    };
    let decision = crate::observe::spans::outside_the_check(check::decide_bound(
        &shadow.snapshot,
        Some(shadow.cache()),
        None,
        Some(shadow.replay()),
        input,
        now,
    ))
    .await;
    if !disagree(live, &decision) {
        return;
    }
    let (ld, lr, lrule, lclient) = outcome(live);
    let (sd, sr, srule, sclient) = outcome(&decision);
    state.metrics.shadow_disagreement(ld, sd, lrule);
    if let Some(suppressed) = shadow.may_log() {
        tracing::info!(
            live_decision = ld,
            live_reason = lr,
            live_rule = lrule,
            live_client = lclient,
            shadow_decision = sd,
            shadow_reason = sr,
            shadow_rule = srule,
            shadow_client = sclient,
            suppressed,
            "shadow config disagrees"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::{Allow, Deny, Reason};

    fn deny(r: Reason) -> Decision {
        Decision::Deny {
            deny: Deny::new(r, "x"),
            rule: Some("r".into()),
            client: None,
            token_presented: true,
        }
    }

    #[test]
    fn disagreement_is_decision_or_reason() {
        let allow = Decision::Allow(Allow::default());
        assert!(!disagree(&allow, &allow.clone()));
        assert!(disagree(&allow, &deny(Reason::TokenExpired)));
        assert!(disagree(
            &deny(Reason::TokenExpired),
            &deny(Reason::InvalidSignature)
        ));
        assert!(!disagree(
            &deny(Reason::TokenExpired),
            &deny(Reason::TokenExpired)
        ));
        let audit = Decision::Allow(Allow {
            audit: Some(Box::new(Deny::new(Reason::MissingAValidRole, "x"))),
            ..Allow::default()
        });
        assert!(
            disagree(&allow, &audit),
            "an audit deny is not a plain allow"
        );
    }
}
