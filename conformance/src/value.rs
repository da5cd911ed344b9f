//! Typed parameter values (`TYPE:VALUE` tokens), their binary-protocol encoding for
//! COM_STMT_EXECUTE and their SQL-literal form for the text protocol, plus the
//! tokenizer and the `{{repeat:TEXT:COUNT}}` macro.

use std::fmt;

use anyhow::{anyhow, bail, Result};

/// MySQL column/parameter type codes (`MYSQL_TYPE_*`).
pub mod ty {
    pub const DECIMAL: u8 = 0;
    pub const TINY: u8 = 1;
    pub const SHORT: u8 = 2;
    pub const LONG: u8 = 3;
    pub const FLOAT: u8 = 4;
    pub const DOUBLE: u8 = 5;
    pub const NULL: u8 = 6;
    pub const TIMESTAMP: u8 = 7;
    pub const LONGLONG: u8 = 8;
    pub const INT24: u8 = 9;
    pub const DATE: u8 = 10;
    pub const TIME: u8 = 11;
    pub const DATETIME: u8 = 12;
    pub const YEAR: u8 = 13;
    pub const NEWDATE: u8 = 14;
    pub const VARCHAR: u8 = 15;
    pub const BIT: u8 = 16;
    pub const JSON: u8 = 245;
    pub const NEWDECIMAL: u8 = 246;
    pub const ENUM: u8 = 247;
    pub const SET: u8 = 248;
    pub const TINY_BLOB: u8 = 249;
    pub const MEDIUM_BLOB: u8 = 250;
    pub const LONG_BLOB: u8 = 251;
    pub const BLOB: u8 = 252;
    pub const VAR_STRING: u8 = 253;
    pub const STRING: u8 = 254;
    pub const GEOMETRY: u8 = 255;

    pub const NAMES: &[(&str, u8)] = &[
        ("decimal", DECIMAL),
        ("tiny", TINY),
        ("short", SHORT),
        ("long", LONG),
        ("float", FLOAT),
        ("double", DOUBLE),
        ("null", NULL),
        ("timestamp", TIMESTAMP),
        ("longlong", LONGLONG),
        ("int24", INT24),
        ("date", DATE),
        ("time", TIME),
        ("datetime", DATETIME),
        ("year", YEAR),
        ("newdate", NEWDATE),
        ("varchar", VARCHAR),
        ("bit", BIT),
        ("json", JSON),
        ("newdecimal", NEWDECIMAL),
        ("enum", ENUM),
        ("set", SET),
        ("tiny_blob", TINY_BLOB),
        ("medium_blob", MEDIUM_BLOB),
        ("long_blob", LONG_BLOB),
        ("blob", BLOB),
        ("var_string", VAR_STRING),
        ("string", STRING),
        ("geometry", GEOMETRY),
    ];

    pub fn name(t: u8) -> String {
        NAMES.iter().find(|(_, c)| *c == t).map(|(n, _)| n.to_uppercase()).unwrap_or_else(|| format!("type {t}"))
    }
}

/// One typed parameter.
#[derive(Debug, Clone, PartialEq)]
pub struct Value {
    pub ty: u8,
    pub unsigned: bool,
    pub data: Data,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    Null,
    /// Sent earlier with COM_STMT_SEND_LONG_DATA: no value bytes in the execute packet.
    Long,
    /// Unquoted text (numbers, dates).
    Text(String),
    /// Quoted string or `x'..'` bytes.
    Bytes(Vec<u8>),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = ty::NAMES.iter().find(|(_, c)| *c == self.ty).map(|(n, _)| *n).unwrap_or("?");
        let u = if self.unsigned { "u" } else { "" };
        match &self.data {
            Data::Null => write!(f, "{u}{name}:NULL"),
            Data::Long => write!(f, "{u}{name}:@long"),
            Data::Text(t) => write!(f, "{u}{name}:{t}"),
            Data::Bytes(b) if b.len() > 40 => write!(f, "{u}{name}:<{} bytes>", b.len()),
            Data::Bytes(b) => write!(f, "{u}{name}:'{}'", String::from_utf8_lossy(b)),
        }
    }
}

