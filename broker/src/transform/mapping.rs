//! nats-server's verdict on a stream's subject transform (`ValidateMapping`, and the checks of
//! its non-strict `NewSubjectTransform`), with its words, so a refused transform gets the
//! reference's text. Only the decision is here: mapping subjects is `super`, which
//! knows fewer destination functions than nats-server accepts.

/// Go's `ErrBadSubject`.
const BAD_SUBJECT: &str = "invalid subject";
/// Go's `ErrInvalidMappingDestination` and the errors wrapping it.
const INVALID_TRANSFORM: &str = "invalid mapping destination: invalid transform";
const UNKNOWN_FUNCTION: &str = "invalid mapping destination: unknown function";
const OUT_OF_RANGE: &str = "invalid mapping destination: wildcard index out of range";
const NOT_ENOUGH_ARGS: &str =
    "invalid mapping destination: not enough arguments passed to the function";
const INVALID_ARG: &str =
    "invalid mapping destination: function argument is invalid or in the wrong format";
const TOO_MANY_ARGS: &str =
    "invalid mapping destination: too many arguments passed to the function";

/// Go's `mappingDestinationErr`: the error, then ` in <token>` when there is a token.
fn in_token(err: &str, token: &str) -> String {
    if token.is_empty() {
        err.to_string()
    } else {
        format!("{err} in {token}")
    }
}

/// The destination functions nats-server knows, in the order it tries them. A capital is
/// allowed where Go's pattern has `[xX]`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Function {
    Wildcard,
    Partition,
    SplitFromLeft,
    SplitFromRight,
    SliceFromLeft,
    SliceFromRight,
    Right,
    Left,
    Split,
    Random,
}

const FUNCTIONS: [(Function, &str, &[usize]); 10] = [
    (Function::Wildcard, "wildcard", &[0]),
    (Function::Partition, "partition", &[0]),
    (Function::SplitFromLeft, "splitFromLeft", &[0, 5, 9]),
    (Function::SplitFromRight, "splitFromRight", &[0, 5, 9]),
    (Function::SliceFromLeft, "sliceFromLeft", &[0, 5, 9]),
    (Function::SliceFromRight, "sliceFromRight", &[0, 5, 9]),
    (Function::Right, "right", &[0]),
    (Function::Left, "left", &[0]),
    (Function::Split, "split", &[0]),
    (Function::Random, "random", &[0]),
];

fn is_ws(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0c')
}

/// A `{{name(args)}}` token's function and arguments (split on `,` and the blanks after it),
/// as Go's `{{\s*name\s*\((.*)\)\s*}}` patterns find them.
fn function_call(token: &str) -> Option<(Function, Vec<&str>)> {
    let inner = token.strip_prefix("{{")?.strip_suffix("}}")?;
    let inner = inner.trim_start_matches(is_ws).trim_end_matches(is_ws);
    let (name, rest) = inner.split_at(inner.find(|c: char| c == '(' || is_ws(c))?);
    let args = rest
        .trim_start_matches(is_ws)
        .strip_prefix('(')?
        .strip_suffix(')')?;
    let (f, _, _) = FUNCTIONS.iter().find(|(_, canon, caps)| {
        name.len() == canon.len()
            && name
                .bytes()
                .zip(canon.bytes())
                .enumerate()
                .all(|(i, (a, b))| a == b || (caps.contains(&i) && a.eq_ignore_ascii_case(&b)))
    })?;
    let mut parts = args.split(',');
    let mut out = vec![parts.next().unwrap_or("")];
    out.extend(parts.map(|p| p.trim_start_matches(is_ws)));
    Some((*f, out))
}

/// Go's `strconv.Atoi` of an argument with its spaces trimmed.
fn atoi(arg: &str) -> Option<i64> {
    arg.trim_matches(' ').parse().ok()
}

/// Go's `indexPlaceHolders`: a destination token's function (`None`: a plain token) and the
/// source wildcards it names.
fn place_holders(token: &str) -> Result<Option<(Function, Vec<i64>)>, String> {
    if token.len() <= 1 {
        return Ok(None);
    }
    if let Some(n) = token.strip_prefix('$') {
        return Ok(n.parse().ok().map(|i| (Function::Wildcard, vec![i])));
    }
    if token.len() <= 4 || !token.starts_with("{{") || !token.ends_with("}}") {
        return Ok(None);
    }
    let err = |e: &str| Err(in_token(e, token));
    let Some((f, args)) = function_call(token) else {
        return err(UNKNOWN_FUNCTION);
    };
    match f {
        Function::Wildcard => {
            if args == [""] {
                return err(NOT_ENOUGH_ARGS);
            }
            if args.len() > 1 {
                return err(TOO_MANY_ARGS);
            }
            match atoi(args[0]) {
                Some(i) => Ok(Some((f, vec![i]))),
                None => err(INVALID_ARG),
            }
        }
        Function::Partition => {
            if atoi(args[0]).is_none_or(|n| n > i64::from(i32::MAX)) {
                return err(INVALID_ARG);
            }
            match args[1..]
                .iter()
                .map(|a| atoi(a))
                .collect::<Option<Vec<_>>>()
            {
                Some(idx) => Ok(Some((f, idx))),
                None => err(INVALID_ARG),
            }
        }
        Function::Split => {
            if args.len() < 2 {
                return err(NOT_ENOUGH_ARGS);
            }
            if args.len() > 2 {
                return err(TOO_MANY_ARGS);
            }
            let Some(i) = atoi(args[0]) else {
                return err(INVALID_ARG);
            };
            if args[1].contains([' ', '.']) {
                return err(INVALID_ARG);
            }
            Ok(Some((f, vec![i])))
        }
        Function::Random => {
            if args.len() != 1 {
                return err(NOT_ENOUGH_ARGS);
            }
            if atoi(args[0]).is_none_or(|n| n > i64::from(i32::MAX)) {
                return err(INVALID_ARG);
            }
            Ok(Some((f, Vec::new())))
        }
        _ => {
            if args.len() < 2 {
                return err(NOT_ENOUGH_ARGS);
            }
            if args.len() > 2 {
                return err(TOO_MANY_ARGS);
            }
            let i = atoi(args[0]);
            if i.is_none() || args[1].trim_matches(' ').parse::<i32>().is_err() {
                return err(INVALID_ARG);
            }
            Ok(Some((f, vec![i.unwrap_or_default()])))
        }
    }
}

