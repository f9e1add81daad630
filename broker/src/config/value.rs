//! The parsed config tree: values with their source positions, and a printer
//! back to nats.conf syntax.

use std::fmt;
use std::sync::Arc;

/// Where something came from: file, 1-based line and column.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Pos {
    /// File name as given (empty when parsing a string).
    pub file: Arc<str>,
    /// 1-based line.
    pub line: u32,
    /// 1-based column, in characters.
    pub col: u32,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.file.is_empty() {
            write!(f, "{}:{}", self.line, self.col)
        } else {
            write!(f, "{}:{}:{}", self.file, self.line, self.col)
        }
    }
}

/// A config value and where it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Value {
    /// The value itself.
    pub kind: Kind,
    /// Position of the value (for `$VAR` copies: of the reference).
    pub pos: Pos,
}

/// The kinds of config values.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// true/false/yes/no/on/off.
    Bool(bool),
    /// An integer, size suffixes already applied.
    Int(i64),
    /// A float.
    Float(f64),
    /// A string (also durations, host:port, datetimes).
    String(String),
    /// `[ ... ]`.
    Array(Vec<Value>),
    /// `{ ... }` (also the top level).
    Map(Map),
}

/// One `key: value` in a map.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The key as written (case kept).
    pub key: String,
    /// Position of the key.
    pub key_pos: Pos,
    /// The value.
    pub value: Value,
}

/// An ordered map; a key defined twice keeps only its last definition.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Map {
    /// Entries in definition order.
    pub entries: Vec<Entry>,
}

impl Map {
    /// Exact (case-sensitive) lookup.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.entries.iter().find(|e| e.key == key).map(|e| &e.value)
    }

    /// Insert, replacing (and moving to the end) an earlier entry with the same key.
    pub fn insert(&mut self, key: String, key_pos: Pos, value: Value) {
        self.entries.retain(|e| e.key != key);
        self.entries.push(Entry {
            key,
            key_pos,
            value,
        });
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl Kind {
    /// Type name used in error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Kind::Bool(_) => "boolean",
            Kind::Int(_) => "integer",
            Kind::Float(_) => "float",
            Kind::String(_) => "string",
            Kind::Array(_) => "array",
            Kind::Map(_) => "map",
        }
    }
}

fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn write_key(out: &mut String, k: &str) {
    if !k.contains('"') {
        out.push('"');
        out.push_str(k);
        out.push('"');
    } else {
        out.push('\'');
        out.push_str(k);
        out.push('\'');
    }
}

fn write_float(out: &mut String, f: f64) {
    let s = format!("{f}");
    out.push_str(&s);
    if !s.contains('.') {
        out.push_str(".0");
    }
}

fn indent(out: &mut String, depth: usize) {
    for _ in 0..depth {
        out.push_str("  ");
    }
}

fn write_value(out: &mut String, v: &Kind, depth: usize) {
    match v {
        Kind::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Kind::Int(i) => out.push_str(&i.to_string()),
        Kind::Float(f) => write_float(out, *f),
        Kind::String(s) => write_string(out, s),
        Kind::Array(a) => {
            // One element per line: nats-server mis-lexes an integer directly followed by `]`.
            out.push_str("[\n");
            for e in a {
                indent(out, depth + 1);
                write_value(out, &e.kind, depth + 1);
                out.push('\n');
            }
            indent(out, depth);
            out.push(']');
        }
        Kind::Map(m) => {
            out.push_str("{\n");
            write_entries(out, m, depth + 1);
            indent(out, depth);
            out.push('}');
        }
    }
}

fn write_entries(out: &mut String, m: &Map, depth: usize) {
    for e in &m.entries {
        indent(out, depth);
        write_key(out, &e.key);
        out.push_str(": ");
        write_value(out, &e.value.kind, depth);
        out.push('\n');
    }
}

/// Print a top-level map in nats.conf syntax (keys quoted, strings escaped).
///
/// Keys containing both `"` and `'` cannot be written in this format.
pub fn to_conf_string(m: &Map) -> String {
    let mut out = String::new();
    write_entries(&mut out, m, 0);
    out
}