impl Value {
    /// Parses `TYPE:VALUE`; `null` alone is a NULL of type NULL. A `u` before an integer
    /// type name sets the unsigned flag (`ulonglong:18446744073709551615`).
    pub fn parse(token: &str) -> Result<Value> {
        if token.eq_ignore_ascii_case("null") {
            return Ok(Value { ty: ty::NULL, unsigned: false, data: Data::Null });
        }
        let (tname, v) = token.split_once(':').ok_or_else(|| anyhow!("parameter {token:?} is not TYPE:VALUE"))?;
        let tname = tname.to_ascii_lowercase();
        let lookup = |n: &str| ty::NAMES.iter().find(|(x, _)| *x == n).map(|(_, c)| *c);
        let (t, unsigned) = match lookup(&tname) {
            Some(t) => (t, false),
            None => match tname.strip_prefix('u').and_then(lookup) {
                Some(t) => (t, true),
                None => bail!("unknown parameter type {tname:?}"),
            },
        };
        let data = if v.eq_ignore_ascii_case("null") {
            Data::Null
        } else if v == "@long" {
            Data::Long
        } else if v.starts_with('\'') {
            Data::Bytes(unquote(v)?)
        } else if (v.starts_with("x'") || v.starts_with("X'")) && v.ends_with('\'') {
            Data::Bytes(from_hex(&v[2..v.len() - 1])?)
        } else {
            Data::Text(v.to_string())
        };
        Ok(Value { ty: t, unsigned, data })
    }

    pub fn is_null(&self) -> bool {
        self.data == Data::Null
    }

    /// The value as bytes (strings and hex as given, text as its bytes).
    pub fn bytes(&self) -> Option<Vec<u8>> {
        match &self.data {
            Data::Bytes(b) => Some(b.clone()),
            Data::Text(t) => Some(t.as_bytes().to_vec()),
            _ => None,
        }
    }

    fn text(&self) -> Result<String> {
        match &self.data {
            Data::Text(t) => Ok(t.clone()),
            Data::Bytes(b) => Ok(String::from_utf8_lossy(b).into_owned()),
            _ => bail!("no value"),
        }
    }

    /// Appends the binary-protocol encoding of the value (nothing for NULL or long data).
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<()> {
        if matches!(self.data, Data::Null | Data::Long) {
            return Ok(());
        }
        let int = || -> Result<i128> {
            let t = self.text()?;
            t.trim().parse::<i128>().map_err(|_| anyhow!("{t:?} is not an integer"))
        };
        match self.ty {
            ty::TINY => out.push(int()? as u8),
            ty::SHORT | ty::YEAR => out.extend_from_slice(&(int()? as u16).to_le_bytes()),
            ty::LONG | ty::INT24 => out.extend_from_slice(&(int()? as u32).to_le_bytes()),
            ty::LONGLONG => out.extend_from_slice(&(int()? as u64).to_le_bytes()),
            ty::FLOAT => out.extend_from_slice(&parse_float(&self.text()?)?.to_le_bytes()),
            ty::DOUBLE => out.extend_from_slice(&parse_double(&self.text()?)?.to_le_bytes()),
            ty::DATE | ty::DATETIME | ty::TIMESTAMP | ty::NEWDATE => encode_datetime(&self.text()?, out)?,
            ty::TIME => encode_time(&self.text()?, out)?,
            ty::NULL => {}
            _ => {
                let b = self.bytes().unwrap_or_default();
                sluice::protocol::packet::put_lenenc_bytes(out, &b);
            }
        }
        Ok(())
    }

    /// The value as an SQL literal, for running a parameterised statement over the text
    /// protocol.
    pub fn literal(&self) -> Result<String> {
        Ok(match &self.data {
            Data::Null => "NULL".into(),
            Data::Long => bail!("long data cannot be sent over the text protocol"),
            Data::Text(t) => match self.ty {
                ty::TINY | ty::SHORT | ty::LONG | ty::INT24 | ty::LONGLONG | ty::YEAR | ty::DECIMAL | ty::NEWDECIMAL => t.clone(),
                ty::FLOAT => format!("{:e}", parse_float(t)? as f64),
                ty::DOUBLE => format!("{:e}", parse_double(t)?),
                _ => quote(t.as_bytes()),
            },
            Data::Bytes(b) => {
                if std::str::from_utf8(b).is_ok() && !matches!(self.ty, ty::BIT | ty::GEOMETRY) {
                    quote(b)
                } else {
                    format!("X'{}'", to_hex(b))
                }
            }
        })
    }
}

fn parse_float(t: &str) -> Result<f32> {
    t.trim().parse::<f32>().map_err(|_| anyhow!("{t:?} is not a float"))
}

fn parse_double(t: &str) -> Result<f64> {
    t.trim().parse::<f64>().map_err(|_| anyhow!("{t:?} is not a double"))
}

