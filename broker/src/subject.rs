//! Subject validation and matching.
//!
//! These follow nats-server's rules (`server/sublist.go`): a subject is a
//! `.`-separated list of non-empty tokens; `*` and `>` are wildcards only when
//! they make up a whole token, and `>` is only valid as the last token.
//! Whitespace (` `, `\t`, `\n`, `\r`, `\f`) is not allowed anywhere.
//!
//! Every function takes anything that is `AsRef<[u8]>` (`&str`, `&[u8]`,
//! `Bytes`, ...), works on bytes and does not allocate.

/// The token separator.
pub const TSEP: u8 = b'.';
/// The partial (single token) wildcard.
pub const PWC: u8 = b'*';
/// The full (one or more trailing tokens) wildcard.
pub const FWC: u8 = b'>';

#[inline]
fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b'\x0c')
}

/// Returns true if `s` is a valid subject (wildcards allowed), as nats-server's `IsValidSubject`.
///
/// Rules: non-empty, no empty token (so no leading, trailing or doubled `.`),
/// no whitespace, and nothing after a `>` token. A `*` or `>` that is only
/// part of a token (`foo*`, `a>b`) is an ordinary character.
pub fn is_valid_subject<B: AsRef<[u8]> + ?Sized>(s: &B) -> bool {
    let s = s.as_ref();
    if s.is_empty() {
        return false;
    }
    let mut saw_fwc = false;
    for t in s.split(|&b| b == TSEP) {
        if t.is_empty() || saw_fwc {
            return false;
        }
        if t.len() == 1 && t[0] == FWC {
            saw_fwc = true;
            continue;
        }
        if t.iter().any(|&b| is_ws(b)) {
            return false;
        }
    }
    true
}

/// Like [`is_valid_subject`], but also rejects NUL bytes and invalid UTF-8
/// (nats-server's `isValidSubject(subject, checkRunes=true)`).
pub fn is_valid_subject_strict<B: AsRef<[u8]> + ?Sized>(s: &B) -> bool {
    let s = s.as_ref();
    is_valid_subject(s) && memchr::memchr(0, s).is_none() && std::str::from_utf8(s).is_ok()
}

/// Returns true if `s` has no empty token and no `*`/`>` wildcard token, as
/// nats-server's `IsValidLiteralSubject` (used for PUB in pedantic mode).
///
/// Like nats-server, this does not look for whitespace: the protocol parser
/// already split the line on it. Use [`is_valid_publish_subject`] to check both.
pub fn is_valid_literal_subject<B: AsRef<[u8]> + ?Sized>(s: &B) -> bool {
    s.as_ref()
        .split(|&b| b == TSEP)
        .all(|t| !t.is_empty() && !(t.len() == 1 && (t[0] == PWC || t[0] == FWC)))
}

/// Returns true if `s` is a valid subject without wildcards, as nats-server's `IsValidPublishSubject`.
pub fn is_valid_publish_subject<B: AsRef<[u8]> + ?Sized>(s: &B) -> bool {
    is_valid_subject(s) && subject_is_literal(s)
}

/// Returns true if `q` is a usable queue group name: non-empty and without whitespace.
///
/// nats-server takes whatever token the protocol parser produced (which is
/// never empty and never holds whitespace); this checks the same for names
/// that reach us by other paths (config, JetStream API).
pub fn is_valid_queue_name<B: AsRef<[u8]> + ?Sized>(q: &B) -> bool {
    let q = q.as_ref();
    !q.is_empty() && !q.iter().any(|&b| is_ws(b))
}

/// Returns true if some token of `s` is exactly `*` or `>` (no validity check), as nats-server's `subjectHasWildcard`.
#[inline]
pub fn subject_has_wildcard<B: AsRef<[u8]> + ?Sized>(s: &B) -> bool {
    let s = s.as_ref();
    let n = s.len();
    for (i, &c) in s.iter().enumerate() {
        if (c == PWC || c == FWC)
            && (i == 0 || s[i - 1] == TSEP)
            && (i + 1 == n || s[i + 1] == TSEP)
        {
            return true;
        }
    }
    false
}

/// Returns true if no token of `s` is a wildcard (no validity check), as nats-server's `subjectIsLiteral`.
#[inline]
pub fn subject_is_literal<B: AsRef<[u8]> + ?Sized>(s: &B) -> bool {
    !subject_has_wildcard(s)
}

