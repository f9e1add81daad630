//! Subject transforms (`subject_transform`, `republish`): a source pattern and a destination
//! whose `*`/`>` positions, `$N` or `{{wildcard(N)}}` tokens take the source's wildcard tokens.

use serde::{Deserialize, Serialize};

use super::errors::ApiError;
use crate::subject;

/// `{"src": .., "dest": ..}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubjectTransform {
    #[serde(default)]
    pub src: String,
    pub dest: String,
}

/// `republish`: `{"src", "dest", "headers_only"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Republish {
    #[serde(default)]
    pub src: String,
    pub dest: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub headers_only: bool,
}

/// Which source wildcard a destination token takes, if any.
fn wildcard_index(tok: &str) -> Option<usize> {
    if let Some(n) = tok.strip_prefix('$') {
        return n.parse().ok();
    }
    let inner = tok.strip_prefix("{{")?.strip_suffix("}}")?.trim();
    let args = inner.strip_prefix("wildcard(")?.strip_suffix(')')?;
    args.trim().parse().ok()
}

/// Checks that `dest` only refers to wildcards `src` has.
pub fn validate(src: &str, dest: &str) -> Result<(), ApiError> {
    let src = if src.is_empty() { ">" } else { src };
    if !subject::is_valid_subject(src) || !subject::is_valid_subject(dest) && !dest.contains("{{") {
        return Err(ApiError::new(10173, 400, "invalid subject transform"));
    }
    let stars = src.split('.').filter(|t| *t == "*").count();
    for t in dest.split('.') {
        if let Some(i) = wildcard_index(t) {
            if i == 0 || i > stars {
                return Err(ApiError::new(10173, 400, "invalid subject transform"));
            }
        } else if t.starts_with("{{") {
            return Err(ApiError::new(
                10173,
                400,
                "invalid subject transform function",
            ));
        }
    }
    Ok(())
}

/// `subject` (which matches `src`) mapped onto `dest`; `None` when it does not match.
pub fn apply(src: &str, dest: &str, subj: &str) -> Option<String> {
    let src = if src.is_empty() { ">" } else { src };
    if !subject::matches(subj, src) {
        return None;
    }
    let toks: Vec<&str> = subj.split('.').collect();
    let mut wild: Vec<&str> = Vec::new();
    let mut rest: Vec<&str> = Vec::new();
    for (i, t) in src.split('.').enumerate() {
        match t {
            "*" => wild.push(toks[i]),
            ">" => {
                rest = toks[i..].to_vec();
                break;
            }
            _ => {}
        }
    }
    let mut out: Vec<String> = Vec::new();
    let mut star = 0;
    for t in dest.split('.') {
        if let Some(i) = wildcard_index(t) {
            out.push(wild.get(i - 1)?.to_string());
        } else if t == "*" {
            out.push(wild.get(star)?.to_string());
            star += 1;
        } else if t == ">" {
            out.extend(rest.iter().map(|s| s.to_string()));
        } else {
            out.push(t.to_string());
        }
    }
    Some(out.join("."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_tokens() {
        assert_eq!(apply("a.*.b", "x.$1", "a.q.b").as_deref(), Some("x.q"));
        assert_eq!(
            apply("a.*.*", "x.{{wildcard(2)}}.{{wildcard(1)}}", "a.1.2").as_deref(),
            Some("x.2.1")
        );
        assert_eq!(
            apply(">", "repub.>", "orders.new").as_deref(),
            Some("repub.orders.new")
        );
        assert_eq!(apply("", "r.>", "a.b").as_deref(), Some("r.a.b"));
        assert_eq!(apply("a.*", "x.*", "a.z").as_deref(), Some("x.z"));
        assert_eq!(apply("a.*", "x", "b.z"), None);
        assert!(validate("a.*", "x.$2").is_err());
        assert!(validate("a.*", "x.$1").is_ok());
    }
}