/// `YYYY-MM-DD[ HH:MM:SS[.ffffff]]` as the binary protocol's length-prefixed date.
fn encode_datetime(t: &str, out: &mut Vec<u8>) -> Result<()> {
    let bad = || anyhow!("{t:?} is not YYYY-MM-DD[ HH:MM:SS[.ffffff]]");
    let (date, time) = t.trim().split_once([' ', 'T']).unwrap_or((t.trim(), ""));
    let d: Vec<u32> = date.split('-').map(|x| x.parse().map_err(|_| bad())).collect::<Result<_>>()?;
    if d.len() != 3 {
        return Err(bad());
    }
    let (hms, frac) = split_frac(time)?;
    let h: Vec<u32> = if hms.is_empty() { vec![0, 0, 0] } else { hms.split(':').map(|x| x.parse().map_err(|_| bad())).collect::<Result<_>>()? };
    if h.len() != 3 {
        return Err(bad());
    }
    let len: u8 = if frac != 0 { 11 } else if h.iter().any(|&x| x != 0) || !time.is_empty() { 7 } else if d.iter().any(|&x| x != 0) { 4 } else { 0 };
    out.push(len);
    if len >= 4 {
        out.extend_from_slice(&(d[0] as u16).to_le_bytes());
        out.push(d[1] as u8);
        out.push(d[2] as u8);
    }
    if len >= 7 {
        out.extend_from_slice(&[h[0] as u8, h[1] as u8, h[2] as u8]);
    }
    if len == 11 {
        out.extend_from_slice(&frac.to_le_bytes());
    }
    Ok(())
}

/// `[-][D ]HH:MM:SS[.ffffff]` (hours may exceed 23) as the binary protocol's time.
fn encode_time(t: &str, out: &mut Vec<u8>) -> Result<()> {
    let bad = || anyhow!("{t:?} is not [-][D ]HH:MM:SS[.ffffff]");
    let t = t.trim();
    let (neg, t) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t),
    };
    let (days, rest) = match t.split_once(' ') {
        Some((d, r)) => (d.parse::<u32>().map_err(|_| bad())?, r),
        None => (0, t),
    };
    let (hms, frac) = split_frac(rest)?;
    let h: Vec<u32> = hms.split(':').map(|x| x.parse().map_err(|_| bad())).collect::<Result<_>>()?;
    if h.len() != 3 {
        return Err(bad());
    }
    let days = days + h[0] / 24;
    let hours = h[0] % 24;
    let zero = days == 0 && hours == 0 && h[1] == 0 && h[2] == 0 && frac == 0;
    if zero {
        out.push(0);
        return Ok(());
    }
    out.push(if frac != 0 { 12 } else { 8 });
    out.push(neg as u8);
    out.extend_from_slice(&days.to_le_bytes());
    out.extend_from_slice(&[hours as u8, h[1] as u8, h[2] as u8]);
    if frac != 0 {
        out.extend_from_slice(&frac.to_le_bytes());
    }
    Ok(())
}

fn split_frac(s: &str) -> Result<(&str, u32)> {
    match s.split_once('.') {
        Some((a, f)) => {
            if f.len() > 6 || f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()) {
                bail!("bad fraction in {s:?}");
            }
            let micros = format!("{f:0<6}").parse::<u32>().expect("digits");
            Ok((a, micros))
        }
        None => Ok((s, 0)),
    }
}

/// An SQL string literal with backslash escapes.
pub fn quote(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() + 2);
    s.push('\'');
    for ch in String::from_utf8_lossy(b).chars() {
        match ch {
            '\'' => s.push_str("\\'"),
            '\\' => s.push_str("\\\\"),
            '\0' => s.push_str("\\0"),
            '\n' => s.push_str("\\n"),
            '\r' => s.push_str("\\r"),
            '\u{1a}' => s.push_str("\\Z"),
            c => s.push(c),
        }
    }
    s.push('\'');
    s
}

pub fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}

pub fn from_hex(h: &str) -> Result<Vec<u8>> {
    if !h.len().is_multiple_of(2) {
        bail!("odd number of hex digits in {h:?}");
    }
    (0..h.len()).step_by(2).map(|i| u8::from_str_radix(&h[i..i + 2], 16).map_err(|_| anyhow!("bad hex {h:?}"))).collect()
}

/// A `'...'` token with backslash escapes (`\n \t \r \0 \\ \' \xHH`) as bytes.
fn unquote(v: &str) -> Result<Vec<u8>> {
    let inner = v.strip_prefix('\'').and_then(|x| x.strip_suffix('\'')).ok_or_else(|| anyhow!("unterminated quote in {v:?}"))?;
    if !inner.contains('\\') {
        return Ok(inner.as_bytes().to_vec());
    }
    let mut out = Vec::with_capacity(inner.len());
    let b = inner.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() {
            i += 1;
            match b[i] {
                b'n' => out.push(b'\n'),
                b't' => out.push(b'\t'),
                b'r' => out.push(b'\r'),
                b'0' => out.push(0),
                b'x' if i + 2 < b.len() => {
                    out.push(u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3])?, 16)?);
                    i += 2;
                }
                c => out.push(c),
            }
        } else {
            out.push(b[i]);
        }
        i += 1;
    }
    Ok(out)
}

