//! The decision trace of one request (`explain`): the verdict and what each step saw, both from
//! one run of [`check::decide_traced`] — the path `serve` runs, with a collecting [`Trace`].

use crate::core::check::{self, CheckInput, Trace};
use crate::core::snapshot::Snapshot;
use crate::decision::Decision;

/// The decision plus what each step saw.
#[derive(Debug, Clone)]
pub struct Explanation {
    pub decision: Decision,
    pub steps: Vec<(String, String)>,
    /// Roles found in the token under the routed client's role claim paths.
    pub roles: Vec<String>,
    pub config_generation: u64,
}

impl Explanation {
    pub fn decision_name(&self) -> &'static str {
        if self.decision.is_allow() {
            "allow"
        } else {
            "deny"
        }
    }
}

/// Explain one request against `snap` at time `now` (Unix seconds).
pub async fn explain(snap: &Snapshot, input: &CheckInput<'_>, now: i64) -> Explanation {
    let mut trace = Trace::collect();
    let decision = check::decide_traced(snap, input, now, &mut trace).await;
    Explanation {
        decision,
        steps: trace
            .steps()
            .iter()
            .map(|(s, o)| ((*s).to_owned(), o.clone()))
            .collect(),
        roles: trace.roles().to_vec(),
        config_generation: snap.generation,
    }
}
