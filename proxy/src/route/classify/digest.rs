//! Statement digests: the text of a statement with its literals replaced by `?`, lists of
//! literals folded to `(...)`, comments dropped and whitespace normalised, so that every
//! execution of one query shape counts under one digest (`SHOW SLUICE QUERY DIGESTS`,
//! the slow log, query rules matching on a digest).
//!
//! Uses the classifier's lexer (`scan`), so strings, quoted identifiers, comments and
//! `/*! … */` version comments are told apart exactly as for routing. Identifiers and
//! keywords keep their spelling (table names are case-sensitive on most servers).

use super::scan::{hash_key, Lexer, Mode, T};

/// Longest digest text kept; a longer one ends with `…` (its hash still covers every
/// token).
pub const MAX_DIGEST_LEN: usize = 1024;

/// Whether a `(` written after `full` opens a list that folds: after `IN`, `VALUES`,
/// `VALUE`, or after a folded row and a comma.
fn list_follows(full: &[u8]) -> bool {
    let t = full.trim_ascii_end();
    if t.ends_with(b"(...),") {
        return true;
    }
    let word_start = t.iter().rposition(|b| !(b.is_ascii_alphanumeric() || *b == b'_')).map_or(0, |p| p + 1);
    let word = &t[word_start..];
    [&b"in"[..], b"values", b"value"].iter().any(|k| word.eq_ignore_ascii_case(k))
}

/// Writes the digest text of `sql` to `out` (cleared first) and returns its 64-bit hash
/// (of the full normalised text, also past [`MAX_DIGEST_LEN`]).
pub fn digest(sql: &[u8], out: &mut String) -> u64 {
    out.clear();
    let mut full: Vec<u8> = Vec::with_capacity(sql.len().min(4096));
    let mut lx = Lexer::new(sql, Mode::DEFAULT);
    // Where the current parenthesised group started in `full` and whether it has held
    // only literals and commas so far (a list to fold).
    let mut groups: Vec<(usize, bool)> = Vec::new();
    let mut prev: Option<(T, u32)> = None;
    while let Some(tok) = lx.next_tok() {
        let text = &sql[tok.start as usize..tok.end as usize];
        let piece: &[u8] = match tok.t {
            T::Str | T::DqStr | T::Num => b"?",
            _ => text,
        };
        let literal = matches!(tok.t, T::Str | T::DqStr | T::Num);
        match tok.t {
            T::Punct(b'(') => {
                space_before(&mut full, prev, &tok.t, tok.start);
                // Only lists after IN and VALUES fold; a function's literal arguments
                // (`SLEEP(?)`) stay.
                groups.push((full.len(), list_follows(&full)));
                full.push(b'(');
            }
            T::Punct(b')') => {
                full.push(b')');
                if let Some((start, only_literals)) = groups.pop() {
                    if only_literals && full.len() > start + 2 {
                        full.truncate(start);
                        // `VALUES (...), (...)`: consecutive folded rows become one.
                        if full.ends_with(b"(...),") {
                            full.truncate(full.len() - 1);
                        } else if full.ends_with(b"(...), ") {
                            full.truncate(full.len() - 2);
                        } else {
                            full.extend_from_slice(b"(...)");
                        }
                    }
                }
                if let Some(g) = groups.last_mut() {
                    g.1 = false;
                }
            }
            _ => {
                if let Some(g) = groups.last_mut() {
                    if !(literal || tok.is_punct(b',') || (tok.is_punct(b'-') && g.1)) {
                        g.1 = false;
                    }
                }
                space_before(&mut full, prev, &tok.t, tok.start);
                full.extend_from_slice(piece);
            }
        }
        prev = Some((tok.t, tok.end));
    }
    // Keywords and identifiers in any case are one digest.
    let hash = hash_key(&full.to_ascii_lowercase());
    let text = String::from_utf8_lossy(&full);
    if text.len() > MAX_DIGEST_LEN {
        let mut cut = MAX_DIGEST_LEN;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        out.push_str(&text[..cut]);
        out.push('…');
    } else {
        out.push_str(&text);
    }
    hash
}

/// One space between tokens, except after `(` and `.`, before `)`, `,`, `.`, `;`, and
/// inside operators written without spaces (`<=`, `!=`).
fn space_before(out: &mut Vec<u8>, prev: Option<(T, u32)>, t: &T, start: u32) {
    let Some((p, end)) = prev else { return };
    let no_space = matches!(p, T::Punct(b'(' | b'.' | b'@'))
        || matches!(t, T::Punct(b')' | b',' | b'.' | b';'))
        || (matches!(t, T::Punct(b'(')) && end == start && matches!(p, T::Word | T::Quoted))
        || (end == start && matches!((p, t), (T::Punct(a), T::Punct(b)) if is_op(a) && is_op(*b)));
    if !no_space {
        out.push(b' ');
    }
}

