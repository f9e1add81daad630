//! Lexer for nats-server's config format: a port of the state machine in
//! nats-server's `conf/lex.go`, so that odd inputs tokenize the same way.

mod keys;
mod values;

use std::collections::VecDeque;

/// Kind of a lexed item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemKind {
    /// Lexing failed; the text is the message.
    Error,
    /// End of input.
    Eof,
    /// A map key.
    Key,
    /// A string value.
    String,
    /// An unquoted true/false/yes/no/on/off.
    Bool,
    /// An integer, maybe with a size suffix.
    Integer,
    /// A float.
    Float,
    /// An ISO8601 Zulu datetime.
    Datetime,
    /// `[`.
    ArrayStart,
    /// `]`.
    ArrayEnd,
    /// `{` as a value.
    MapStart,
    /// `}` closing a map value.
    MapEnd,
    /// `$name` (text without the `$`).
    Variable,
    /// `include path` (text is the path).
    Include,
}

/// One token with its 1-based line and column.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// What this is.
    pub kind: ItemKind,
    /// Its text (unescaped for strings).
    pub text: String,
    /// 1-based line.
    pub line: u32,
    /// 1-based column (in characters).
    pub col: u32,
}

const EOF: char = '\0';

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum St {
    Top,
    TopValueEnd,
    BlockStart,
    BlockValueEnd,
    BlockEnd,
    KeyStart,
    DubQuotedKey,
    QuotedKey,
    Key,
    KeyEnd,
    IncludeStart,
    Include,
    IncludeQuotedString,
    IncludeDubQuotedString,
    IncludeString,
    Value,
    ArrayValue,
    ArrayValueEnd,
    ArrayEnd,
    MapKeyStart,
    MapQuotedKey,
    MapDubQuotedKey,
    MapKey,
    MapKeyEnd,
    MapValue,
    MapValueEnd,
    MapEnd,
    QuotedString,
    DubQuotedString,
    String,
    Block,
    StringEscape,
    StringBinary,
    NumberStart,
    Number,
    ConvenientNumber,
    DateAfterYear,
    NegNumberStart,
    NegNumber,
    FloatStart,
    Float,
    IpAddr,
    CommentStart,
    Comment,
    /// Lexing stopped (after EOF or an error).
    Done,
}

/// The lexer; call [`Lexer::next_item`] until it yields `Eof` or `Error`.
pub struct Lexer {
    input: Vec<char>,
    line_starts: Vec<usize>,
    start: usize,
    /// Start of the current item, for its position (not moved by escapes).
    item_start: usize,
    pos: usize,
    width: usize,
    state: St,
    stack: Vec<St>,
    string_parts: Vec<u8>,
    has_parts: bool,
    string_state: St,
    items: VecDeque<Item>,
}

fn is_whitespace(c: char) -> bool {
    c == ' ' || c == '\t'
}

fn is_nl(c: char) -> bool {
    c == '\n' || c == '\r'
}

fn is_space(c: char) -> bool {
    c != EOF && c.is_whitespace()
}

fn is_key_sep(c: char) -> bool {
    c == '=' || c == ':'
}

fn is_number_suffix(c: char) -> bool {
    matches!(c.to_ascii_lowercase(), 'k' | 'm' | 'g' | 't' | 'p' | 'e')
}

fn is_digit(c: char) -> bool {
    c.is_ascii_digit()
}

fn show(c: char) -> String {
    match c {
        '\n' => "\\n".into(),
        EOF => "EOF".into(),
        c => c.to_string(),
    }
}

impl Lexer {
    /// A lexer over `input`.
    pub fn new(input: &str) -> Lexer {
        let input: Vec<char> = input.chars().collect();
        let mut line_starts = vec![0];
        for (i, c) in input.iter().enumerate() {
            if *c == '\n' {
                line_starts.push(i + 1);
            }
        }
        Lexer {
            input,
            line_starts,
            start: 0,
            item_start: 0,
            pos: 0,
            width: 0,
            state: St::Top,
            stack: Vec::new(),
            string_parts: Vec::new(),
            has_parts: false,
            string_state: St::String,
            items: VecDeque::new(),
        }
    }

    /// 1-based (line, column) of a char offset.
    fn line_col(&self, off: usize) -> (u32, u32) {
        let idx = match self.line_starts.binary_search(&off) {
            Ok(i) => i,
            Err(i) => i - 1,
        };
        ((idx + 1) as u32, (off - self.line_starts[idx] + 1) as u32)
    }

