//! The states that read keys and structure: the top level, blocks, maps, keys and includes
//! (nats-server's `lexTop`, `lexBlock…`, `lexMap…`, `lexKey…`, `lexInclude…`).

use super::{is_digit, is_key_sep, is_nl, is_space, is_whitespace, show, ItemKind, Lexer, St, EOF};

impl Lexer {
    /// nats-server's `lexTop`.
    pub(super) fn lex_top(&mut self) -> St {
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

    /// nats-server's `lexTopValueEnd`.
    pub(super) fn lex_top_value_end(&mut self) -> St {
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

    /// nats-server's `lexBlockStart`.
    pub(super) fn lex_block_start(&mut self) -> St {
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

    /// nats-server's `lexBlockValueEnd`.
    pub(super) fn lex_block_value_end(&mut self) -> St {
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

    /// nats-server's `lexBlockEnd`.
    pub(super) fn lex_block_end(&mut self) -> St {
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

    /// nats-server's `lexKeyStart`.
    pub(super) fn lex_key_start(&mut self) -> St {
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

    /// nats-server's `lexDubQuotedKey` and `lexQuotedKey`.
    pub(super) fn lex_quoted_key(&mut self, st: St) -> St {
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

    /// nats-server's `lexKey`.
    pub(super) fn lex_key(&mut self) -> St {
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

    /// nats-server's `lexKeyEnd`.
    pub(super) fn lex_key_end(&mut self) -> St {
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

    /// nats-server's `lexIncludeStart`.
    pub(super) fn lex_include_start(&mut self) -> St {
        let r = self.next();
        if is_whitespace(r) {
            self.ignore();
            return St::IncludeStart;
        }
        self.backup();
        St::Include
    }

    /// nats-server's `lexInclude`.
    pub(super) fn lex_include(&mut self) -> St {
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
            c if is_nl(c) => self.errorf("Expected include value but found new line".into()),
            _ => {
                self.backup();
                St::IncludeString
            }
        }
    }

    /// nats-server's `lexIncludeQuotedString` and `lexIncludeDubQuotedString`.
    pub(super) fn lex_include_quoted_string(&mut self, st: St) -> St {
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

    /// nats-server's `lexIncludeString`.
    pub(super) fn lex_include_string(&mut self) -> St {
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

    /// nats-server's `lexMapKeyStart`.
    pub(super) fn lex_map_key_start(&mut self) -> St {
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

    /// nats-server's `lexMapQuotedKey` and `lexMapDubQuotedKey`.
    pub(super) fn lex_map_quoted_key(&mut self, st: St) -> St {
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

    /// nats-server's `lexMapKey`.
    pub(super) fn lex_map_key(&mut self) -> St {
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

    /// nats-server's `lexMapKeyEnd`.
    pub(super) fn lex_map_key_end(&mut self) -> St {
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

    /// nats-server's `lexMapValue`.
    pub(super) fn lex_map_value(&mut self) -> St {
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

    /// nats-server's `lexMapValueEnd`.
    pub(super) fn lex_map_value_end(&mut self) -> St {
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

    /// nats-server's `lexMapEnd`.
    pub(super) fn lex_map_end(&mut self) -> St {
        self.ignore();
        self.emit(ItemKind::MapEnd);
        self.pop()
    }
}
