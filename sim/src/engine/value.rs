//! SQL values and the comparison / conversion rules the engine uses.
//!
//! Owns [`Value`] (the dynamically typed cell value that flows through the
//! engine, result sets and binlog row images), MySQL-ish comparison
//! ([`sql_cmp`]), string→number coercion, `LIKE` matching and the simulated
//! clock's `DATETIME` formatting.
//!
//! Collation model (documented simplification): all string comparisons are
//! ASCII-case-insensitive (like the default `*_ci` collations) and ignore no
//! padding; binary strings are not distinguished from text when comparing.

use std::cmp::Ordering;
use std::fmt;

/// A single SQL value.
///
/// Text and binary strings are both [`Value::Bytes`] (the engine is UTF-8
/// throughout; the wire layer sends the bytes as-is).
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    UInt(u64),
    Double(f64),
    Bytes(Vec<u8>),
}

impl Value {
    /// A text value.
    pub fn str(s: impl AsRef<str>) -> Value {
        Value::Bytes(s.as_ref().as_bytes().to_vec())
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    pub fn is_numeric(&self) -> bool {
        matches!(self, Value::Int(_) | Value::UInt(_) | Value::Double(_))
    }

    /// The value as text, `None` for NULL. This is exactly what the text
    /// protocol sends for the cell.
    pub fn to_text(&self) -> Option<Vec<u8>> {
        match self {
            Value::Null => None,
            Value::Bytes(b) => Some(b.clone()),
            other => Some(other.to_string().into_bytes()),
        }
    }

    /// The value as a (lossy UTF-8) string, `None` for NULL.
    pub fn as_string(&self) -> Option<String> {
        match self {
            Value::Null => None,
            Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
            other => Some(other.to_string()),
        }
    }

    /// Numeric view as f64 (strings are parsed by their numeric prefix like
    /// MySQL does, `'12abc'` → 12, `'abc'` → 0). `None` for NULL.
    pub fn to_f64(&self) -> Option<f64> {
        match self {
            Value::Null => None,
            Value::Int(i) => Some(*i as f64),
            Value::UInt(u) => Some(*u as f64),
            Value::Double(d) => Some(*d),
            Value::Bytes(b) => Some(parse_num_prefix(b)),
        }
    }

    /// Integer view (doubles round half away from zero, strings by prefix).
    pub fn to_i128(&self) -> Option<i128> {
        match self {
            Value::Null => None,
            Value::Int(i) => Some(*i as i128),
            Value::UInt(u) => Some(*u as i128),
            Value::Double(d) => Some(d.round() as i128),
            Value::Bytes(b) => {
                let s = std::str::from_utf8(b).unwrap_or("").trim();
                if let Ok(i) = s.parse::<i128>() {
                    Some(i)
                } else {
                    Some(parse_num_prefix(b).round() as i128)
                }
            }
        }
    }

    pub fn to_i64(&self) -> Option<i64> {
        self.to_i128()
            .map(|v| v.clamp(i64::MIN as i128, i64::MAX as i128) as i64)
    }

    /// SQL truthiness: NULL → None, numbers → != 0, strings → numeric prefix != 0.
    pub fn truthy(&self) -> Option<bool> {
        match self {
            Value::Null => None,
            Value::Int(i) => Some(*i != 0),
            Value::UInt(u) => Some(*u != 0),
            Value::Double(d) => Some(*d != 0.0),
            Value::Bytes(b) => Some(parse_num_prefix(b) != 0.0),
        }
    }

    /// Build an integer value from an i128, preferring `Int` and falling back
    /// to `UInt` for large positive values. `None` when out of 64-bit range.
    pub fn from_i128(v: i128) -> Option<Value> {
        if v >= i64::MIN as i128 && v <= i64::MAX as i128 {
            Some(Value::Int(v as i64))
        } else if v >= 0 && v <= u64::MAX as i128 {
            Some(Value::UInt(v as u64))
        } else {
            None
        }
    }

    /// Rough size in bytes, used to estimate binlog positions.
    pub fn approx_size(&self) -> usize {
        match self {
            Value::Null => 1,
            Value::Int(_) | Value::UInt(_) | Value::Double(_) => 8,
            Value::Bytes(b) => b.len() + 2,
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("NULL"),
            Value::Int(i) => write!(f, "{i}"),
            Value::UInt(u) => write!(f, "{u}"),
            Value::Double(d) => f.write_str(&format_double(*d)),
            Value::Bytes(b) => f.write_str(&String::from_utf8_lossy(b)),
        }
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}
impl From<u64> for Value {
    fn from(v: u64) -> Self {
        Value::UInt(v)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::str(v)
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Bytes(v.into_bytes())
    }
}

/// Format a double the way the server's text protocol does for simple cases
/// (`3` not `3.0`, `0.5`, `1e20`).
pub fn format_double(d: f64) -> String {
    if d.is_nan() {
        return "NaN".into();
    }
    if d.is_infinite() {
        return if d > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if d == d.trunc() && d.abs() < 1e15 {
        return format!("{}", d as i64);
    }
    let abs = d.abs();
    if !(1e-5..1e15).contains(&abs) {
        // %g style exponent
        let s = format!("{:e}", d);
        return s;
    }
    let s = format!("{}", d);
    s
}

/// Parse the numeric prefix of a string like MySQL's implicit conversion.
pub fn parse_num_prefix(b: &[u8]) -> f64 {
    let s = std::str::from_utf8(b).unwrap_or("");
    let s = s.trim_start();
    let bytes = s.as_bytes();
    let mut end = 0;
    let mut seen_digit = false;
    if end < bytes.len() && (bytes[end] == b'-' || bytes[end] == b'+') {
        end += 1;
    }
    while end < bytes.len() && bytes[end].is_ascii_digit() {
        end += 1;
        seen_digit = true;
    }
    if end < bytes.len() && bytes[end] == b'.' {
        end += 1;
        while end < bytes.len() && bytes[end].is_ascii_digit() {
            end += 1;
            seen_digit = true;
        }
    }
    if seen_digit && end < bytes.len() && (bytes[end] == b'e' || bytes[end] == b'E') {
        let mut e = end + 1;
        if e < bytes.len() && (bytes[e] == b'-' || bytes[e] == b'+') {
            e += 1;
        }
        let digits_start = e;
        while e < bytes.len() && bytes[e].is_ascii_digit() {
            e += 1;
        }
        if e > digits_start {
            end = e;
        }
    }
    if !seen_digit {
        return 0.0;
    }
    s[..end].parse::<f64>().unwrap_or(0.0)
}

/// True when the whole string (trimmed) is a valid number.
pub fn is_full_number(b: &[u8]) -> bool {
    let s = std::str::from_utf8(b).unwrap_or("").trim();
    !s.is_empty() && s.parse::<f64>().is_ok() && !s.contains(['i', 'I', 'n', 'N'])
}

/// ASCII case-insensitive comparison (the engine's collation model).
pub fn ci_cmp(a: &[u8], b: &[u8]) -> Ordering {
    let n = a.len().min(b.len());
    for i in 0..n {
        let x = a[i].to_ascii_lowercase();
        let y = b[i].to_ascii_lowercase();
        match x.cmp(&y) {
            Ordering::Equal => {}
            o => return o,
        }
    }
    a.len().cmp(&b.len())
}

/// Compare two values with SQL semantics. `None` if either side is NULL.
///
/// * integer vs integer: exact integer comparison;
/// * string vs string: ASCII-case-insensitive;
/// * anything else: as doubles (strings by numeric prefix).
pub fn sql_cmp(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Null, _) | (_, Value::Null) => None,
        (Value::Bytes(x), Value::Bytes(y)) => Some(ci_cmp(x, y)),
        (Value::Int(_) | Value::UInt(_), Value::Int(_) | Value::UInt(_)) => {
            Some(a.to_i128().unwrap().cmp(&b.to_i128().unwrap()))
        }
        _ => {
            let x = a.to_f64().unwrap();
            let y = b.to_f64().unwrap();
            x.partial_cmp(&y)
        }
    }
}

/// Total order used for ORDER BY: NULLs first, then [`sql_cmp`].
pub fn order_cmp(a: &Value, b: &Value) -> Ordering {
    match (a.is_null(), b.is_null()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        _ => sql_cmp(a, b).unwrap_or(Ordering::Equal),
    }
}

/// SQL `LIKE` matching with `%` and `_` wildcards and `\` escapes,
/// case-insensitive.
pub fn like_match(text: &[u8], pattern: &[u8]) -> bool {
    fn rec(t: &[u8], p: &[u8]) -> bool {
        if p.is_empty() {
            return t.is_empty();
        }
        match p[0] {
            b'%' => {
                let rest = &p[1..];
                (0..=t.len()).any(|i| rec(&t[i..], rest))
            }
            b'_' => !t.is_empty() && rec(&t[1..], &p[1..]),
            b'\\' if p.len() > 1 => {
                !t.is_empty() && t[0].eq_ignore_ascii_case(&p[1]) && rec(&t[1..], &p[2..])
            }
            c => !t.is_empty() && t[0].eq_ignore_ascii_case(&c) && rec(&t[1..], &p[1..]),
        }
    }
    rec(text, pattern)
}

/// Format `epoch_unix_ms + sim_ms` as `YYYY-MM-DD HH:MM:SS` (UTC).
pub fn format_datetime(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        y,
        m,
        d,
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_compare_exactly_across_signedness() {
        assert_eq!(
            sql_cmp(&Value::Int(-1), &Value::UInt(u64::MAX)),
            Some(Ordering::Less)
        );
        assert_eq!(
            sql_cmp(&Value::Int(5), &Value::UInt(5)),
            Some(Ordering::Equal)
        );
    }

    #[test]
    fn strings_compare_case_insensitively_and_null_is_unknown() {
        assert_eq!(
            sql_cmp(&Value::str("Abc"), &Value::str("aBC")),
            Some(Ordering::Equal)
        );
        assert_eq!(sql_cmp(&Value::Null, &Value::Int(1)), None);
    }

    #[test]
    fn string_to_number_uses_numeric_prefix() {
        assert_eq!(Value::str("12abc").to_f64(), Some(12.0));
        assert_eq!(Value::str("abc").to_f64(), Some(0.0));
        assert_eq!(
            sql_cmp(&Value::str("10"), &Value::Int(9)),
            Some(Ordering::Greater)
        );
    }

    #[test]
    fn like_supports_percent_underscore_and_escape() {
        assert!(like_match(b"read_only", b"read%"));
        assert!(like_match(b"read_only", b"READ\\_ONLY"));
        assert!(!like_match(b"readXonly", b"read\\_only"));
        assert!(like_match(b"abc", b"a_c"));
        assert!(!like_match(b"abcd", b"a_c"));
    }

    #[test]
    fn doubles_format_like_the_text_protocol() {
        assert_eq!(Value::Double(3.0).to_string(), "3");
        assert_eq!(Value::Double(0.5).to_string(), "0.5");
    }

    #[test]
    fn datetime_formatting_from_simulated_clock() {
        assert_eq!(format_datetime(0), "1970-01-01 00:00:00");
        assert_eq!(format_datetime(1_700_000_000_000), "2023-11-14 22:13:20");
        assert_eq!(format_datetime(951_782_400_000), "2000-02-29 00:00:00");
    }
}