    /// The next item; after `Eof` or `Error` it keeps returning `Eof`.
    pub fn next_item(&mut self) -> Item {
        loop {
            if let Some(it) = self.items.pop_front() {
                return it;
            }
            if self.state == St::Done {
                let (line, col) = self.line_col(self.pos);
                return Item {
                    kind: ItemKind::Eof,
                    text: String::new(),
                    line,
                    col,
                };
            }
            self.state = self.step(self.state);
        }
    }

    fn next(&mut self) -> char {
        if self.pos >= self.input.len() {
            self.width = 0;
            return EOF;
        }
        let c = self.input[self.pos];
        self.width = 1;
        self.pos += 1;
        c
    }

    fn backup(&mut self) {
        self.pos -= self.width;
    }

    fn peek(&mut self) -> char {
        let c = self.next();
        self.backup();
        c
    }

    fn ignore(&mut self) {
        self.start = self.pos;
        self.item_start = self.pos;
    }

    fn text(&self, from: usize, to: usize) -> String {
        self.input[from..to].iter().collect()
    }

    fn emit(&mut self, kind: ItemKind) {
        let mut text = String::new();
        if self.has_parts {
            text.push_str(&String::from_utf8_lossy(&self.string_parts));
            self.string_parts.clear();
            self.has_parts = false;
        }
        text.push_str(&self.text(self.start, self.pos));
        let (line, col) = self.line_col(self.item_start);
        self.items.push_back(Item {
            kind,
            text,
            line,
            col,
        });
        self.start = self.pos;
        self.item_start = self.pos;
    }

    fn add_current_string_part(&mut self, offset: usize) {
        let s = self.text(self.start, self.pos - offset);
        self.string_parts.extend_from_slice(s.as_bytes());
        self.has_parts = true;
        self.start = self.pos;
    }

    fn add_string_part(&mut self, bytes: &[u8]) -> St {
        self.string_parts.extend_from_slice(bytes);
        self.has_parts = true;
        self.start = self.pos;
        self.string_state
    }

    fn errorf(&mut self, msg: String) -> St {
        // Point at the offending (last read) character.
        let (line, col) = self.line_col(self.pos.saturating_sub(self.width));
        self.items.push_back(Item {
            kind: ItemKind::Error,
            text: msg,
            line,
            col,
        });
        St::Done
    }

    fn pop(&mut self) -> St {
        match self.stack.pop() {
            Some(s) => s,
            None => self.errorf("BUG in lexer: no states to pop.".into()),
        }
    }

    fn emit_eof(&mut self) -> St {
        self.emit(ItemKind::Eof);
        St::Done
    }

    fn unexpected_eof(&mut self) -> St {
        if self.pos > self.start {
            return self.errorf("Unexpected EOF.".into());
        }
        self.emit_eof()
    }

    /// `//` after a `/` was read: true (and consumed) if it is a comment.
    fn slash_comment(&mut self) -> bool {
        let rn = self.next();
        if rn == '/' {
            return true;
        }
        self.backup();
        false
    }

    fn is_bool(&self) -> bool {
        let s = self.text(self.start, self.pos).to_lowercase();
        matches!(s.as_str(), "true" | "false" | "on" | "off" | "yes" | "no")
    }

    fn key_check_keyword(&mut self, fall_through: St, push: Option<St>) -> St {
        if self.text(self.start, self.pos).to_lowercase() == "include" {
            self.ignore();
            if let Some(p) = push {
                self.stack.push(p);
            }
            return St::IncludeStart;
        }
        self.emit(ItemKind::Key);
        fall_through
    }

    fn check_integer_overflow(&mut self) -> bool {
        let val = self.text(self.start, self.pos);
        let num = val.trim_end_matches(|c: char| !(c.is_ascii_digit() || c == '-'));
        if !num.is_empty()
            && num.parse::<i64>().is_err()
            && num
                .trim_start_matches('-')
                .chars()
                .all(|c| c.is_ascii_digit())
        {
            self.errorf(format!("Value '{val}' is outside of the integer range"));
            return false;
        }
        true
    }

    fn emit_integer(&mut self) -> St {
        if !self.check_integer_overflow() {
            return St::Done;
        }
        self.emit(ItemKind::Integer);
        self.pop()
    }