fn is_op(c: u8) -> bool {
    matches!(c, b'<' | b'>' | b'=' | b'!' | b':' | b'|' | b'&')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(sql: &str) -> (String, u64) {
        let mut out = String::new();
        let h = digest(sql.as_bytes(), &mut out);
        (out, h)
    }

    #[test]
    fn literals_become_placeholders_and_comments_and_spacing_do_not_matter() {
        let (a, ha) = d("SELECT c FROM sbtest1 WHERE id = 42 AND k='x'");
        let (b, hb) = d("SELECT  c FROM sbtest1 /* hi */ WHERE id=7 AND k = \"yy\"");
        assert_eq!(a, "SELECT c FROM sbtest1 WHERE id = ? AND k = ?");
        assert_eq!(a, b);
        assert_eq!(ha, hb);
    }

    #[test]
    fn in_lists_of_any_length_fold_to_one_digest() {
        let (a, ha) = d("select * from t where id in (1, 2, 3)");
        let (b, hb) = d("select * from t where id in (4)");
        let (c, hc) = d("select * from t where id in (1,2,3,4,5,6,7,8,9,-10, 'a')");
        assert_eq!(a, "select * from t where id in (...)");
        assert_eq!((a.as_str(), ha), (b.as_str(), hb));
        assert_eq!((a.as_str(), ha), (c.as_str(), hc));
    }

    #[test]
    fn function_arguments_keep_their_placeholders() {
        let (a, ha) = d("SELECT SLEEP(30), CONCAT('a', 'b') FROM t WHERE id IN (1)");
        assert_eq!(a, "SELECT SLEEP(?), CONCAT(?, ?) FROM t WHERE id IN (...)");
        let (_, hb) = d("select sleep(1), concat('x', 'y') from t where id in (2, 3)");
        assert_eq!(ha, hb);
    }

    #[test]
    fn multi_row_values_fold_to_one_row() {
        let (a, ha) = d("INSERT INTO t (a, b) VALUES (1, 'x'), (2, 'y'), (3, 'z')");
        let (b, hb) = d("INSERT INTO t (a, b) VALUES (1, 'x')");
        assert_eq!(a, "INSERT INTO t (a, b) VALUES (...)");
        assert_eq!((a, ha), (b, hb));
    }

    #[test]
    fn function_calls_and_identifiers_keep_their_shape() {
        let (a, _) = d("SELECT COUNT(*), `weird name`.x FROM db.t WHERE a<=1 AND b != 2 AND @v := 3");
        assert_eq!(a, "SELECT COUNT(*), `weird name`.x FROM db.t WHERE a <= ? AND b != ? AND @v := ?");
        // A parenthesised expression with a column in it is not a literal list.
        let (b, _) = d("SELECT (a + 1) FROM t");
        assert_eq!(b, "SELECT (a + ?) FROM t");
    }

    #[test]
    fn different_statements_have_different_digests() {
        assert_ne!(d("SELECT a FROM t WHERE id = 1").1, d("SELECT b FROM t WHERE id = 1").1);
        assert_ne!(d("SELECT a FROM t").1, d("SELECT a FROM u").1);
    }

    #[test]
    fn keywords_inside_strings_and_comments_are_not_tokens() {
        let (a, _) = d("SELECT 'DELETE FROM t' -- trailing\n FROM dual");
        assert_eq!(a, "SELECT ? FROM dual");
    }

    #[test]
    fn long_statements_are_cut_but_hashed_whole() {
        let long_a = format!("SELECT {} FROM t", (0..400).map(|i| format!("c{i}")).collect::<Vec<_>>().join(", "));
        let long_b = format!("SELECT {} FROM u", (0..400).map(|i| format!("c{i}")).collect::<Vec<_>>().join(", "));
        let (a, ha) = d(&long_a);
        let (b, hb) = d(&long_b);
        assert!(a.ends_with('…') && a.len() <= MAX_DIGEST_LEN + 3);
        assert_eq!(a, b);
        assert_ne!(ha, hb);
    }

    #[test]
    fn any_bytes_give_a_digest_without_panicking() {
        for s in [&b"\xff\xfe'"[..], b"(((", b")))", b"'unterminated", b"/*! 50000 SELECT 1", b"", b"@", b"`"] {
            let mut out = String::new();
            digest(s, &mut out);
        }
    }
}
