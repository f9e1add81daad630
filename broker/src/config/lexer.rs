//! Lexer for nats-server's config format: a port of the state machine in
//! nats-server's `conf/lex.go`, so that odd inputs tokenize the same way.

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
            St::Top => {
                let r = self.next();
                if is_space(r) {
                    self.ignore();
                    return St::Top;
                }
                match r {
                    '{' => {
                        self.stack.push(St::Top);
                        self.ignore();
                        return St::BlockStart;
                    }
                    '#' => {
                        self.stack.push(St::Top);
                        return St::CommentStart;
                    }
                    '/' => {
                        if self.slash_comment() {
                            self.stack.push(St::Top);
                            return St::CommentStart;
                        }
                        return self.unexpected_eof();
                    }
                    EOF => return self.unexpected_eof(),
                    _ => {}
                }
                self.backup();
                self.stack.push(St::TopValueEnd);
                St::KeyStart
            }
            St::TopValueEnd => {
                let r = self.next();
                match r {
                    '#' => {
                        self.stack.push(St::Top);
                        St::CommentStart
                    }
                    '/' => {
                        if self.slash_comment() {
                            self.stack.push(St::Top);
                            return St::CommentStart;
                        }
                        St::TopValueEnd
                    }
                    c if is_whitespace(c) => St::TopValueEnd,
                    c if is_nl(c) || c == EOF || c == ';' || c == ',' || c == '}' => {
                        self.ignore();
                        St::Top
                    }
                    c => self.errorf(format!(
                        "Expected a top-level value to end with a new line, comment or EOF, but got '{}' instead.",
                        show(c)
                    )),
                }
            }
            St::BlockStart => {
                let r = self.next();
                if is_space(r) {
                    self.ignore();
                    return St::BlockStart;
                }
                match r {
                    '{' => {
                        self.stack.push(St::BlockEnd);
                        self.ignore();
                        return St::BlockStart;
                    }
                    '}' => {
                        self.ignore();
                        return self.pop();
                    }
                    '#' => {
                        self.stack.push(St::BlockStart);
                        return St::CommentStart;
                    }
                    '/' => {
                        if self.slash_comment() {
                            self.stack.push(St::BlockStart);
                            return St::CommentStart;
                        }
                        return self.unexpected_eof();
                    }
                    EOF => return self.unexpected_eof(),
                    _ => {}
                }
                self.backup();
                self.stack.push(St::BlockValueEnd);
                St::KeyStart
            }
            St::BlockValueEnd => {
                let r = self.next();
                match r {
                    '#' => {
                        self.stack.push(St::BlockValueEnd);
                        St::CommentStart
                    }
                    '/' => {
                        if self.slash_comment() {
                            self.stack.push(St::BlockValueEnd);
                            return St::CommentStart;
                        }
                        St::BlockValueEnd
                    }
                    c if is_whitespace(c) => St::BlockValueEnd,
                    c if is_nl(c) || c == ';' || c == ',' => {
                        self.ignore();
                        St::BlockStart
                    }
                    '}' => {
                        self.backup();
                        St::BlockEnd
                    }
                    c => self.errorf(format!(
                        "Expected a block-level value to end with a new line, comment or EOF, but got '{}' instead.",
                        show(c)
                    )),
                }
            }
            St::BlockEnd => {
                let r = self.next();
                match r {
                    '#' => {
                        self.stack.push(St::BlockStart);
                        St::CommentStart
                    }
                    '/' => {
                        if self.slash_comment() {
                            self.stack.push(St::BlockStart);
                            return St::CommentStart;
                        }
                        St::BlockEnd
                    }
                    c if is_nl(c) || is_whitespace(c) => St::BlockEnd,
                    ';' | ',' => {
                        self.ignore();
                        St::BlockStart
                    }
                    '}' => {
                        self.ignore();
                        self.pop()
                    }
                    c => self.errorf(format!(
                        "Expected a block-level to end with a '}}', but got '{}' instead.",
                        show(c)
                    )),
                }
            }
            St::KeyStart => {
                let r = self.peek();
                if is_key_sep(r) {
                    return self.errorf(format!("Unexpected key separator '{r}'"));
                }
                if is_space(r) {
                    self.next();
                    self.ignore();
                    return St::KeyStart;
                }
                if r == '"' {
                    self.next();
                    self.ignore();
                    return St::DubQuotedKey;
                }
                if r == '\'' {
                    self.next();
                    self.ignore();
                    return St::QuotedKey;
                }
                self.ignore();
                self.next();
                St::Key
            }
            St::DubQuotedKey | St::QuotedKey => {
                let q = if st == St::DubQuotedKey { '"' } else { '\'' };
                let r = self.peek();
                if r == q {
                    self.emit(ItemKind::Key);
                    self.next();
                    self.ignore();
                    return St::KeyEnd;
                } else if r == EOF {
                    return self.unexpected_eof();
                }
                self.next();
                st
            }
            St::Key => {
                let r = self.peek();
                if is_space(r) {
                    return self.key_check_keyword(St::KeyEnd, None);
                } else if is_key_sep(r) || r == EOF {
                    self.emit(ItemKind::Key);
                    return St::KeyEnd;
                }
                self.next();
                St::Key
            }
            St::KeyEnd => {
                let r = self.next();
                if is_space(r) {
                    self.ignore();
                    return St::KeyEnd;
                }
                if is_key_sep(r) {
                    self.ignore();
                    return St::Value;
                }
                if r == EOF {
                    return self.emit_eof();
                }
                self.backup();
                St::Value
            }
            St::IncludeStart => {
                let r = self.next();
                if is_whitespace(r) {
                    self.ignore();
                    return St::IncludeStart;
                }
                self.backup();
                St::Include
            }
            St::Include => {
                let r = self.next();
                match r {
                    '\'' => {
                        self.ignore();
                        St::IncludeQuotedString
                    }
                    '"' => {
                        self.ignore();
                        St::IncludeDubQuotedString
                    }
                    '[' => self.errorf("Expected include value but found start of an array".into()),
                    '{' => self.errorf("Expected include value but found start of a map".into()),
                    '(' => self.errorf("Expected include value but found start of a block".into()),
                    c if is_digit(c) || c == '-' => {
                        self.errorf("Expected include value but found start of a number".into())
                    }
                    '\\' => self.errorf("Expected include value but found escape sequence".into()),
                    c if is_nl(c) => {
                        self.errorf("Expected include value but found new line".into())
                    }
                    _ => {
                        self.backup();
                        St::IncludeString
                    }
                }
            }
            St::IncludeQuotedString | St::IncludeDubQuotedString => {
                let q = if st == St::IncludeDubQuotedString {
                    '"'
                } else {
                    '\''
                };
                let r = self.next();
                if r == q {
                    self.backup();
                    self.emit(ItemKind::Include);
                    self.next();
                    self.ignore();
                    return self.pop();
                }
                if r == EOF {
                    return self.errorf("Unexpected EOF in quoted include".into());
                }
                st
            }
            St::IncludeString => {
                let r = self.next();
                if is_nl(r) || r == EOF || r == ';' || r == '}' || is_whitespace(r) {
                    self.backup();
                    self.emit(ItemKind::Include);
                    return self.pop();
                }
                if r == '\'' {
                    self.backup();
                    self.emit(ItemKind::Include);
                    self.next();
                    self.ignore();
                    return self.pop();
                }
                St::IncludeString
            }
            St::Value => {
                let r = self.next();
                if is_whitespace(r) {
                    self.ignore();
                    return St::Value;
                }
                match r {
                    '[' => {
                        self.ignore();
                        self.emit(ItemKind::ArrayStart);
                        St::ArrayValue
                    }
                    '{' => {
                        self.ignore();
                        self.emit(ItemKind::MapStart);
                        St::MapKeyStart
                    }
                    '\'' => {
                        self.ignore();
                        St::QuotedString
                    }
                    '"' => {
                        self.ignore();
                        self.string_state = St::DubQuotedString;
                        St::DubQuotedString
                    }
                    '-' => St::NegNumberStart,
                    '(' => {
                        self.ignore();
                        St::Block
                    }
                    c if is_digit(c) => {
                        self.backup();
                        St::NumberStart
                    }
                    '.' => self.errorf("Floats must start with a digit".into()),
                    c if is_nl(c) => self.errorf("Expected value but found new line".into()),
                    _ => {
                        self.backup();
                        self.string_state = St::String;
                        St::String
                    }
                }
            }
            St::ArrayValue => {
                let r = self.next();
                if is_space(r) {
                    self.ignore();
                    return St::ArrayValue;
                }
                match r {
                    '#' => {
                        self.stack.push(St::ArrayValue);
                        St::CommentStart
                    }
                    '/' if self.slash_comment() => {
                        self.stack.push(St::ArrayValue);
                        St::CommentStart
                    }
                    '/' | ',' => self.errorf("Unexpected array value terminator ','.".into()),
                    ']' => St::ArrayEnd,
                    _ => {
                        self.backup();
                        self.stack.push(St::ArrayValueEnd);
                        St::Value
                    }
                }
            }
            St::ArrayValueEnd => {
                let r = self.next();
                match r {
                    c if is_whitespace(c) => {
                        self.ignore();
                        St::ArrayValueEnd
                    }
                    '#' => {
                        self.stack.push(St::ArrayValueEnd);
                        St::CommentStart
                    }
                    '/' if self.slash_comment() => {
                        self.stack.push(St::ArrayValueEnd);
                        St::CommentStart
                    }
                    c if c == '/' || c == ',' || is_nl(c) => {
                        self.ignore();
                        St::ArrayValue
                    }
                    ']' => St::ArrayEnd,
                    c => self.errorf(format!(
                        "Expected an array value terminator \",\" or an array terminator \"]\", but got '{}' instead.",
                        show(c)
                    )),
                }
            }
            St::ArrayEnd => {
                self.ignore();
                self.emit(ItemKind::ArrayEnd);
                self.pop()
            }
            St::MapKeyStart => {
                let r = self.peek();
                if is_key_sep(r) {
                    return self.errorf(format!("Unexpected key separator '{r}'."));
                }
                if r == ']' {
                    return self.errorf(format!("Unexpected array end '{r}' processing map."));
                }
                if is_space(r) {
                    self.next();
                    self.ignore();
                    return St::MapKeyStart;
                }
                match r {
                    '}' => {
                        self.next();
                        self.ignore();
                        return St::MapEnd;
                    }
                    '#' => {
                        self.next();
                        self.stack.push(St::MapKeyStart);
                        return St::CommentStart;
                    }
                    '/' => {
                        self.next();
                        if self.slash_comment() {
                            self.stack.push(St::MapKeyStart);
                            return St::CommentStart;
                        }
                    }
                    '\'' => {
                        self.next();
                        self.ignore();
                        return St::MapQuotedKey;
                    }
                    '"' => {
                        self.next();
                        self.ignore();
                        return St::MapDubQuotedKey;
                    }
                    EOF => return self.errorf("Unexpected EOF processing map.".into()),
                    _ => {}
                }
                self.ignore();
                self.next();
                St::MapKey
            }
            St::MapQuotedKey | St::MapDubQuotedKey => {
                let q = if st == St::MapDubQuotedKey { '"' } else { '\'' };
                let r = self.peek();
                if r == EOF {
                    return self.errorf("Unexpected EOF processing quoted map key.".into());
                }
                if r == q {
                    self.emit(ItemKind::Key);
                    self.next();
                    self.ignore();
                    return St::MapKeyEnd;
                }
                self.next();
                st
            }
            St::MapKey => {
                let r = self.peek();
                if r == EOF {
                    return self.errorf("Unexpected EOF processing map key.".into());
                }
                if is_space(r) {
                    return self.key_check_keyword(St::MapKeyEnd, Some(St::MapValueEnd));
                }
                if is_key_sep(r) {
                    self.emit(ItemKind::Key);
                    return St::MapKeyEnd;
                }
                self.next();
                St::MapKey
            }
            St::MapKeyEnd => {
                let r = self.next();
                if is_space(r) {
                    self.ignore();
                    return St::MapKeyEnd;
                }
                if is_key_sep(r) {
                    self.ignore();
                    return St::MapValue;
                }
                self.backup();
                St::MapValue
            }
            St::MapValue => {
                let r = self.next();
                if is_space(r) {
                    self.ignore();
                    return St::MapValue;
                }
                match r {
                    ',' => self.errorf("Unexpected map value terminator ','.".into()),
                    '}' => {
                        self.ignore();
                        St::MapEnd
                    }
                    _ => {
                        self.backup();
                        self.stack.push(St::MapValueEnd);
                        St::Value
                    }
                }
            }
            St::MapValueEnd => {
                let r = self.next();
                match r {
                    c if is_whitespace(c) => {
                        self.ignore();
                        St::MapValueEnd
                    }
                    '#' => {
                        self.stack.push(St::MapValueEnd);
                        St::CommentStart
                    }
                    '/' if self.slash_comment() => {
                        self.stack.push(St::MapValueEnd);
                        St::CommentStart
                    }
                    c if c == '/' || c == ';' || c == ',' || is_nl(c) => {
                        self.ignore();
                        St::MapKeyStart
                    }
                    '}' => {
                        self.ignore();
                        St::MapEnd
                    }
                    c => self.errorf(format!(
                        "Expected a map value terminator \",\" or a map terminator \"}}\", but got '{}' instead.",
                        show(c)
                    )),
                }
            }
            St::MapEnd => {
                self.ignore();
                self.emit(ItemKind::MapEnd);
                self.pop()
            }
            St::QuotedString => {
                let r = self.next();
                if r == '\'' {
                    self.backup();
                    self.emit(ItemKind::String);
                    self.next();
                    self.ignore();
                    return self.pop();
                }
                if r == EOF {
                    return self.unexpected_eof();
                }
                St::QuotedString
            }
            St::DubQuotedString => {
                let r = self.next();
                match r {
                    '\\' => {
                        self.add_current_string_part(1);
                        St::StringEscape
                    }
                    '"' => {
                        self.backup();
                        self.emit(ItemKind::String);
                        self.next();
                        self.ignore();
                        self.pop()
                    }
                    EOF => self.unexpected_eof(),
                    _ => St::DubQuotedString,
                }
            }
            St::String => {
                let r = self.next();
                if r == '\\' {
                    self.add_current_string_part(1);
                    return St::StringEscape;
                }
                if is_nl(r)
                    || r == EOF
                    || r == ';'
                    || r == ','
                    || r == ']'
                    || r == '}'
                    || is_whitespace(r)
                {
                    self.backup();
                    if self.has_parts {
                        self.emit(ItemKind::String);
                    } else if self.is_bool() {
                        self.emit(ItemKind::Bool);
                    } else if self.start < self.input.len() && self.input[self.start] == '$' {
                        self.start += 1;
                        self.emit(ItemKind::Variable);
                    } else {
                        self.emit(ItemKind::String);
                    }
                    return self.pop();
                }
                if r == '\'' {
                    self.backup();
                    self.emit(ItemKind::String);
                    self.next();
                    self.ignore();
                    return self.pop();
                }
                St::String
            }
            St::Block => {
                let r = self.next();
                if r == ')' {
                    self.backup();
                    self.backup();
                    if self.next() != '\n' {
                        self.next();
                        return St::Block;
                    }
                    self.next();
                    let n = self.next();
                    if n == '\n' || n == EOF {
                        self.backup();
                        self.backup();
                        self.emit(ItemKind::String);
                        self.next();
                        self.ignore();
                        return self.pop();
                    }
                    self.backup();
                } else if r == EOF {
                    return self.errorf("Unexpected EOF processing block.".into());
                }
                St::Block
            }
            St::StringEscape => {
                let r = self.next();
                match r {
                    'x' => St::StringBinary,
                    't' => self.add_string_part(b"\t"),
                    'n' => self.add_string_part(b"\n"),
                    'r' => self.add_string_part(b"\r"),
                    '"' => self.add_string_part(b"\""),
                    '\\' => self.add_string_part(b"\\"),
                    c => self.errorf(format!(
                        "Invalid escape character '{}'. Only the following escape characters are allowed: \\xXX, \\t, \\n, \\r, \\\", \\\\.",
                        show(c)
                    )),
                }
            }
            St::StringBinary => {
                for _ in 0..2 {
                    if is_nl(self.next()) {
                        return self.errorf(
                            "Expected two hexadecimal digits after '\\x', but hit end of line"
                                .into(),
                        );
                    }
                }
                let hex = self.text(self.pos.saturating_sub(2), self.pos);
                match u8::from_str_radix(&hex, 16) {
                    Ok(b) if hex.len() == 2 && hex.chars().all(|c| c.is_ascii_hexdigit()) => {
                        self.add_string_part(&[b]);
                        self.string_state
                    }
                    _ => self.errorf(format!(
                        "Expected two hexadecimal digits after '\\x', but got '{hex}'"
                    )),
                }
            }
            St::NumberStart => {
                let r = self.next();
                if !is_digit(r) {
                    if r == '.' {
                        return self.errorf("Floats must start with a digit, not '.'.".into());
                    }
                    return self.errorf(format!("Expected a digit but got '{}'.", show(r)));
                }
                St::Number
            }
            St::Number => {
                let r = self.next();
                if r == '-' {
                    if self.pos - self.start != 5 {
                        return self.errorf("All ISO8601 dates must be in full Zulu form.".into());
                    }
                    return St::DateAfterYear;
                }
                if is_digit(r) {
                    return St::Number;
                }
                if r == '.' {
                    return St::FloatStart;
                }
                if is_number_suffix(r) {
                    return St::ConvenientNumber;
                }
                if !(is_nl(r) || r == EOF || r == '}' || r == ';' || r == ',' || is_whitespace(r)) {
                    // Not a number after all: an unquoted string starting with digits.
                    self.string_state = St::String;
                    return St::String;
                }
                self.backup();
                self.emit_integer()
            }
            St::ConvenientNumber => {
                let r = self.next();
                if matches!(r, 'b' | 'B' | 'i' | 'I') {
                    return St::ConvenientNumber;
                }
                self.backup();
                if is_nl(r) || r == EOF || r == '}' || r == ';' || r == ',' || is_whitespace(r) {
                    return self.emit_integer();
                }
                self.string_state = St::String;
                St::String
            }
            St::DateAfterYear => {
                const FORMAT: &[char] = &[
                    '0', '0', '-', '0', '0', 'T', '0', '0', ':', '0', '0', ':', '0', '0', 'Z',
                ];
                for f in FORMAT {
                    let r = self.next();
                    if *f == '0' {
                        if !is_digit(r) {
                            return self.errorf(format!(
                                "Expected digit in ISO8601 datetime, but found '{}' instead.",
                                show(r)
                            ));
                        }
                    } else if *f != r {
                        return self.errorf(format!(
                            "Expected '{f}' in ISO8601 datetime, but found '{}' instead.",
                            show(r)
                        ));
                    }
                }
                self.emit(ItemKind::Datetime);
                self.pop()
            }
            St::NegNumberStart => {
                let r = self.next();
                if !is_digit(r) {
                    if r == '.' {
                        return self.errorf("Floats must start with a digit, not '.'.".into());
                    }
                    return self.errorf(format!("Expected a digit but got '{}'.", show(r)));
                }
                St::NegNumber
            }
            St::NegNumber => {
                let r = self.next();
                if is_digit(r) {
                    return St::NegNumber;
                }
                if r == '.' {
                    return St::FloatStart;
                }
                if is_number_suffix(r) {
                    return St::ConvenientNumber;
                }
                self.backup();
                self.emit_integer()
            }
            St::FloatStart => {
                let r = self.next();
                if !is_digit(r) {
                    return self.errorf(format!(
                        "Floats must have a digit after the '.', but got '{}' instead.",
                        show(r)
                    ));
                }
                St::Float
            }
            St::Float => {
                let r = self.next();
                if is_digit(r) {
                    return St::Float;
                }
                if r == '.' {
                    return St::IpAddr;
                }
                self.backup();
                self.emit(ItemKind::Float);
                self.pop()
            }
            St::IpAddr => {
                let r = self.next();
                if is_digit(r) || r == '.' || r == ':' || r == '-' {
                    return St::IpAddr;
                }
                self.backup();
                self.emit(ItemKind::String);
                self.pop()
            }
            St::CommentStart => {
                self.ignore();
                St::Comment
            }
            St::Comment => {
                let r = self.peek();
                if is_nl(r) || r == EOF {
                    self.ignore();
                    return self.pop();
                }
                self.next();
                St::Comment
            }
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