/// Go's `subjectInfo`: whether `s` is valid for a transform, its number of `*` tokens and
/// whether it ends in `>`.
fn subject_info(s: &str) -> Option<(i64, bool)> {
    if s.is_empty() {
        return None;
    }
    let (mut pwcs, mut fwc) = (0, false);
    for t in s.split('.') {
        if t.is_empty() || fwc {
            return None;
        }
        match t {
            ">" => fwc = true,
            "*" => pwcs += 1,
            _ => {}
        }
    }
    Some((pwcs, fwc))
}

/// nats-server's `NewSubjectTransform(src, dest)` checks (republish is validated with them
/// alone): its error text, if it refuses.
pub fn transform_error(src: &str, dest: &str) -> Option<String> {
    let src = if src.is_empty() { ">" } else { src };
    let (Some((pwcs, fwc)), Some((dpwcs, dfwc))) = (subject_info(src), subject_info(dest)) else {
        return Some(BAD_SUBJECT.into());
    };
    if dpwcs > 0 || fwc != dfwc {
        return Some(BAD_SUBJECT.into());
    }
    for token in dest.split('.') {
        let (f, idx) = match place_holders(token) {
            Err(e) => return Some(e),
            Ok(None) => continue,
            Ok(Some(p)) => p,
        };
        if f == Function::Random {
            continue;
        }
        if pwcs > 0 || fwc {
            if let Some(i) = idx.iter().find(|&&i| i > pwcs) {
                return Some(in_token(OUT_OF_RANGE, &format!("{token}: [{i}]")));
            }
        } else if f != Function::Partition {
            return Some(in_token(OUT_OF_RANGE, token));
        }
    }
    None
}

/// nats-server's `ValidateMapping(src, dest)` (stream, source and mirror transforms): its
/// error text, if it refuses. An empty `dest` passes.
pub fn mapping_error(src: &str, dest: &str) -> Option<String> {
    if dest.is_empty() {
        return None;
    }
    let mut fwc = false;
    for t in dest.split('.') {
        if t.is_empty() || fwc {
            return Some(in_token(INVALID_TRANSFORM, t));
        }
        if t.len() > 4 && t.starts_with("{{") && t.ends_with("}}") {
            if function_call(t).is_none() {
                return Some(in_token(UNKNOWN_FUNCTION, t));
            }
            continue;
        }
        if t == ">" {
            fwc = true;
        } else if t.contains(is_ws) {
            return Some(INVALID_TRANSFORM.into());
        }
    }
    transform_error(src, dest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_as_nats_server() {
        for (src, dest, want) in [
            ("a.*", "b.{{wildcard(1)}}", None),
            ("a.*", "b.{{ Wildcard(1) }}", None),
            ("a.*", "b.$x", None),
            ("a.*", "b.{{partition(3,1)}}", None),
            ("a.*", "b.{{splitfromleft(1,2)}}", None),
            ("a.*", "{{}}.b", None),
            ("", "b.>", None),
            ("a.*", "", None),
            ("a.*", "b..c", Some("invalid mapping destination: invalid transform")),
            (
                "a.*",
                "b.>.c",
                Some("invalid mapping destination: invalid transform in c"),
            ),
            ("a.*", "b.c d", Some("invalid mapping destination: invalid transform")),
            (
                "a.*",
                "b.{{x}}",
                Some("invalid mapping destination: unknown function in {{x}}"),
            ),
            (
                "a.*",
                "b.{{wildcard(2)}}",
                Some("invalid mapping destination: wildcard index out of range in {{wildcard(2)}}: [2]"),
            ),
            (
                "a.b",
                "b.{{wildcard(1)}}",
                Some("invalid mapping destination: wildcard index out of range in {{wildcard(1)}}"),
            ),
            ("a.*", "b.{{wildcard()}}", Some("invalid mapping destination: not enough arguments passed to the function in {{wildcard()}}")),
            ("a.*", "b.{{wildcard(1,2)}}", Some("invalid mapping destination: too many arguments passed to the function in {{wildcard(1,2)}}")),
            ("a.*", "b.{{random()}}", Some("invalid mapping destination: function argument is invalid or in the wrong format in {{random()}}")),
            ("a.*", "b.{{split(1)}}", Some("invalid mapping destination: not enough arguments passed to the function in {{split(1)}}")),
            ("a.*", "b.*", Some("invalid subject")),
            ("a.>", "b", Some("invalid subject")),
            ("a.*", "b.>", Some("invalid subject")),
        ] {
            assert_eq!(mapping_error(src, dest).as_deref(), want, "{src} -> {dest}");
        }
        assert_eq!(transform_error(">", "").as_deref(), Some("invalid subject"));
    }
}