    fn step(&mut self, st: St) -> St {
        match st {
            St::Done => St::Done,
            St::Top => self.lex_top(),
            St::TopValueEnd => self.lex_top_value_end(),
            St::BlockStart => self.lex_block_start(),
            St::BlockValueEnd => self.lex_block_value_end(),
            St::BlockEnd => self.lex_block_end(),
            St::KeyStart => self.lex_key_start(),
            St::DubQuotedKey | St::QuotedKey => self.lex_quoted_key(st),
            St::Key => self.lex_key(),
            St::KeyEnd => self.lex_key_end(),
            St::IncludeStart => self.lex_include_start(),
            St::Include => self.lex_include(),
            St::IncludeQuotedString | St::IncludeDubQuotedString => {
                self.lex_include_quoted_string(st)
            }
            St::IncludeString => self.lex_include_string(),
            St::Value => self.lex_value(),
            St::ArrayValue => self.lex_array_value(),
            St::ArrayValueEnd => self.lex_array_value_end(),
            St::ArrayEnd => self.lex_array_end(),
            St::MapKeyStart => self.lex_map_key_start(),
            St::MapQuotedKey | St::MapDubQuotedKey => self.lex_map_quoted_key(st),
            St::MapKey => self.lex_map_key(),
            St::MapKeyEnd => self.lex_map_key_end(),
            St::MapValue => self.lex_map_value(),
            St::MapValueEnd => self.lex_map_value_end(),
            St::MapEnd => self.lex_map_end(),
            St::QuotedString => self.lex_quoted_string(),
            St::DubQuotedString => self.lex_dub_quoted_string(),
            St::String => self.lex_string(),
            St::Block => self.lex_block(),
            St::StringEscape => self.lex_string_escape(),
            St::StringBinary => self.lex_string_binary(),
            St::NumberStart => self.lex_number_start(),
            St::Number => self.lex_number(),
            St::ConvenientNumber => self.lex_convenient_number(),
            St::DateAfterYear => self.lex_date_after_year(),
            St::NegNumberStart => self.lex_neg_number_start(),
            St::NegNumber => self.lex_neg_number(),
            St::FloatStart => self.lex_float_start(),
            St::Float => self.lex_float(),
            St::IpAddr => self.lex_ip_addr(),
            St::CommentStart => self.lex_comment_start(),
            St::Comment => self.lex_comment(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(s: &str) -> Vec<(ItemKind, String)> {
        let mut lx = Lexer::new(s);
        let mut out = Vec::new();
        loop {
            let it = lx.next_item();
            let stop = matches!(it.kind, ItemKind::Eof | ItemKind::Error);
            out.push((it.kind, it.text));
            if stop {
                return out;
            }
        }
    }

    #[test]
    fn simple_key_values() {
        use ItemKind::*;
        assert_eq!(
            kinds("foo = 1\nbar: \"x\"\nbaz yes"),
            vec![
                (Key, "foo".into()),
                (Integer, "1".into()),
                (Key, "bar".into()),
                (String, "x".into()),
                (Key, "baz".into()),
                (Bool, "yes".into()),
                (Eof, "".into()),
            ]
        );
    }

    #[test]
    fn numbers_strings_and_ips() {
        use ItemKind::*;
        assert_eq!(kinds("a: 1k")[1], (Integer, "1k".into()));
        assert_eq!(kinds("a: 1KiB")[1], (Integer, "1KiB".into()));
        assert_eq!(kinds("a: 2s")[1], (String, "2s".into()));
        assert_eq!(kinds("a: 500ms")[1], (String, "500ms".into()));
        assert_eq!(kinds("a: 1e5")[1], (String, "1e5".into()));
        assert_eq!(kinds("a: 1.5")[1], (Float, "1.5".into()));
        assert_eq!(kinds("a: 0.0.0.0:4222")[1], (String, "0.0.0.0:4222".into()));
        assert_eq!(kinds("a: -12")[1], (Integer, "-12".into()));
        assert_eq!(kinds("a: $FOO")[1], (Variable, "FOO".into()));
    }

    #[test]
    fn positions() {
        let mut lx = Lexer::new("\n  foo: bar");
        let k = lx.next_item();
        assert_eq!((k.line, k.col), (2, 3));
        let v = lx.next_item();
        assert_eq!((v.line, v.col), (2, 8));
    }
}
