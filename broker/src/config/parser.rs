//! Builds a [`Value`] tree from lexer items: size suffixes, `$VAR`
//! references (enclosing maps first, then the environment) and includes.
//! Mirrors nats-server's `conf/parse.go`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::lexer::{Item, ItemKind, Lexer};
use super::value::{Kind, Map, Pos, Value};
use super::ConfigError;

/// Includes nested deeper than this are reported as a cycle.
const MAX_INCLUDE_DEPTH: usize = 32;

/// Where `$VAR` falls back to after the enclosing maps.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

enum Ctx {
    Map {
        map: Map,
        /// Keys of this map that were used as `$VAR`; dropped when it closes.
        used: HashSet<String>,
        /// Length of the key stack when this map opened.
        key_depth: usize,
        pos: Pos,
    },
    Array {
        items: Vec<Value>,
        pos: Pos,
    },
}

struct Parser<'a> {
    lx: Lexer,
    file: Arc<str>,
    dir: PathBuf,
    ctxs: Vec<Ctx>,
    keys: Vec<(String, Pos)>,
    env: EnvLookup<'a>,
    include_depth: usize,
    /// Environment variables being resolved (cycle detection).
    resolving: Vec<String>,
}

/// Parse config text. `file` names it in positions; includes are relative to `dir`.
pub fn parse_str(
    input: &str,
    file: &str,
    dir: &Path,
    env: EnvLookup<'_>,
) -> Result<Map, ConfigError> {
    parse_inner(input, file, dir, env, 0, Vec::new())
}

/// Read and parse a config file (includes relative to its directory).
pub fn parse_file(path: &Path, env: EnvLookup<'_>) -> Result<Map, ConfigError> {
    parse_file_inner(path, env, 0)
}

fn parse_file_inner(path: &Path, env: EnvLookup<'_>, depth: usize) -> Result<Map, ConfigError> {
    let data = std::fs::read_to_string(path).map_err(|e| ConfigError::Io {
        path: path.display().to_string(),
        source: e,
    })?;
    let dir = path.parent().unwrap_or(Path::new("")).to_path_buf();
    parse_inner(
        &data,
        &path.display().to_string(),
        &dir,
        env,
        depth,
        Vec::new(),
    )
}

fn parse_inner(
    input: &str,
    file: &str,
    dir: &Path,
    env: EnvLookup<'_>,
    include_depth: usize,
    resolving: Vec<String>,
) -> Result<Map, ConfigError> {
    let file: Arc<str> = Arc::from(file);
    let p = Parser {
        lx: Lexer::new(input),
        file: file.clone(),
        dir: dir.to_path_buf(),
        ctxs: vec![Ctx::Map {
            map: Map::default(),
            used: HashSet::new(),
            key_depth: 0,
            pos: Pos {
                file,
                line: 1,
                col: 1,
            },
        }],
        keys: Vec::new(),
        env,
        include_depth,
        resolving,
    };
    p.run()
}

/// Go's `filepath.Join(dir, rel)`: an absolute `rel` is still joined under `dir`.
fn go_join(dir: &Path, rel: &str) -> PathBuf {
    let rel = rel.trim_start_matches('/');
    if dir.as_os_str().is_empty() {
        PathBuf::from(rel)
    } else {
        dir.join(rel)
    }
}

/// Apply a size suffix (`k`=1000, `kb`/`ki`/`kib`=1024, ... up to `e`/`eb`).
fn apply_suffix(num: i64, suffix: &str) -> Option<i64> {
    let (exp, base): (u32, i64) = match suffix {
        "" => (0, 1000),
        "k" => (1, 1000),
        "kb" | "ki" | "kib" => (1, 1024),
        "m" => (2, 1000),
        "mb" | "mi" | "mib" => (2, 1024),
        "g" => (3, 1000),
        "gb" | "gi" | "gib" => (3, 1024),
        "t" => (4, 1000),
        "tb" | "ti" | "tib" => (4, 1024),
        "p" => (5, 1000),
        "pb" | "pi" | "pib" => (5, 1024),
        "e" => (6, 1000),
        "eb" | "ei" | "eib" => (6, 1024),
        _ => return None,
    };
    num.checked_mul(base.checked_pow(exp)?)
}