/// Returns true if the literal subject `literal` is matched by `pattern`, which may hold wildcards.
///
/// `*` matches exactly one token, `>` (as the last token) matches one or
/// more tokens. Wildcard characters in `literal` are compared as plain
/// characters. Neither argument is validated; an empty token only matches an
/// empty token or `*`, as in nats-server's `matchLiteral`.
pub fn matches<L, P>(literal: &L, pattern: &P) -> bool
where
    L: AsRef<[u8]> + ?Sized,
    P: AsRef<[u8]> + ?Sized,
{
    let lit = literal.as_ref();
    let pat = pattern.as_ref();
    let mut lt = ByteTokens::new(lit);
    let mut pt = ByteTokens::new(pat);
    loop {
        match (pt.next(), lt.next()) {
            (None, None) => return true,
            (None, Some(_)) => return false,
            (Some(p), l) => {
                let last_p = pt.is_done();
                if p.len() == 1 && p[0] == FWC && last_p {
                    return l.is_some();
                }
                let Some(l) = l else { return false };
                if p.len() == 1 && p[0] == PWC {
                    continue;
                }
                if p != l {
                    return false;
                }
            }
        }
    }
}

/// Returns the number of tokens in `s` (0 for an empty subject).
#[inline]
pub fn num_tokens<B: AsRef<[u8]> + ?Sized>(s: &B) -> usize {
    let s = s.as_ref();
    if s.is_empty() {
        0
    } else {
        memchr::memchr_iter(TSEP, s).count() + 1
    }
}

/// Returns an iterator over the `.`-separated tokens of `s` (an empty `s` yields one empty token).
#[inline]
pub fn tokenize(s: &str) -> Tokens<'_> {
    Tokens {
        inner: ByteTokens::new(s.as_bytes()),
        s,
    }
}

/// Iterator over the tokens of a subject, from [`tokenize`].
#[derive(Debug, Clone)]
pub struct Tokens<'a> {
    inner: ByteTokens<'a>,
    s: &'a str,
}

impl<'a> Iterator for Tokens<'a> {
    type Item = &'a str;

    #[inline]
    fn next(&mut self) -> Option<&'a str> {
        let start = self.inner.pos;
        let t = self.inner.next()?;
        // Splitting on an ASCII byte always lands on char boundaries.
        Some(&self.s[start..start + t.len()])
    }
}

/// Iterator over the tokens of a byte subject.
#[derive(Debug, Clone)]
pub struct ByteTokens<'a> {
    s: &'a [u8],
    pos: usize,
    done: bool,
}

impl<'a> ByteTokens<'a> {
    /// Creates a token iterator over `s` (an empty `s` yields one empty token).
    #[inline]
    pub fn new(s: &'a [u8]) -> Self {
        ByteTokens {
            s,
            pos: 0,
            done: false,
        }
    }

    /// Returns true once the last token has been returned.
    #[inline]
    pub fn is_done(&self) -> bool {
        self.done
    }
}

impl<'a> Iterator for ByteTokens<'a> {
    type Item = &'a [u8];

    #[inline]
    fn next(&mut self) -> Option<&'a [u8]> {
        if self.done {
            return None;
        }
        let rest = &self.s[self.pos..];
        match memchr::memchr(TSEP, rest) {
            Some(i) => {
                self.pos += i + 1;
                Some(&rest[..i])
            }
            None => {
                self.done = true;
                self.pos = self.s.len();
                Some(rest)
            }
        }
    }
}

