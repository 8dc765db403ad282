//! A record's `keywords` and their rules (keyword.matched): exact, starts_with (a whole word),
//! contains and regex, each checked when the record is read; a regex is compiled once per process
//! when a message first meets it, within the account's budget ([`RegexBudget`]).

use serde_json::Value;

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchType {
    Exact,
    StartsWith,
    Contains,
    Regex,
}

impl MatchType {
    pub fn as_str(self) -> &'static str {
        match self {
            MatchType::Exact => "exact",
            MatchType::StartsWith => "starts_with",
            MatchType::Contains => "contains",
            MatchType::Regex => "regex",
        }
    }
}

/// One keyword rule, validated when the record is read; a regex rule is compiled only when a
/// message is first matched against it, once per process (crate::patterns).
#[derive(Debug, Clone)]
pub struct KeywordRule {
    pub keyword: String,
    pub match_type: MatchType,
    pub case_sensitive: bool,
    /// The keyword as compared: lowercased unless case-sensitive.
    folded: String,
    /// A regex rule's compiled size (heap bytes); 0 for the others.
    pub regex_bytes: usize,
}

impl KeywordRule {
    /// Whether `text` (an inbound SMS body) matches this rule. Text is trimmed first.
    pub fn matches(&self, text: &str) -> bool {
        let text = text.trim();
        if self.match_type == MatchType::Regex {
            return crate::patterns::compiled(&self.keyword, self.case_sensitive).is_some_and(|re| re.is_match(text));
        }
        let owned;
        let text = if self.case_sensitive {
            text
        } else {
            owned = text.to_lowercase();
            owned.as_str()
        };
        match self.match_type {
            MatchType::Exact => text == self.folded,
            MatchType::StartsWith => {
                // A whole word: "JOIN" matches "join now" but not "joint".
                text.strip_prefix(self.folded.as_str())
                    .is_some_and(|rest| rest.is_empty() || !rest.starts_with(|c: char| c.is_alphanumeric()))
            }
            MatchType::Contains => text.contains(self.folded.as_str()),
            MatchType::Regex => false,
        }
    }
}

pub(super) fn parse_keywords(
    ctx: &Ctx,
    v: Option<&Value>,
    budget: &mut RegexBudget,
) -> Result<Vec<KeywordRule>, RecordError> {
    let (regex_left, regex_limit) = (budget.left, budget.limit);
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(Vec::new());
    };
    let decoded = decode_json_text(v);
    let list = as_list(v, &decoded)
        .ok_or_else(|| ctx.err("keywords", format!("must be a list of rules, got {}", json_kind(v))))?;
    if list.len() > MAX_KEYWORDS {
        return Err(ctx.err(
            "keywords",
            format!("has {} rules; at most {MAX_KEYWORDS} are allowed", list.len()),
        ));
    }
    let mut out = Vec::with_capacity(list.len());
    let mut regexes = 0;
    let mut regex_spent = 0usize;
    for (i, rule) in list.iter().enumerate() {
        let field = |f: &str| format!("keywords[{i}]{f}");
        let map = rule.as_object().ok_or_else(|| {
            ctx.err(
                &field(""),
                format!("must be a map with `keyword`, got {}", json_kind(rule)),
            )
        })?;
        let keyword = match map.get("keyword") {
            Some(Value::String(k)) if !k.trim().is_empty() && k.len() <= MAX_KEYWORD_LEN => k.trim().to_string(),
            Some(Value::String(_)) => {
                return Err(ctx.err(&field(".keyword"), format!("must be 1 to {MAX_KEYWORD_LEN} characters")))
            }
            Some(other) => {
                return Err(ctx.err(
                    &field(".keyword"),
                    format!("must be a string, got {}", json_kind(other)),
                ))
            }
            None => return Err(ctx.err(&field(".keyword"), "is required")),
        };
        let match_type = match map.get("match") {
            None | Some(Value::Null) => MatchType::Exact,
            Some(m) => match m.as_str() {
                Some("exact") => MatchType::Exact,
                Some("starts_with") => MatchType::StartsWith,
                Some("contains") => MatchType::Contains,
                Some("regex") => MatchType::Regex,
                _ => {
                    return Err(ctx.err(
                        &field(".match"),
                        format!("{m} is not one of exact, starts_with, contains, regex"),
                    ))
                }
            },
        };
        let case_sensitive = match map.get("case_sensitive") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                return Err(ctx.err(
                    &field(".case_sensitive"),
                    format!("must be a boolean, got {}", json_kind(other)),
                ))
            }
        };
        let regex = if match_type == MatchType::Regex {
            regexes += 1;
            if regexes > MAX_REGEX_KEYWORDS {
                return Err(ctx.err(
                    &field(".match"),
                    format!("is the regex rule number {regexes}; at most {MAX_REGEX_KEYWORDS} are allowed"),
                ));
            }
            let over_budget = |needed: Option<usize>| {
                ctx.err(
                    &field(".keyword"),
                    format!(
                        "puts the account's regex keyword rules over their budget of {} KiB compiled \
                         ({}; earlier records, by subscription id, took the rest): use fewer or \
                         simpler regex rules, or starts_with/contains",
                        regex_limit / 1024,
                        needed.map_or("no room left to compile it".into(), |n| format!(
                            "it needs {} KiB",
                            n.div_ceil(1024)
                        ))
                    ),
                )
            };
            // Known sizes cost nothing; an unknown pattern is compiled only if there is room.
            // The same decisions in every process: what a pattern costs is the same whether this
            // process compiled it before or not.
            let left = regex_left.saturating_sub(regex_spent);
            let checked = match crate::patterns::known_size(&keyword, case_sensitive) {
                Some(answer) => answer,
                None if left == 0 || budget.examine_left == 0 => return Err(over_budget(None)),
                None => crate::patterns::check(&keyword, case_sensitive),
            };
            if budget.examine_left == 0 {
                return Err(over_budget(None));
            }
            budget.examine_left = budget
                .examine_left
                .saturating_sub(*checked.as_ref().unwrap_or(&MAX_REGEX_BYTES));
            let bytes =
                checked.map_err(|e| ctx.err(&field(".keyword"), format!("is not a valid regex: {}", one_line(&e))))?;
            if bytes > left {
                return Err(over_budget(Some(bytes)));
            }
            regex_spent += bytes;
            bytes
        } else {
            0
        };
        let folded = if case_sensitive {
            keyword.clone()
        } else {
            keyword.to_lowercase()
        };
        out.push(KeywordRule {
            keyword,
            match_type,
            case_sensitive,
            folded,
            regex_bytes: regex,
        });
    }
    Ok(out)
}
