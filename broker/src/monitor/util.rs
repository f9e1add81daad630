//! Formatting and argument decoding that mimic Go (nats-server) byte for byte.

/// Applies Go's HTML-safe JSON escaping (`<`, `>`, `&`, U+2028, U+2029) to serialized JSON.
///
/// These characters can only occur inside JSON strings, so a plain replace is exact.
pub fn go_escape(json: String) -> String {
    if !json.contains(['<', '>', '&', '\u{2028}', '\u{2029}']) {
        return json;
    }
    let mut out = String::with_capacity(json.len() + 16);
    for ch in json.chars() {
        match ch {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

/// Go's `strconv.Quote` for the error messages (ASCII-printable fast path, escapes otherwise).
fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The query string as nats-server reads it: `Get(name)` is the first value or "".
#[derive(Debug, Default, Clone)]
pub struct Params(pub Vec<(String, String)>);

impl Params {
    /// The first value of `name`, or "".
    pub fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }

    /// `decodeBool`: empty is false; otherwise Go's `strconv.ParseBool` or a 400 message.
    pub fn bool(&self, name: &str) -> Result<bool, String> {
        let v = self.get(name);
        match v {
            "" => Ok(false),
            "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
            "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
            _ => Err(format!(
                "Error decoding boolean for '{}': strconv.ParseBool: parsing {}: invalid syntax",
                name,
                go_quote(v)
            )),
        }
    }

    /// `decodeInt`: empty is 0; otherwise Go's `strconv.Atoi` or a 400 message.
    pub fn int(&self, name: &str) -> Result<i64, String> {
        let v = self.get(name);
        if v.is_empty() {
            return Ok(0);
        }
        match v.parse::<i64>() {
            Ok(n) => Ok(n),
            Err(e) => Err(format!(
                "Error decoding int for '{}': strconv.Atoi: parsing {}: {}",
                name,
                go_quote(v),
                num_err(&e)
            )),
        }
    }

    /// `decodeUint64`: empty is 0; otherwise Go's `strconv.ParseUint` or a 400 message.
    pub fn uint(&self, name: &str) -> Result<u64, String> {
        let v = self.get(name);
        if v.is_empty() {
            return Ok(0);
        }
        let parsed = if v.starts_with('+') {
            None
        } else {
            v.parse::<u64>().ok()
        };
        match parsed {
            Some(n) => Ok(n),
            None => {
                let why = if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
                    "value out of range"
                } else {
                    "invalid syntax"
                };
                Err(format!(
                    "Error decoding uint64 for '{}': strconv.ParseUint: parsing {}: {}",
                    name,
                    go_quote(v),
                    why
                ))
            }
        }
    }
}

fn num_err(e: &std::num::ParseIntError) -> &'static str {
    use std::num::IntErrorKind::*;
    match e.kind() {
        PosOverflow | NegOverflow => "value out of range",
        _ => "invalid syntax",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_errors_like_go() {
        let p = Params(vec![
            ("subs".into(), "foo".into()),
            ("limit".into(), "abc".into()),
            ("cid".into(), "-1".into()),
            ("offset".into(), "99999999999999999999".into()),
        ]);
        assert_eq!(
            p.bool("subs").unwrap_err(),
            "Error decoding boolean for 'subs': strconv.ParseBool: parsing \"foo\": invalid syntax"
        );
        assert_eq!(
            p.int("limit").unwrap_err(),
            "Error decoding int for 'limit': strconv.Atoi: parsing \"abc\": invalid syntax"
        );
        assert_eq!(
            p.uint("cid").unwrap_err(),
            "Error decoding uint64 for 'cid': strconv.ParseUint: parsing \"-1\": invalid syntax"
        );
        assert!(p.int("offset").unwrap_err().ends_with("value out of range"));
        assert_eq!(p.int("missing"), Ok(0));
        assert_eq!(p.bool("missing"), Ok(false));
    }

    #[test]
    fn escapes_like_go() {
        assert_eq!(
            go_escape("\"a>b<c&\"".into()),
            "\"a\\u003eb\\u003cc\\u0026\""
        );
    }
}