/// Splits a command's arguments at whitespace outside single quotes.
pub fn split_tokens(s: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_quote = false;
    let mut chars = s.chars().peekable();
    let mut started = false;
    while let Some(c) = chars.next() {
        if in_quote {
            cur.push(c);
            if c == '\\' {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            } else if c == '\'' {
                in_quote = false;
            }
        } else if c.is_whitespace() {
            if started {
                out.push(std::mem::take(&mut cur));
                started = false;
            }
        } else {
            started = true;
            if c == '\'' {
                in_quote = true;
            }
            cur.push(c);
        }
    }
    if in_quote {
        bail!("unterminated quote in {s:?}");
    }
    if started {
        out.push(cur);
    }
    Ok(out)
}

/// Expands `{{repeat:TEXT:COUNT}}` (TEXT repeated COUNT times; the last `:` separates).
pub fn expand_macros(s: &str) -> Result<String> {
    if !s.contains("{{") {
        return Ok(s.to_string());
    }
    let mut out = String::new();
    let mut rest = s;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or_else(|| anyhow!("unterminated {{{{ in {:?}", crate::case::short(s)))?;
        let body = &after[..end];
        let m = body.strip_prefix("repeat:").ok_or_else(|| anyhow!("unknown macro {{{{{body}}}}}"))?;
        let (text, count) = m.rsplit_once(':').ok_or_else(|| anyhow!("{{{{repeat:TEXT:COUNT}}}}"))?;
        let count: usize = count.parse().map_err(|_| anyhow!("bad repeat count {count:?}"))?;
        out.push_str(&text.replace("\\n", "\n").repeat(count));
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Replaces each `?` outside quotes and comments with the next parameter's literal.
pub fn interpolate(sql: &str, params: &[Value]) -> Result<String> {
    let mut out = String::with_capacity(sql.len() + 16 * params.len());
    let mut it = params.iter();
    let mut quote: Option<char> = None;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) => {
                out.push(c);
                if c == '\\' && q != '`' {
                    if let Some(n) = chars.next() {
                        out.push(n);
                    }
                } else if c == q {
                    quote = None;
                }
            }
            None => match c {
                '\'' | '"' | '`' => {
                    quote = Some(c);
                    out.push(c);
                }
                '?' => {
                    let v = it.next().ok_or_else(|| anyhow!("more ? placeholders than parameters"))?;
                    out.push_str(&v.literal()?);
                }
                _ => out.push(c),
            },
        }
    }
    if it.next().is_some() {
        bail!("more parameters than ? placeholders");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(t: &str) -> Vec<u8> {
        let mut out = vec![];
        Value::parse(t).unwrap().encode(&mut out).unwrap();
        out
    }

    #[test]
    fn encodes_every_kind_of_value() {
        assert_eq!(enc("tiny:-1"), vec![0xFF]);
        assert_eq!(enc("ulonglong:18446744073709551615"), vec![0xFF; 8]);
        assert_eq!(enc("short:-2"), vec![0xFE, 0xFF]);
        assert_eq!(enc("double:1.5"), 1.5f64.to_le_bytes().to_vec());
        assert_eq!(enc("date:2024-02-29"), vec![4, 0xE8, 0x07, 2, 29]);
        assert_eq!(enc("datetime:2024-02-29 01:02:03.5"), vec![11, 0xE8, 0x07, 2, 29, 1, 2, 3, 0x20, 0xA1, 0x07, 0]);
        assert_eq!(enc("datetime:0000-00-00"), vec![0]);
        assert_eq!(enc("time:-838:59:59"), vec![8, 1, 34, 0, 0, 0, 22, 59, 59]);
        assert_eq!(enc("string:'a\\'b'"), vec![3, b'a', b'\'', b'b']);
        assert_eq!(enc("blob:x'00FF'"), vec![2, 0, 0xFF]);
        assert_eq!(enc("long:NULL"), Vec::<u8>::new());
        assert!(Value::parse("ulong:5").unwrap().unsigned);
    }

    #[test]
    fn literals_and_interpolation() {
        let p = vec![Value::parse("long:5").unwrap(), Value::parse("string:'it\\'s'").unwrap(), Value::parse("null").unwrap()];
        assert_eq!(interpolate("SELECT ?, '?', ?, ?", &p).unwrap(), "SELECT 5, '?', 'it\\'s', NULL");
        assert_eq!(Value::parse("blob:x'00'").unwrap().literal().unwrap(), "'\\0'");
        assert_eq!(Value::parse("bit:x'05'").unwrap().literal().unwrap(), "X'05'");
        assert!(interpolate("SELECT ?", &[]).is_err());
    }

    #[test]
    fn tokens_and_macros() {
        assert_eq!(split_tokens("a 'b c' x'00'  d").unwrap(), vec!["a", "'b c'", "x'00'", "d"]);
        assert_eq!(expand_macros("x{{repeat:ab:3}}y").unwrap(), "xabababy");
    }
}
