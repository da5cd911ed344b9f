//! Normalisation rules written in the corpus (`@normalize RULE` for a whole case,
//! `!normalize RULE` after a statement for that statement only). They rewrite fields of
//! decoded packets on both sides before comparison; no rule can drop a packet.
//!
//! | rule | effect |
//! |---|---|
//! | `mask-column N` | the value of column N (1-based) in every row becomes `<masked>` (NULL stays NULL) |
//! | `regex 'PATTERN' 'REPLACEMENT'` | applied to ERR messages, OK info strings, every row value and undecoded packets (COM_STATISTICS) |
//! | `ignore-ok-field F` | F (`affected_rows`, `last_insert_id`, `status`, `warnings`, `info`, `session_state`) set to zero/empty in OK and EOF packets |
//! | `ignore-status-flags MASK` | those status bits cleared in OK and EOF packets (`0x0010`, or names joined by `|`) |
//! | `sort-rows` | rows of each result set sorted (for statements without a defined order) |

use anyhow::{anyhow, bail, Result};
use regex::bytes::Regex;

use crate::decode::{Decoded, Item};
use crate::value::split_tokens;

#[derive(Debug, Clone)]
pub enum Rule {
    MaskColumn(usize),
    Regex(Regex, Vec<u8>),
    IgnoreOkField(OkField),
    IgnoreStatusFlags(u16),
    SortRows,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OkField {
    AffectedRows,
    LastInsertId,
    Status,
    Warnings,
    Info,
    SessionState,
}

fn unquote(t: &str) -> Result<String> {
    let inner = t.strip_prefix('\'').and_then(|x| x.strip_suffix('\'')).ok_or_else(|| anyhow!("expected a '...' quoted argument, got {t}"))?;
    Ok(inner.replace("\\'", "'"))
}

fn status_flag(name: &str) -> Option<u16> {
    use sluice::protocol::constants::status::*;
    Some(match name.trim().to_ascii_uppercase().as_str() {
        "IN_TRANS" => IN_TRANS,
        "AUTOCOMMIT" => AUTOCOMMIT,
        "NO_GOOD_INDEX_USED" => NO_GOOD_INDEX_USED,
        "NO_INDEX_USED" => NO_INDEX_USED,
        "QUERY_WAS_SLOW" => QUERY_WAS_SLOW,
        "SESSION_STATE_CHANGED" => SESSION_STATE_CHANGED,
        "METADATA_CHANGED" => METADATA_CHANGED,
        _ => return None,
    })
}

impl Rule {
    pub fn parse(text: &str) -> Result<Rule> {
        let toks = split_tokens(text)?;
        let arg = |i: usize| toks.get(i).map(String::as_str).ok_or_else(|| anyhow!("rule {text:?} needs more arguments"));
        Ok(match arg(0)? {
            "mask-column" => {
                let n: usize = arg(1)?.parse().map_err(|_| anyhow!("mask-column takes a 1-based column number"))?;
                if n == 0 {
                    bail!("mask-column numbers start at 1");
                }
                Rule::MaskColumn(n)
            }
            "regex" => {
                let re = Regex::new(&unquote(arg(1)?)?)?;
                Rule::Regex(re, unquote(arg(2)?)?.into_bytes())
            }
            "ignore-ok-field" => Rule::IgnoreOkField(match arg(1)? {
                "affected_rows" => OkField::AffectedRows,
                "last_insert_id" => OkField::LastInsertId,
                "status" => OkField::Status,
                "warnings" => OkField::Warnings,
                "info" => OkField::Info,
                "session_state" => OkField::SessionState,
                other => bail!("unknown OK field {other}"),
            }),
            "ignore-status-flags" => {
                let a = arg(1)?;
                let mask = if let Some(h) = a.strip_prefix("0x") {
                    u16::from_str_radix(h, 16)?
                } else {
                    a.split('|').map(|n| status_flag(n).ok_or_else(|| anyhow!("unknown status flag {n}"))).collect::<Result<Vec<_>>>()?.into_iter().fold(0, |a, b| a | b)
                };
                Rule::IgnoreStatusFlags(mask)
            }
            "sort-rows" => Rule::SortRows,
            other => bail!("unknown normalisation rule {other:?}"),
        })
    }
}

fn rewrite(re: &Regex, rep: &[u8], b: &mut Vec<u8>) {
    if re.is_match(b) {
        *b = re.replace_all(b, rep).into_owned();
    }
}

/// Applies `rules` to decoded items in place.
pub fn apply(rules: &[&Rule], items: &mut [Item]) {
    for rule in rules {
        match rule {
            Rule::SortRows => sort_rows(items),
            _ => {
                for it in items.iter_mut() {
                    apply_one(rule, &mut it.decoded);
                }
            }
        }
    }
}

fn apply_one(rule: &Rule, d: &mut Decoded) {
    match (rule, d) {
        (Rule::MaskColumn(n), Decoded::Row { cells, .. }) => {
            if let Some(Some(c)) = cells.get_mut(n - 1) {
                *c = b"<masked>".to_vec();
            }
        }
        (Rule::Regex(re, rep), Decoded::Row { cells, .. }) => {
            for c in cells.iter_mut().flatten() {
                rewrite(re, rep, c);
            }
        }
        (Rule::Regex(re, rep), Decoded::Err { message, .. }) => rewrite(re, rep, message),
        (Rule::Regex(re, rep), Decoded::Ok(o)) => rewrite(re, rep, &mut o.info),
        (Rule::Regex(re, rep), Decoded::Raw(b)) => rewrite(re, rep, b),
        (Rule::IgnoreOkField(f), Decoded::Ok(o)) => match f {
            OkField::AffectedRows => o.affected_rows = 0,
            OkField::LastInsertId => o.last_insert_id = 0,
            OkField::Status => o.status = 0,
            OkField::Warnings => o.warnings = 0,
            OkField::Info => o.info.clear(),
            OkField::SessionState => o.session_state.clear(),
        },
        (Rule::IgnoreOkField(f), Decoded::Eof { warnings, status, .. }) => match f {
            OkField::Status => *status = 0,
            OkField::Warnings => *warnings = 0,
            _ => {}
        },
        (Rule::IgnoreStatusFlags(m), Decoded::Ok(o)) => o.status &= !m,
        (Rule::IgnoreStatusFlags(m), Decoded::Eof { status, .. }) => *status &= !m,
        _ => {}
    }
}

fn sort_rows(items: &mut [Item]) {
    let mut i = 0;
    while i < items.len() {
        if !matches!(items[i].decoded, Decoded::Row { .. }) {
            i += 1;
            continue;
        }
        let start = i;
        while i < items.len() && matches!(items[i].decoded, Decoded::Row { .. }) {
            i += 1;
        }
        let mut rows: Vec<Decoded> = items[start..i].iter().map(|it| it.decoded.clone()).collect();
        rows.sort_by(|a, b| match (a, b) {
            (Decoded::Row { cells: x, .. }, Decoded::Row { cells: y, .. }) => x.cmp(y),
            _ => std::cmp::Ordering::Equal,
        });
        for (it, d) in items[start..i].iter_mut().zip(rows) {
            it.decoded = d;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rules() {
        assert!(matches!(Rule::parse("mask-column 2").unwrap(), Rule::MaskColumn(2)));
        assert!(matches!(Rule::parse("regex 'id \\d+' 'id N'").unwrap(), Rule::Regex(..)));
        assert!(matches!(Rule::parse("ignore-ok-field last_insert_id").unwrap(), Rule::IgnoreOkField(OkField::LastInsertId)));
        assert!(matches!(Rule::parse("ignore-status-flags NO_INDEX_USED|NO_GOOD_INDEX_USED").unwrap(), Rule::IgnoreStatusFlags(0x30)));
        assert!(Rule::parse("drop-packet").is_err());
        assert!(Rule::parse("mask-column 0").is_err());
    }
}
