//! A forgiving JSON reader for model output that was cut off or is slightly off.
//!
//! It reads what it can and never fails: an array or object cut off keeps the members read so far, a bad
//! escape or a lone surrogate becomes U+FFFD, and anything it cannot read ends the value there. A string
//! cut off by the end of the text is kept as an object member (a partial caption is still useful) but
//! dropped as an array item (a partial lyric line is not); either way it is reported in [`Lenient::cut`]. Strict parsing (`serde_json`) is tried first; this is
//! the fallback.

use serde_json::{Map, Number, Value};

/// What the reader made of the text.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Lenient {
    /// The value read.
    pub value: Value,
    /// The text ended inside a value (a string, array or object was not closed).
    pub truncated: bool,
    /// The string the text ended in, as far as it got.
    pub cut: Option<String>,
}

/// Reads the first JSON value in `text`, starting at its first `{` (model chatter before it is skipped).
/// `None` when there is no `{` at all.
pub(crate) fn parse_object(text: &str) -> Option<Lenient> {
    let start = text.find('{')?;
    let mut reader = Reader {
        chars: text[start..].chars().collect(),
        pos: 0,
        truncated: false,
        cut: None,
        depth: 0,
    };
    let value = reader.value().unwrap_or(Value::Null);
    Some(Lenient {
        value,
        truncated: reader.truncated,
        cut: reader.cut,
    })
}

/// The reader's state over the text.
struct Reader {
    /// The text from its first `{`, as characters (so positions never split one).
    chars: Vec<char>,
    /// The next character to read.
    pos: usize,
    /// The text ended inside a value.
    truncated: bool,
    /// The string the text ended in.
    cut: Option<String>,
    /// Open arrays and objects, bounded by `MAX_DEPTH`.
    depth: usize,
}

/// Deeper nesting than this is not a song description; stop rather than recurse without bound.
const MAX_DEPTH: usize = 32;

impl Reader {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    /// A value, or `None` when the text has ended or holds something that is not JSON here.
    fn value(&mut self) -> Option<Value> {
        self.skip_ws();
        let Some(c) = self.peek() else {
            self.truncated = true;
            return None;
        };
        match c {
            '{' | '[' if self.depth >= MAX_DEPTH => None,
            '{' => {
                self.depth += 1;
                let v = self.object();
                self.depth -= 1;
                Some(v)
            }
            '[' => {
                self.depth += 1;
                let v = self.array();
                self.depth -= 1;
                Some(v)
            }
            '"' => Some(Value::String(self.string())),
            '-' | '0'..='9' => self.number(),
            't' => self.word("true", Value::Bool(true)),
            'f' => self.word("false", Value::Bool(false)),
            'n' => self.word("null", Value::Null),
            _ => None,
        }
    }

    fn word(&mut self, word: &str, value: Value) -> Option<Value> {
        for expected in word.chars() {
            match self.peek() {
                Some(c) if c == expected => self.pos += 1,
                Some(_) => return None,
                None => {
                    self.truncated = true;
                    return None;
                }
            }
        }
        Some(value)
    }