/// Whether every subject matched by `sub` is matched by the pattern `export`
/// (nats-server's `isSubsetMatch`).
pub fn is_subset_match(sub: &str, export: &str) -> bool {
    let s: Vec<&str> = sub.split('.').collect();
    let x: Vec<&str> = export.split('.').collect();
    for (i, xt) in x.iter().enumerate() {
        if *xt == ">" {
            return i < s.len();
        }
        let Some(st) = s.get(i) else { return false };
        if *st == ">" {
            return false;
        }
        if *xt == "*" {
            continue;
        }
        if *st == "*" || st != xt {
            return false;
        }
    }
    s.len() == x.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subset_match() {
        assert!(is_subset_match("foo.bar", "foo.>"));
        assert!(is_subset_match("foo.*", "foo.>"));
        assert!(is_subset_match("foo.*", "foo.*"));
        assert!(!is_subset_match("foo.*", "foo.bar"));
        assert!(!is_subset_match("foo", "foo.>"));
        assert!(!is_subset_match("foo.>", "foo.*"));
        assert!(is_subset_match("foo.bar", "foo.bar"));
        assert!(!is_subset_match("foo.bar.baz", "foo.*"));
    }

    #[test]
    fn valid_subjects() {
        for s in [
            "foo",
            "foo.bar",
            "*",
            ">",
            "foo.*",
            "foo.>",
            "*.*",
            "*.>",
            "foo.*.bar",
            "foo*",
            "foo>",
            "a>b.c",
            "foo.bar*",
            "$SYS.>",
            "_INBOX.abc",
        ] {
            assert!(is_valid_subject(s), "{s:?} should be valid");
        }
        for s in [
            "",
            ".",
            "..",
            "foo..bar",
            ".foo",
            "foo.",
            " foo",
            "foo ",
            "foo bar",
            "foo\tbar",
            "\t",
            "foo.\tbar",
            "foo.>.bar",
            ">.foo",
            ">.>",
            "foo.\n",
            "foo\r",
            "a\x0cb",
            "foo. .bar",
            " ",
        ] {
            assert!(!is_valid_subject(s), "{s:?} should be invalid");
        }
        assert!(is_valid_subject(b"foo.bar".as_slice()));
        assert!(!is_valid_subject_strict("foo\0bar"));
        assert!(!is_valid_subject_strict(b"foo.\xff".as_slice()));
        assert!(is_valid_subject_strict("foo.bär"));
    }

    #[test]
    fn literal_subjects() {
        for s in ["foo", "foo.bar", "foo*", "foo>", "a.b*c.>d"] {
            assert!(is_valid_literal_subject(s), "{s:?}");
            assert!(is_valid_publish_subject(s), "{s:?}");
        }
        for s in [
            "",
            "*",
            ">",
            "foo.*",
            "foo.>",
            "*.foo",
            "foo..bar",
            ".foo",
            "foo.",
            "foo.>.bar",
        ] {
            assert!(!is_valid_literal_subject(s), "{s:?}");
            assert!(!is_valid_publish_subject(s), "{s:?}");
        }
        // Literal check does not look at whitespace (as nats-server), publish check does.
        assert!(is_valid_literal_subject("foo bar"));
        assert!(!is_valid_publish_subject("foo bar"));
    }

    #[test]
    fn wildcard_detection() {
        for s in ["*", ">", "foo.*", "foo.>", "*.foo", "a.*.b", "foo.>.bar"] {
            assert!(subject_has_wildcard(s), "{s:?}");
            assert!(!subject_is_literal(s), "{s:?}");
        }
        for s in ["", "foo", "foo*", "*foo", "foo.>bar", "a.b>", "**", ">>"] {
            assert!(!subject_has_wildcard(s), "{s:?}");
        }
    }

    #[test]
    fn queue_names() {
        assert!(is_valid_queue_name("workers"));
        assert!(is_valid_queue_name("q.1"));
        assert!(!is_valid_queue_name(""));
        assert!(!is_valid_queue_name("a b"));
        assert!(!is_valid_queue_name("a\tb"));
    }

    #[test]
    fn matching() {
        let yes = [
            ("foo", "foo"),
            ("foo.bar", "foo.*"),
            ("foo.bar", "*.bar"),
            ("foo.bar", "*.*"),
            ("foo.bar.baz", "foo.>"),
            ("foo.bar", "foo.>"),
            ("foo", ">"),
            ("foo.bar.baz", ">"),
            ("foo.bar.baz", "*.>"),
            ("foo.bar.baz", "foo.*.baz"),
            ("foo.bar.baz", "*.*.*"),
            ("foo.bar.baz", "foo.*.>"),
        ];
        for (l, p) in yes {
            assert!(matches(l, p), "{l:?} ~ {p:?}");
        }
        let no = [
            ("foo.bar.baz", "foo.*"),
            ("foo", "foo.*"),
            ("foo", "foo.>"),
            ("foo", "*.*"),
            ("foo.bar", "*"),
            ("foo.bar", "foo"),
            ("foo", "foo.bar"),
            ("foo.baz", "foo.bar"),
            ("foo.bar", "foo.*.>"),
            ("foo.bar", "bar.>"),
            ("foo.bar", "foo*"),
            ("foobar", "foo.*"),
        ];
        for (l, p) in no {
            assert!(!matches(l, p), "{l:?} !~ {p:?}");
        }
        // `>` not last is an ordinary token, `foo*` is an ordinary token.
        assert!(matches("foo.>.bar", "foo.>.bar"));
        assert!(!matches("foo.x.bar", "foo.>.bar"));
        assert!(matches("foo*", "foo*"));
    }

    #[test]
    fn tokens() {
        assert_eq!(
            tokenize("foo.bar.baz").collect::<Vec<_>>(),
            ["foo", "bar", "baz"]
        );
        assert_eq!(tokenize("foo").collect::<Vec<_>>(), ["foo"]);
        assert_eq!(tokenize("").collect::<Vec<_>>(), [""]);
        assert_eq!(tokenize("a..b.").collect::<Vec<_>>(), ["a", "", "b", ""]);
        assert_eq!(tokenize("ä.ö").collect::<Vec<_>>(), ["ä", "ö"]);
        assert_eq!(num_tokens(""), 0);
        assert_eq!(num_tokens("a"), 1);
        assert_eq!(num_tokens("a.b.c"), 3);
    }
}
