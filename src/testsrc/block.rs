//! Per-client reachability rules: simulate a media server that one node of a cluster cannot
//! reach while the others can.
//!
//! Cluster nodes name themselves in the `User-Agent` of their WHEP POST
//! (`whep-bridge/0.1.0 (node node-a)`), so a rule is a plain substring of that header. While a
//! rule matches, play requests are refused and the matching live sessions are dropped the way
//! `drop_after` drops them; other clients are untouched. Rules are set and lifted through the
//! `/control/block` and `/control/unblock` routes.

use std::collections::BTreeSet;
use std::sync::Mutex;

/// True if `rule` is a substring of the client's `User-Agent` (case-sensitive). A client that
/// sent no `User-Agent` matches nothing, and an empty rule matches nothing either: it would
/// otherwise block every client, which is never what a test means.
pub fn matches(rule: &str, agent: Option<&str>) -> bool {
    !rule.is_empty() && agent.is_some_and(|a| a.contains(rule))
}

/// The active rules, shared by every request handler.
#[derive(Default)]
pub struct Blocklist {
    /// Ordered, so the control routes report the rules in a stable order.
    rules: Mutex<BTreeSet<String>>,
}

impl Blocklist {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        // Every update is a single insert/remove/clear, so a poisoned set is still consistent.
        self.rules.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds `rule` (a repeated rule is kept once). Empty rules are ignored; see [`matches`].
    pub fn add(&self, rule: &str) {
        if !rule.is_empty() {
            self.lock().insert(rule.to_owned());
        }
    }

    /// Lifts `rule`, or every rule when `None`. Lifting a rule that is not set is a no-op, so
    /// a test can unblock unconditionally in its cleanup.
    pub fn remove(&self, rule: Option<&str>) {
        let mut rules = self.lock();
        match rule {
            Some(r) => {
                rules.remove(r);
            }
            None => rules.clear(),
        }
    }

    /// The rules in effect, sorted.
    pub fn rules(&self) -> Vec<String> {
        self.lock().iter().cloned().collect()
    }

    /// The first rule that refuses a client with this `User-Agent`, if any.
    pub fn blocking(&self, agent: Option<&str>) -> Option<String> {
        self.lock().iter().find(|r| matches(r, agent)).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODE_A: &str = "whep-bridge/0.1.0 (node node-a)";
    const NODE_B: &str = "whep-bridge/0.1.0 (node node-b)";

    #[test]
    fn substring_of_the_user_agent_matches() {
        assert!(matches("node-a", Some(NODE_A)));
        assert!(matches("(node node-a)", Some(NODE_A)));
        assert!(!matches("node-a", Some(NODE_B)));
        assert!(!matches("NODE-A", Some(NODE_A)), "case-sensitive");
        assert!(!matches("node-a", None), "no User-Agent, no match");
        assert!(!matches("", Some(NODE_A)), "an empty rule blocks nobody");
    }

    #[test]
    fn rules_are_added_once_and_lifted_one_by_one_or_all() {
        let b = Blocklist::default();
        assert_eq!(b.blocking(Some(NODE_A)), None);
        b.add("node-b");
        b.add("node-a");
        b.add("node-a");
        b.add("");
        assert_eq!(b.rules(), vec!["node-a", "node-b"]);
        assert_eq!(b.blocking(Some(NODE_A)).as_deref(), Some("node-a"));
        assert_eq!(b.blocking(Some("curl/8.5.0")), None);

        b.remove(Some("node-a"));
        b.remove(Some("not-set"));
        assert_eq!(b.rules(), vec!["node-b"]);
        assert_eq!(b.blocking(Some(NODE_A)), None);
        assert_eq!(b.blocking(Some(NODE_B)).as_deref(), Some("node-b"));

        b.add("node-a");
        b.remove(None);
        assert!(b.rules().is_empty());
        assert_eq!(b.blocking(Some(NODE_B)), None);
    }
}
