//! The fast path of line parsing: one validating pass over a line that picks out the configured
//! top-level fields, without building a simd-json tape.
//!
//! simd-json indexes every structural character and writes a tape for the whole ~330-byte line,
//! although the pipeline needs four or five of its values; that made parsing the largest stage.
//! This scanner walks the line once, checks it against the JSON grammar as it goes, and keeps
//! only the values of the configured names.
//!
//! It never decides a rejection. Whenever it meets something whose meaning it does not fully
//! settle itself — an escape sequence, a control character, an exponent, a long number, deep
//! nesting, a configured field holding a fraction — it answers `None`, and the caller parses the
//! line with simd-json, which then accepts or rejects it exactly as before. So every rejection
//! rule and every value stays simd-json's; the scanner only has to be right about the lines it
//! accepts, which `tests/fuzz_parse.rs` checks against the simd-json path line by line.

use crate::parse::path::Level;

/// The value of one configured field, as the extraction code needs it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Field<'a> {
    Null,
    Bool(bool),
    Str(&'a str),
    /// An integer that fits i64.
    Int(i64),
    /// An integer above i64::MAX.
    UInt(u64),
    Float(f64),
    Array,
    Object,
}

impl Field<'_> {
    /// The integer value, if the number is an integer that fits i64.
    pub(crate) fn as_i64(self) -> Option<i64> {
        match self {
            Field::Int(i) => Some(i),
            _ => None,
        }
    }

    /// The number as a float (`None` for non-numbers).
    pub(crate) fn as_f64(self) -> Option<f64> {
        match self {
            Field::Int(i) => Some(i as f64),
            Field::UInt(u) => Some(u as f64),
            Field::Float(f) => Some(f),
            _ => None,
        }
    }

    pub(crate) fn type_name(self) -> &'static str {
        match self {
            Field::Null => "null",
            Field::Bool(_) => "boolean",
            Field::Str(_) => "string",
            Field::Int(_) | Field::UInt(_) | Field::Float(_) => "number",
            Field::Array => "array",
            Field::Object => "object",
        }
    }
}

/// Deeper nesting than this goes to simd-json (which has its own limit).
const MAX_DEPTH: u32 = 32;
/// Numbers with more digits than this go to simd-json (huge ones overflow to a rejection there).
const MAX_SKIPPED_DIGITS: usize = 30;
/// Integers of up to 18 digits always fit i64.
const MAX_INT_DIGITS: usize = 18;

/// Scans `line`; on `Some(())` it is valid JSON whose root is an object, and `fields[s]` holds the
/// value of the last member reached by the configured path of slot `s` (`None` if there is none).
/// `None`: not settled here, ask simd-json.
pub(crate) fn fields<'a>(
    line: &'a [u8],
    root: &Level,
    fields: &mut [Option<Field<'a>>],
) -> Option<()> {
    let text = std::str::from_utf8(line).ok()?;
    let mut s = Scanner {
        b: line,
        text,
        i: 0,
    };
    s.ws();
    if s.peek() != Some(b'{') {
        return None;
    }
    s.object(root, fields, 0)?;
    s.ws();
    (s.i == line.len()).then_some(())
}

struct Scanner<'a> {
    b: &'a [u8],
    text: &'a str,
    i: usize,
}

impl<'a> Scanner<'a> {
    #[inline]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    #[inline]
    fn next(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }

    #[inline]
    fn eat(&mut self, c: u8) -> Option<()> {
        (self.next()? == c).then_some(())
    }