impl Parser<'_> {
    fn pos(&self, it: &Item) -> Pos {
        Pos {
            file: self.file.clone(),
            line: it.line,
            col: it.col,
        }
    }

    fn syntax(&self, it: &Item, msg: impl Into<String>) -> ConfigError {
        ConfigError::Syntax {
            pos: self.pos(it),
            msg: msg.into(),
        }
    }

    fn run(mut self) -> Result<Map, ConfigError> {
        let mut prev_key = false;
        loop {
            let it = self.lx.next_item();
            match it.kind {
                ItemKind::Eof => {
                    if prev_key || !self.keys.is_empty() {
                        let (k, pos) = self.keys.last().cloned().unwrap_or_default();
                        return Err(ConfigError::Syntax {
                            pos,
                            msg: format!("key '{k}' has no value"),
                        });
                    }
                    break;
                }
                ItemKind::Error => return Err(self.syntax(&it, it.text.clone())),
                _ => {
                    prev_key = it.kind == ItemKind::Key;
                    self.process(it)?;
                }
            }
        }
        match self.ctxs.pop() {
            Some(Ctx::Map { mut map, used, .. }) if self.ctxs.is_empty() => {
                map.entries.retain(|e| !used.contains(&e.key));
                Ok(map)
            }
            _ => Err(ConfigError::Syntax {
                pos: Pos {
                    file: self.file.clone(),
                    line: 0,
                    col: 0,
                },
                msg: "unbalanced blocks at end of input".into(),
            }),
        }
    }

    fn process(&mut self, it: Item) -> Result<(), ConfigError> {
        let pos = self.pos(&it);
        match it.kind {
            ItemKind::Key => self.keys.push((it.text, pos)),
            ItemKind::MapStart => self.ctxs.push(Ctx::Map {
                map: Map::default(),
                used: HashSet::new(),
                key_depth: self.keys.len(),
                pos,
            }),
            ItemKind::MapEnd => match self.ctxs.pop() {
                Some(Ctx::Map {
                    mut map,
                    used,
                    key_depth,
                    pos,
                }) => {
                    if self.keys.len() > key_depth {
                        let (k, kpos) = self.keys.pop().unwrap_or_default();
                        return Err(ConfigError::Syntax {
                            pos: kpos,
                            msg: format!("key '{k}' has no value"),
                        });
                    }
                    map.entries.retain(|e| !used.contains(&e.key));
                    self.set_value(
                        Value {
                            kind: Kind::Map(map),
                            pos,
                        },
                        &it,
                    )?;
                }
                _ => return Err(self.syntax(&it, "unexpected '}'")),
            },
            ItemKind::ArrayStart => self.ctxs.push(Ctx::Array {
                items: Vec::new(),
                pos,
            }),
            ItemKind::ArrayEnd => match self.ctxs.pop() {
                Some(Ctx::Array { items, pos }) => self.set_value(
                    Value {
                        kind: Kind::Array(items),
                        pos,
                    },
                    &it,
                )?,
                _ => return Err(self.syntax(&it, "unexpected ']'")),
            },
            ItemKind::String | ItemKind::Datetime => {
                self.set_value(
                    Value {
                        kind: Kind::String(it.text.clone()),
                        pos,
                    },
                    &it,
                )?;
            }
            ItemKind::Bool => {
                let b = match it.text.to_lowercase().as_str() {
                    "true" | "yes" | "on" => true,
                    "false" | "no" | "off" => false,
                    _ => {
                        return Err(self.syntax(
                            &it,
                            format!("expected boolean value, but got '{}'", it.text),
                        ))
                    }
                };
                self.set_value(
                    Value {
                        kind: Kind::Bool(b),
                        pos,
                    },
                    &it,
                )?;
            }
            ItemKind::Integer => {
                let digits = it
                    .text
                    .chars()
                    .take_while(|c| c.is_ascii_digit() || *c == '-')
                    .count();
                let (num, suffix) = it.text.split_at(digits);
                let num: i64 = num.parse().map_err(|e: std::num::ParseIntError| {
                    use std::num::IntErrorKind::*;
                    match e.kind() {
                        PosOverflow | NegOverflow => {
                            self.syntax(&it, format!("integer '{}' is out of the range", it.text))
                        }
                        _ => self.syntax(&it, format!("expected integer, but got '{}'", it.text)),
                    }
                })?;
                let suffix = suffix.trim().to_lowercase();
                let v = apply_suffix(num, &suffix).ok_or_else(|| {
                    if suffix.is_empty() || apply_suffix(1, &suffix).is_some() {
                        self.syntax(&it, format!("integer '{}' is out of the range", it.text))
                    } else {
                        self.syntax(&it, format!("invalid size suffix in '{}'", it.text))
                    }
                })?;
                self.set_value(
                    Value {
                        kind: Kind::Int(v),
                        pos,
                    },
                    &it,
                )?;
            }
            ItemKind::Float => {
                let f: f64 = it.text.parse().map_err(|_| {
                    self.syntax(&it, format!("expected float, but got '{}'", it.text))
                })?;
                if !f.is_finite() {
                    return Err(
                        self.syntax(&it, format!("float '{}' is out of the range", it.text))
                    );
                }
                self.set_value(
                    Value {
                        kind: Kind::Float(f),
                        pos,
                    },
                    &it,
                )?;
            }
            ItemKind::Variable => {
                let mut v = self.lookup_variable(&it)?;
                v.pos = pos;
                self.set_value(v, &it)?;
            }
            ItemKind::Include => {
                if self.include_depth >= MAX_INCLUDE_DEPTH {
                    return Err(self.syntax(
                        &it,
                        format!("include '{}' nests too deep (cycle?)", it.text),
                    ));
                }
                let path = go_join(&self.dir, &it.text);
                let m = parse_file_inner(&path, self.env, self.include_depth + 1).map_err(|e| {
                    ConfigError::Include {
                        pos: pos.clone(),
                        path: it.text.clone(),
                        source: Box::new(e),
                    }
                })?;
                match self.ctxs.last_mut() {
                    Some(Ctx::Map { map, used, .. }) => {
                        for e in m.entries {
                            used.remove(&e.key);
                            map.insert(e.key, e.key_pos, e.value);
                        }
                    }
                    _ => return Err(self.syntax(&it, "include is only allowed in a map")),
                }
            }
            ItemKind::Eof | ItemKind::Error => {}
        }
        Ok(())
    }

    fn set_value(&mut self, v: Value, it: &Item) -> Result<(), ConfigError> {
        let key = match self.ctxs.last() {
            Some(Ctx::Map { key_depth, .. }) if self.keys.len() > *key_depth => self.keys.pop(),
            Some(Ctx::Map { .. }) => None,
            Some(Ctx::Array { .. }) => {
                if let Some(Ctx::Array { items, .. }) = self.ctxs.last_mut() {
                    items.push(v);
                }
                return Ok(());
            }
            None => None,
        };
        let Some((k, kpos)) = key else {
            return Err(self.syntax(it, "value without a key"));
        };
        if let Some(Ctx::Map { map, used, .. }) = self.ctxs.last_mut() {
            used.remove(&k);
            map.insert(k, kpos, v);
        }
        Ok(())
    }

    fn lookup_variable(&mut self, it: &Item) -> Result<Value, ConfigError> {
        let name = it.text.as_str();
        if name.starts_with("2a$") {
            return Ok(Value {
                kind: Kind::String(format!("${name}")),
                pos: self.pos(it),
            });
        }
        for ctx in self.ctxs.iter_mut().rev() {
            if let Ctx::Map { map, used, .. } = ctx {
                if let Some(v) = map.get(name) {
                    used.insert(name.to_string());
                    return Ok(v.clone());
                }
            }
        }
        let not_found = || ConfigError::Variable {
            pos: self.pos(it),
            name: name.to_string(),
            reason: "can not be found".into(),
        };
        let Some(raw) = (self.env)(name) else {
            return Err(not_found());
        };
        if self.resolving.iter().any(|r| r == name) {
            return Err(ConfigError::Variable {
                pos: self.pos(it),
                name: name.to_string(),
                reason: "is a reference cycle".into(),
            });
        }
        let mut resolving = self.resolving.clone();
        resolving.push(name.to_string());
        let parsed = parse_inner(
            &format!("pk={raw}"),
            &format!("${name}"),
            Path::new(""),
            self.env,
            self.include_depth,
            resolving,
        )
        .map_err(|e| ConfigError::Variable {
            pos: self.pos(it),
            name: name.to_string(),
            reason: format!("could not be parsed: {e}"),
        })?;
        parsed.get("pk").cloned().ok_or_else(not_found)
    }
}
