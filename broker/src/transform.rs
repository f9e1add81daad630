//! Subject transforms, as nats-server's `subject_transform.go` has them: a source pattern and
//! a destination whose `*`/`>` positions, `$N` or `{{wildcard(N)}}` tokens take the source's
//! wildcard tokens. Account mappings and imports, stream transforms, sources and republish
//! all map subjects with them.

pub mod mapping;

use crate::subject;

/// Why a transform's destination cannot be used with its source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TransformError {
    /// An invalid subject, or a wildcard the source does not have.
    #[error("invalid subject transform")]
    Invalid,
    /// A `{{...}}` function this server does not know.
    #[error("invalid subject transform function")]
    UnknownFunction,
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

/// Checks that `dest` only refers to wildcards `src` has (an empty `src` is `>`).
pub fn check(src: &str, dest: &str) -> Result<(), TransformError> {
    let src = if src.is_empty() { ">" } else { src };
    if !subject::is_valid_subject(src) || !subject::is_valid_subject(dest) && !dest.contains("{{") {
        return Err(TransformError::Invalid);
    }
    let stars = src.split('.').filter(|t| *t == "*").count();
    for t in dest.split('.') {
        if let Some(i) = wildcard_index(t) {
            if i == 0 || i > stars {
                return Err(TransformError::Invalid);
            }
        } else if t.starts_with("{{") {
            return Err(TransformError::UnknownFunction);
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
        assert_eq!(check("a.*", "x.$2"), Err(TransformError::Invalid));
        assert_eq!(
            check("a.*", "x.{{nope(1)}}"),
            Err(TransformError::UnknownFunction)
        );
        assert!(check("a.*", "x.$1").is_ok());
    }
}
