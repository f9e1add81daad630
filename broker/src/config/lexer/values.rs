//! The states that read values: arrays, strings and their escapes, numbers, dates, IP addresses
//! and comments (nats-server's `lexValue`, `lexArray…`, `lexString…`, `lexNumber…`, `lexComment…`).

use super::{
    is_digit, is_nl, is_number_suffix, is_space, is_whitespace, show, ItemKind, Lexer, St, EOF,
};

impl Lexer {
    /// nats-server's `lexValue`.
    pub(super) fn lex_value(&mut self) -> St {
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

    /// nats-server's `lexArrayValue`.
    pub(super) fn lex_array_value(&mut self) -> St {
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

    /// nats-server's `lexArrayValueEnd`.
    pub(super) fn lex_array_value_end(&mut self) -> St {
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

    /// nats-server's `lexArrayEnd`.
    pub(super) fn lex_array_end(&mut self) -> St {
        self.ignore();
        self.emit(ItemKind::ArrayEnd);
        self.pop()
    }

    /// nats-server's `lexQuotedString`.
    pub(super) fn lex_quoted_string(&mut self) -> St {
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

    /// nats-server's `lexDubQuotedString`.
    pub(super) fn lex_dub_quoted_string(&mut self) -> St {
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

    /// nats-server's `lexString`.
    pub(super) fn lex_string(&mut self) -> St {
        let r = self.next();
        if r == '\\' {
            self.add_current_string_part(1);
            return St::StringEscape;
        }
        if is_nl(r) || r == EOF || r == ';' || r == ',' || r == ']' || r == '}' || is_whitespace(r)
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

    /// nats-server's `lexBlock`.
    pub(super) fn lex_block(&mut self) -> St {
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

    /// nats-server's `lexStringEscape`.
    pub(super) fn lex_string_escape(&mut self) -> St {
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

    /// nats-server's `lexStringBinary`.
    pub(super) fn lex_string_binary(&mut self) -> St {
        for _ in 0..2 {
            if is_nl(self.next()) {
                return self.errorf(
                    "Expected two hexadecimal digits after '\\x', but hit end of line".into(),
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

    /// nats-server's `lexNumberStart`.
    pub(super) fn lex_number_start(&mut self) -> St {
        self.first_digit(St::Number)
    }

    /// The first character of a number must be a digit; then `then`.
    fn first_digit(&mut self, then: St) -> St {
        let r = self.next();
        if !is_digit(r) {
            if r == '.' {
                return self.errorf("Floats must start with a digit, not '.'.".into());
            }
            return self.errorf(format!("Expected a digit but got '{}'.", show(r)));
        }
        then
    }

    /// nats-server's `lexNumber`.
    pub(super) fn lex_number(&mut self) -> St {
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

    /// nats-server's `lexConvenientNumber`.
    pub(super) fn lex_convenient_number(&mut self) -> St {
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

    /// nats-server's `lexDateAfterYear`.
    pub(super) fn lex_date_after_year(&mut self) -> St {
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

    /// nats-server's `lexNegNumberStart`.
    pub(super) fn lex_neg_number_start(&mut self) -> St {
        self.first_digit(St::NegNumber)
    }

    /// nats-server's `lexNegNumber`.
    pub(super) fn lex_neg_number(&mut self) -> St {
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

    /// nats-server's `lexFloatStart`.
    pub(super) fn lex_float_start(&mut self) -> St {
        let r = self.next();
        if !is_digit(r) {
            return self.errorf(format!(
                "Floats must have a digit after the '.', but got '{}' instead.",
                show(r)
            ));
        }
        St::Float
    }

    /// nats-server's `lexFloat`.
    pub(super) fn lex_float(&mut self) -> St {
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

    /// nats-server's `lexIpAddr`.
    pub(super) fn lex_ip_addr(&mut self) -> St {
        let r = self.next();
        if is_digit(r) || r == '.' || r == ':' || r == '-' {
            return St::IpAddr;
        }
        self.backup();
        self.emit(ItemKind::String);
        self.pop()
    }

    /// nats-server's `lexCommentStart`.
    pub(super) fn lex_comment_start(&mut self) -> St {
        self.ignore();
        St::Comment
    }

    /// nats-server's `lexComment`.
    pub(super) fn lex_comment(&mut self) -> St {
        let r = self.peek();
        if is_nl(r) || r == EOF {
            self.ignore();
            return self.pop();
        }
        self.next();
        St::Comment
    }
}