    /// JSON whitespace: space, tab, line feed, carriage return.
    #[inline]
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    /// A string without escapes or control characters; `self.i` is at its opening quote.
    #[inline]
    fn string(&mut self) -> Option<&'a str> {
        if self.peek() != Some(b'"') {
            return None;
        }
        let start = self.i + 1;
        let end = string_end(self.b, start)?;
        self.i = end + 1;
        self.text.get(start..end)
    }

    /// The value of a configured field.
    fn field(&mut self) -> Option<Field<'a>> {
        match self.peek()? {
            b'"' => self.string().map(Field::Str),
            b'-' | b'0'..=b'9' => {
                let start = self.i;
                let (digits, plain) = self.number()?;
                if !plain || digits > MAX_INT_DIGITS {
                    // A fraction or a long integer: its exact value is simd-json's business.
                    return None;
                }
                self.text.get(start..self.i)?.parse().ok().map(Field::Int)
            }
            b'{' => self.skip_value(1).map(|()| Field::Object),
            b'[' => self.skip_value(1).map(|()| Field::Array),
            b't' => self.literal(b"true").map(|()| Field::Bool(true)),
            b'f' => self.literal(b"false").map(|()| Field::Bool(false)),
            b'n' => self.literal(b"null").map(|()| Field::Null),
            _ => None,
        }
    }

    /// An object whose members named at `level` go to their slots; `self.i` is at its `{`.
    fn object(
        &mut self,
        level: &Level,
        fields: &mut [Option<Field<'a>>],
        depth: u32,
    ) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.list(b'}', |s| {
            let Some(i) = level.find(s.member_name()?.as_bytes()) else {
                return s.skip_value(depth + 1);
            };
            let value = match level.child(i) {
                Some(child) => {
                    // A repeated member replaces the earlier one, nested values included.
                    for &slot in child.below() {
                        fields[slot] = None;
                    }
                    if s.peek() == Some(b'{') {
                        s.object(child, fields, depth + 1)?;
                        Field::Object
                    } else {
                        s.field()?
                    }
                }
                None => s.field()?,
            };
            fields[level.slot(i)] = Some(value);
            Some(())
        })
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.i + word.len();
        (self.b.get(self.i..end)? == word).then(|| self.i = end)
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?`; returns the digit count and whether it is an integer.
    /// Exponents and very long numbers are left to simd-json.
    fn number(&mut self) -> Option<(usize, bool)> {
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        let int = self.digits();
        if int == 0 || (int > 1 && self.b[self.i - int] == b'0') {
            return None;
        }
        let mut total = int;
        let mut plain = true;
        if self.peek() == Some(b'.') {
            self.i += 1;
            let frac = self.digits();
            if frac == 0 {
                return None;
            }
            total += frac;
            plain = false;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) || total > MAX_SKIPPED_DIGITS {
            return None;
        }
        Some((total, plain))
    }

    #[inline]
    fn digits(&mut self) -> usize {
        let start = self.i;
        while let Some(b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
        self.i - start
    }

    /// Validates and steps over one value of an unconfigured field.
    fn skip_value(&mut self, depth: u32) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        match self.peek()? {
            b'"' => self.string().map(|_| ()),
            b'-' | b'0'..=b'9' => self.number().map(|_| ()),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'{' => self.list(b'}', |s| {
                s.member_name()?;
                s.skip_value(depth + 1)
            }),
            b'[' => self.list(b']', |s| s.skip_value(depth + 1)),
            _ => None,
        }
    }

    /// An object's or array's items: `self.i` is at the opening bracket; `item` reads one item
    /// (for an object: a member name, then its value), the commas and `close` are checked here.
    #[inline]
    fn list(&mut self, close: u8, mut item: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.i += 1;
        self.ws();
        if self.peek() == Some(close) {
            self.i += 1;
            return Some(());
        }
        loop {
            item(self)?;
            self.ws();
            match self.next()? {
                b',' => self.ws(),
                c if c == close => return Some(()),
                _ => return None,
            }
        }
    }

    /// A member's name and the colon after it; leaves `self.i` at the value.
    #[inline]
    fn member_name(&mut self) -> Option<&'a str> {
        let name = self.string()?;
        self.ws();
        self.eat(b':')?;
        self.ws();
        Some(name)
    }
}

/// Index of the quote that ends a string starting at `i` (just past its opening quote); `None` at
/// a backslash, a control character or the end of the line. Eight bytes per step: the usual
/// has-zero-byte / has-byte-less-than word tricks, whose lowest flagged byte is always exact.
#[inline]
fn string_end(b: &[u8], mut i: usize) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    const QUOTE: u64 = u64::from_ne_bytes([b'"'; 8]);
    const BACKSLASH: u64 = u64::from_ne_bytes([b'\\'; 8]);
    const SPACE: u64 = u64::from_ne_bytes([0x20; 8]);
    while let Some(chunk) = b.get(i..).and_then(|rest| rest.first_chunk::<8>()) {
        let w = u64::from_le_bytes(*chunk);
        let q = w ^ QUOTE;
        let s = w ^ BACKSLASH;
        let hits = (q.wrapping_sub(ONES) & !q)
            | (s.wrapping_sub(ONES) & !s)
            | (w.wrapping_sub(SPACE) & !w);
        let hits = hits & HIGH;
        if hits != 0 {
            let j = i + (hits.trailing_zeros() / 8) as usize;
            return (b[j] == b'"').then_some(j);
        }
        i += 8;
    }
    while let Some(&c) = b.get(i) {
        match c {
            b'"' => return Some(i),
            b'\\' | 0..=0x1f => return None,
            _ => i += 1,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::path::{FieldPath, Paths};

    /// The fields of `line` at `paths` (dotted), in the order given.
    fn scan(line: &str, paths: &[&str]) -> Option<Vec<Option<String>>> {
        let mut p = Paths::default();
        let slots: Vec<usize> = paths
            .iter()
            .map(|n| p.slot(&FieldPath::parse(n).unwrap()))
            .collect();
        let mut out = vec![None; p.len()];
        fields(line.as_bytes(), p.root(), &mut out)?;
        Some(
            slots
                .iter()
                .map(|&s| out[s])
                .map(|f| {
                    f.map(|f| match f {
                        Field::Str(s) => format!("s:{s}"),
                        Field::Int(i) => format!("i:{i}"),
                        other => other.type_name().to_string(),
                    })
                })
                .collect(),
        )
    }

    #[test]
    fn string_end_finds_the_first_stop() {
        for n in 0..20 {
            let body = "x".repeat(n);
            let quoted = format!("{body}\"rest\"");
            assert_eq!(string_end(quoted.as_bytes(), 0), Some(n));
            assert_eq!(string_end(format!("{body}\\\"").as_bytes(), 0), None);
            assert_eq!(string_end(format!("{body}\x1f\"").as_bytes(), 0), None);
            assert_eq!(
                string_end(format!("{body}\x7f\"").as_bytes(), 0),
                Some(n + 1)
            );
            assert_eq!(string_end(format!("{body}é\"").as_bytes(), 0), Some(n + 2));
            assert_eq!(string_end(body.as_bytes(), 0), None, "unterminated");
        }
    }

    #[test]
    fn picks_top_level_fields_and_last_wins() {
        let got = scan(
            r#" {"a":"x","n":{"a":"nested"},"b":-12,"a":"y","c":[1,2.5,{"d":null}],"e":true} "#,
            &["a", "b", "c", "e", "zz"],
        );
        assert_eq!(
            got,
            Some(vec![
                Some("s:y".into()),
                Some("i:-12".into()),
                Some("array".into()),
                Some("boolean".into()),
                None
            ])
        );
        assert_eq!(scan("{}", &["a"]), Some(vec![None]));
        assert_eq!(scan("{ }", &["a"]), Some(vec![None]));
    }

    #[test]
    fn dotted_paths_reach_nested_members_and_the_last_occurrence_wins() {
        let line = r#"{"p":{"c":"red","q":2,"deep":{"x":"y"}},"a.b":"dot","p2":[{"c":"no"}]}"#;
        assert_eq!(
            scan(
                line,
                &["p.c", "p.q", "p.deep.x", r"a\.b", "p2.c", "p.zz", "p"]
            ),
            Some(vec![
                Some("s:red".into()),
                Some("i:2".into()),
                Some("s:y".into()),
                Some("s:dot".into()),
                None,
                None,
                Some("object".into()),
            ])
        );
        // a later "p" replaces the earlier one whole; a non-object "p" has no members
        let again = r#"{"p":{"c":"red","q":1},"p":{"q":3}}"#;
        assert_eq!(
            scan(again, &["p.c", "p.q"]),
            Some(vec![None, Some("i:3".into())])
        );
        assert_eq!(
            scan(r#"{"p":"flat"}"#, &["p.c", "p"]),
            Some(vec![None, Some("s:flat".into())])
        );
    }

    #[test]
    fn leaves_doubtful_lines_to_simd_json() {
        for line in [
            r#"{"a":"x\"y"}"#,
            r#"{"a":"\u00e9"}"#,
            "{\"a\":\"x\ty\"}",
            r#"{"a":1e5}"#,
            r#"{"a":1.5}"#,
            r#"{"a":1234567890123456789}"#,
            r#"{"z":01}"#,
            r#"{"z":1.}"#,
            r#"{"z":-}"#,
            r#"{"z":1,}"#,
            r#"{"z":1} x"#,
            r#"{"z":tru}"#,
            r#"{"z":[1,]}"#,
            r#"[1]"#,
            r#"{"z":1"#,
            "{\"z\":1}\x0c",
        ] {
            assert_eq!(scan(line, &["a"]), None, "{line}");
        }
        let deep = format!("{{\"z\":{}{}}}", "[".repeat(40), "]".repeat(40));
        assert_eq!(scan(&deep, &["a"]), None);
        assert!(scan(r#"{"z":1.5,"y":1234567890123456789012}"#, &["a"]).is_some());
    }
}
