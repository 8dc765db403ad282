//! Keyword regexes: what a record's regex rules cost, and the compiled regexes themselves, each
//! kept once per process whatever the number of records and cache refreshes that name them.
//!
//! - Every function reads every record (a subscription may want triggers of any category), so
//!   every function validates a record's patterns; only the messaging function matches them.
//!   [`check`] compiles a pattern once per process to validate it and measure its compiled size,
//!   keeps only the answer, and drops the regex. [`compiled`] (the first keyword match) compiles
//!   it for use and keeps it in a cache bounded in bytes.
//! - A record's regexes count against its account's budget ([`MAX_ACCOUNT_REGEX_BYTES`]) in
//!   record order; a record that would go over it is refused, naming the budget, and its
//!   patterns are not compiled at all: one account's records cannot make a function compile or
//!   hold more than the budget, nor make every other account's batch wait for it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};

use regex_automata::meta::Regex;

/// Compiled-size limit of one keyword regex (its NFA, as the `regex` crate's `size_limit`):
/// big enough for real rules, too small for abuse.
pub const MAX_REGEX_BYTES: usize = 64 * 1024;
/// What all of one account's keyword regexes may take compiled (heap bytes, as
/// `regex_automata::meta::Regex::memory_usage` counts them).
pub const MAX_ACCOUNT_REGEX_BYTES: usize = 1024 * 1024;
/// What one process keeps compiled for matching, all accounts together; the least recently
/// compiled are dropped beyond it (and compiled again when matched).
pub const COMPILED_CACHE_BYTES: usize = 8 * 1024 * 1024;
/// Answers [`check`] keeps; all are forgotten past this (each is a few bytes and a pattern).
const CHECKED_ENTRIES: usize = 20_000;

type Key = (String, bool);

fn build(pattern: &str, case_sensitive: bool) -> Result<Regex, String> {
    Regex::builder()
        .syntax(regex_automata::util::syntax::Config::new().case_insensitive(!case_sensitive))
        .configure(
            // A keyword rule only asks whether a message matches: no capture groups, and none of
            // the engines that exist to report them (one-pass DFA, bounded backtracker), which
            // roughly halve what each regex holds. Matching stays linear (lazy DFA, PikeVM).
            Regex::config()
                .nfa_size_limit(Some(MAX_REGEX_BYTES))
                .hybrid_cache_capacity(MAX_REGEX_BYTES)
                .which_captures(regex_automata::nfa::thompson::WhichCaptures::None)
                .onepass(false)
                .backtrack(false),
        )
        .build(pattern)
        .map_err(|e| match (e.size_limit(), e.syntax_error()) {
            // The `regex` crate's own wording, which records were validated with before.
            (Some(limit), _) => format!("Compiled regex exceeds size limit of {limit} bytes."),
            (None, Some(syntax)) => syntax.to_string(),
            (None, None) => e.to_string(),
        })
}

fn checked() -> &'static Mutex<HashMap<Key, Result<usize, String>>> {
    static CHECKED: OnceLock<Mutex<HashMap<Key, Result<usize, String>>>> = OnceLock::new();
    CHECKED.get_or_init(Default::default)
}

/// The compiled size of `pattern` (heap bytes), or why it is not a valid keyword regex. Compiled
/// the first time this process sees it; the answer is kept, the regex is not.
pub(crate) fn check(pattern: &str, case_sensitive: bool) -> Result<usize, String> {
    let key = (pattern.to_string(), case_sensitive);
    if let Some(answer) = checked().lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
        return answer.clone();
    }
    let answer = build(pattern, case_sensitive).map(|re| re.memory_usage());
    let mut known = checked().lock().unwrap_or_else(|p| p.into_inner());
    if known.len() >= CHECKED_ENTRIES {
        known.clear();
    }
    known.insert(key, answer.clone());
    answer
}

/// The size [`check`] found for `pattern`, if it was checked: no compile.
pub(crate) fn known_size(pattern: &str, case_sensitive: bool) -> Option<Result<usize, String>> {
    checked()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&(pattern.to_string(), case_sensitive))
        .cloned()
}

#[derive(Default)]
struct Compiled {
    regexes: HashMap<Key, Arc<Regex>>,
    order: VecDeque<Key>,
    bytes: usize,
}

fn cache() -> &'static Mutex<Compiled> {
    static COMPILED: OnceLock<Mutex<Compiled>> = OnceLock::new();
    COMPILED.get_or_init(Default::default)
}

/// `pattern` compiled for matching, once per process while it stays in the cache; `None` if it
/// does not compile (it was validated, so only if the process's limits changed).
pub(crate) fn compiled(pattern: &str, case_sensitive: bool) -> Option<Arc<Regex>> {
    let key = (pattern.to_string(), case_sensitive);
    if let Some(re) = cache().lock().unwrap_or_else(|p| p.into_inner()).regexes.get(&key) {
        return Some(re.clone());
    }
    let re = Arc::new(build(pattern, case_sensitive).ok()?);
    let size = re.memory_usage();
    let mut c = cache().lock().unwrap_or_else(|p| p.into_inner());
    while c.bytes + size > COMPILED_CACHE_BYTES {
        let Some(old) = c.order.pop_front() else { break };
        if let Some(gone) = c.regexes.remove(&old) {
            c.bytes -= gone.memory_usage();
        }
    }
    if c.regexes.insert(key.clone(), re.clone()).is_none() {
        c.order.push_back(key);
        c.bytes += size;
    }
    Some(re)
}

/// How many bytes the process holds compiled now (for the benchmark).
pub fn compiled_bytes() -> usize {
    cache().lock().unwrap_or_else(|p| p.into_inner()).bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pattern_is_checked_once_and_sized() {
        let size = check("^order\\s+\\d+$", false).unwrap();
        assert!(size > 0 && size < MAX_REGEX_BYTES, "{size}");
        assert_eq!(known_size("^order\\s+\\d+$", false), Some(Ok(size)));
        assert_eq!(
            known_size("^order\\s+\\d+$", true),
            None,
            "case sensitivity is part of the key"
        );
        assert_eq!(
            check("(unclosed", false).unwrap_err().lines().next(),
            Some("regex parse error:")
        );
        assert_eq!(
            check("a{1000}{1000}", false),
            Err("Compiled regex exceeds size limit of 65536 bytes.".into())
        );
    }

    #[test]
    fn compiled_regexes_match_as_the_rules_say_and_are_shared() {
        let a = compiled("^order\\s+\\d+$", false).unwrap();
        assert!(a.is_match("ORDER 42"));
        assert!(!a.is_match("order x"));
        let b = compiled("^order\\s+\\d+$", false).unwrap();
        assert!(Arc::ptr_eq(&a, &b), "compiled once per process");
        assert!(compiled("^Order$", true).unwrap().is_match("Order"));
        assert!(!compiled("^Order$", true).unwrap().is_match("order"));
        assert!(compiled_bytes() <= COMPILED_CACHE_BYTES);
    }
}