    fn number(&mut self) -> Option<Value> {
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_digit() || matches!(c, '-' | '+' | '.' | 'e' | 'E'))
        {
            self.pos += 1;
        }
        let text: String = self.chars[start..self.pos].iter().collect();
        if let Ok(i) = text.parse::<i64>() {
            return Some(Value::Number(i.into()));
        }
        text.parse::<f64>()
            .ok()
            .and_then(Number::from_f64)
            .map(Value::Number)
    }

    /// A string starting at `"`; ends at the closing quote or the end of the text.
    fn string(&mut self) -> String {
        self.pos += 1; // the opening quote
        let mut out = String::new();
        loop {
            let Some(c) = self.peek() else {
                self.truncated = true;
                self.cut = Some(out.clone());
                return out;
            };
            self.pos += 1;
            match c {
                '"' => return out,
                '\\' => {
                    let Some(e) = self.peek() else {
                        self.truncated = true;
                        self.cut = Some(out.clone());
                        return out;
                    };
                    self.pos += 1;
                    match e {
                        'n' => out.push('\n'),
                        't' => out.push('\t'),
                        'r' => out.push('\r'),
                        'b' => out.push('\u{8}'),
                        'f' => out.push('\u{c}'),
                        'u' => out.push(self.unicode_escape()),
                        other => out.push(other),
                    }
                }
                c => out.push(c),
            }
        }
    }

    /// The code point of `\uXXXX` (the `\u` already read), joining surrogate pairs; U+FFFD for anything
    /// malformed.
    fn unicode_escape(&mut self) -> char {
        let Some(high) = self.hex4() else {
            return '\u{FFFD}';
        };
        if (0xD800..0xDC00).contains(&high) {
            let save = self.pos;
            if self.peek() == Some('\\') && self.chars.get(self.pos + 1) == Some(&'u') {
                self.pos += 2;
                if let Some(low) = self.hex4().filter(|l| (0xDC00..0xE000).contains(l)) {
                    let code = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00);
                    return char::from_u32(code).unwrap_or('\u{FFFD}');
                }
            }
            self.pos = save;
            return '\u{FFFD}';
        }
        char::from_u32(high).unwrap_or('\u{FFFD}')
    }

    fn hex4(&mut self) -> Option<u32> {
        let digits: String = self.chars.get(self.pos..self.pos + 4)?.iter().collect();
        let value = u32::from_str_radix(&digits, 16).ok()?;
        self.pos += 4;
        Some(value)
    }

    fn array(&mut self) -> Value {
        self.pos += 1; // [
        let mut items = Vec::new();
        loop {
            self.skip_ws();
            match self.peek() {
                None => {
                    self.truncated = true;
                    break;
                }
                Some(']') => {
                    self.pos += 1;
                    break;
                }
                Some(',') => {
                    self.pos += 1;
                }
                Some(_) => match self.value() {
                    // A string cut off by the end of the text is not a whole item.
                    Some(Value::String(_)) if self.cut.is_some() => break,
                    Some(v) => items.push(v),
                    None => break,
                },
            }
        }
        Value::Array(items)
    }

    fn object(&mut self) -> Value {
        self.pos += 1; // {
        let mut map = Map::new();
        loop {
            self.skip_ws();
            match self.peek() {
                None => {
                    self.truncated = true;
                    break;
                }
                Some('}') => {
                    self.pos += 1;
                    break;
                }
                Some(',') => self.pos += 1,
                Some('"') => {
                    let key = self.string();
                    self.skip_ws();
                    match self.peek() {
                        Some(':') => self.pos += 1,
                        None => {
                            self.truncated = true;
                            break;
                        }
                        Some(_) => break,
                    }
                    match self.value() {
                        Some(v) => {
                            map.insert(key, v);
                        }
                        None => break,
                    }
                }
                Some(_) => break,
            }
        }
        Value::Object(map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(text: &str) -> Lenient {
        parse_object(text).expect("has a brace")
    }

    #[test]
    fn complete_json_reads_like_serde() {
        let text =
            r#"{"a": "x\ny \u00e9 \ud83c\udfb5", "b": [1, 2.5, true, null], "c": {"d": -3}}"#;
        let strict: Value = serde_json::from_str(text).expect("valid json");
        let lenient = read(text);
        assert_eq!(lenient.value, strict);
        assert!(!lenient.truncated);
    }

    #[test]
    fn cut_off_text_keeps_what_was_read() {
        let lenient = read(
            r#"chatter {"title": "Rain", "lyrics": [{"section": "verse", "lines": ["one", "tw"#,
        );
        assert!(lenient.truncated);
        assert_eq!(lenient.cut.as_deref(), Some("tw"));
        assert_eq!(
            lenient.value,
            json!({"title": "Rain", "lyrics": [{"section": "verse", "lines": ["one"]}]})
        );
        let lenient = read(r#"{"title": "Ra"#);
        assert_eq!(lenient.value, json!({"title": "Ra"}));
        assert_eq!(lenient.cut.as_deref(), Some("Ra"));
        let lenient = read(r#"{"bpm": "#);
        assert_eq!(lenient.value, json!({}));
        assert!(lenient.truncated);
        assert_eq!(lenient.cut, None);
    }

    #[test]
    fn malformed_escapes_become_replacement_characters() {
        let lenient = read(r#"{"a": "x\ud800y\uZZ"}"#);
        assert_eq!(lenient.value["a"], json!("x\u{FFFD}y\u{FFFD}ZZ"));
    }

    #[test]
    fn garbage_stops_the_value_without_failing() {
        assert_eq!(read("{@@@").value, json!({}));
        assert_eq!(read(r#"{"a": 1 "b": 2}"#).value, json!({"a": 1, "b": 2}));
        assert!(parse_object("no braces here").is_none());
        let deep = "[".repeat(10_000);
        assert!(read(&format!("{{\"a\": {deep}")).value["a"].is_array());
    }
}
