//! Name tables of the classifier: MySQL/MariaDB built-in functions
//! (<https://dev.mysql.com/doc/refman/8.4/en/built-in-function-reference.html>,
//! <https://mariadb.com/kb/en/built-in-functions/>), the functions and system variables
//! whose answer belongs to one connection or one node, and the reserved words that may
//! stand before `(` without being a function call.
//!
//! A name missing from [`BUILTINS`] is taken for a stored function, which sends the
//! statement to the primary: the tables only ever need to grow to let more reads go to
//! replicas, never to be correct.

use crate::route::class::Bound;

/// Built-in functions that read nothing but their arguments, the data, and session state
/// Sluice replays on every node, and that both MySQL 8 and MariaDB have: a name that is a
/// built-in on one server only (`NVL`, `MEDIAN`, `JSON_DETAILED`, `ANY_VALUE`, …) may
/// name a stored function on the other, so it is left out. Kept sorted (checked by a
/// test); looked up through [`BUILTIN_INDEX`].
pub(crate) const BUILTINS: &[&str] = &[
    "abs",
    "acos",
    "adddate",
    "addtime",
    "aes_decrypt",
    "aes_encrypt",
    "ascii",
    "asin",
    "atan",
    "atan2",
    "avg",
    "benchmark",
    "bin",
    "bit_and",
    "bit_count",
    "bit_length",
    "bit_or",
    "bit_xor",
    "cast",
    "ceil",
    "ceiling",
    "char_length",
    "character_length",
    "charset",
    "coalesce",
    "coercibility",
    "collation",
    "compress",
    "concat",
    "concat_ws",
    "conv",
    "convert_tz",
    "cos",
    "cot",
    "count",
    "crc32",
    "cume_dist",
    "curdate",
    "current_role",
    "curtime",
    "date",
    "date_add",
    "date_format",
    "date_sub",
    "datediff",
    "day",
    "dayname",
    "dayofmonth",
    "dayofweek",
    "dayofyear",
    "degrees",
    "dense_rank",
    "elt",
    "exp",
    "export_set",
    "extract",
    "extractvalue",
    "field",
    "find_in_set",
    "first_value",
    "floor",
    "format",
    "from_base64",
    "from_days",
    "from_unixtime",
    "geometrycollection",
    "get_format",
    "greatest",
    "group_concat",
    "hex",
    "hour",
    "ifnull",
    "inet6_aton",
    "inet6_ntoa",
    "inet_aton",
    "inet_ntoa",
    "instr",
    "is_ipv4",
    "is_ipv4_compat",
    "is_ipv4_mapped",
    "is_ipv6",
    "isnull",
    "json_array",
    "json_array_append",
    "json_array_insert",
    "json_arrayagg",
    "json_contains",
    "json_contains_path",
    "json_depth",
    "json_extract",
    "json_insert",
    "json_keys",
    "json_length",
    "json_merge",
    "json_merge_patch",
    "json_merge_preserve",
    "json_object",
    "json_objectagg",
    "json_overlaps",
    "json_quote",
    "json_remove",
    "json_replace",
    "json_search",
    "json_set",
    "json_table",
    "json_type",
    "json_unquote",
    "json_valid",
    "json_value",
    "lag",
    "last_day",
    "last_value",
    "lcase",
    "lead",
    "least",
    "length",
    "linestring",
    "ln",
    "locate",
    "log",
    "log10",
    "log2",
    "lower",
    "lpad",
    "ltrim",
    "make_set",
    "makedate",
    "maketime",
    "max",
    "mbrcontains",
    "mbrdisjoint",
    "mbrequals",
    "mbrintersects",
    "mbroverlaps",
    "mbrtouches",
    "mbrwithin",
    "md5",
    "microsecond",
    "mid",
    "min",
    "minute",
    "month",
    "monthname",
    "multilinestring",
    "multipoint",
    "multipolygon",
    "name_const",
    "now",
    "nth_value",
    "ntile",
    "nullif",
    "oct",
    "octet_length",
    "ord",
    "percent_rank",
    "period_add",
    "period_diff",
    "pi",
    "point",
    "polygon",
    "position",
    "pow",
    "power",
    "quarter",
    "quote",
    "radians",
    "rand",
    "random_bytes",
    "rank",
    "regexp_instr",
    "regexp_replace",
    "regexp_substr",
    "reverse",
    "round",
    "row_number",
    "rpad",
    "rtrim",
    "sec_to_time",
    "second",
    "session_user",
    "sha",
    "sha1",
    "sha2",
    "sign",
    "sin",
    "sleep",
    "soundex",
    "space",
    "sqrt",
    "st_area",
    "st_asbinary",
    "st_asgeojson",
    "st_astext",
    "st_aswkb",
    "st_aswkt",
    "st_buffer",
    "st_centroid",
    "st_contains",
    "st_convexhull",
    "st_crosses",
    "st_difference",
    "st_dimension",
    "st_disjoint",
    "st_distance",
    "st_distance_sphere",
    "st_endpoint",
    "st_envelope",
    "st_equals",
    "st_exteriorring",
    "st_geomcollfromtext",
    "st_geomcollfromwkb",
    "st_geometryfromtext",
    "st_geometryn",
    "st_geometrytype",
    "st_geomfromgeojson",
    "st_geomfromtext",
    "st_geomfromwkb",
    "st_interiorringn",
    "st_intersection",
    "st_intersects",
    "st_isclosed",
    "st_isempty",
    "st_issimple",
    "st_length",
    "st_linefromtext",
    "st_linefromwkb",
    "st_numgeometries",
    "st_numinteriorrings",
    "st_numpoints",
    "st_overlaps",
    "st_pointfromtext",
    "st_pointfromwkb",
    "st_pointn",
    "st_polyfromtext",
    "st_polyfromwkb",
    "st_relate",
    "st_srid",
    "st_startpoint",
    "st_symdifference",
    "st_touches",
    "st_union",
    "st_within",
    "st_x",
    "st_y",
    "std",
    "stddev",
    "stddev_pop",
    "stddev_samp",
    "str_to_date",
    "strcmp",
    "subdate",
    "substr",
    "substring",
    "substring_index",
    "subtime",
    "sum",
    "sysdate",
    "system_user",
    "tan",
    "time",
    "time_format",
    "time_to_sec",
    "timediff",
    "timestamp",
    "timestampadd",
    "timestampdiff",
    "to_base64",
    "to_days",
    "to_seconds",
    "trim",
    "truncate",
    "ucase",
    "uncompress",
    "uncompressed_length",
    "unhex",
    "unix_timestamp",
    "updatexml",
    "upper",
    "user",
    "uuid",
    "uuid_short",
    "var_pop",
    "var_samp",
    "variance",
    "version",
    "week",
    "weekday",
    "weekofyear",
    "weight_string",
    "year",
    "yearweek",
];

/// Reserved words that may be followed by `(` in a query without that being a call of a
/// stored function (reserved words cannot name stored functions unquoted). Several are
/// built-in functions too (`IF`, `LEFT`, `INSERT`, …); being reserved, they are
/// built-ins even with a space before the parenthesis. Sorted; looked up through
/// [`PAREN_KEYWORD_INDEX`].
pub(crate) const PAREN_KEYWORDS: &[&str] = &[
    "all",
    "and",
    "any",
    "as",
    "between",
    "bigint",
    "binary",
    "by",
    "case",
    "char",
    "convert",
    "current_date",
    "current_time",
    "current_timestamp",
    "current_user",
    "database",
    "dec",
    "decimal",
    "default",
    "distinct",
    "distinctrow",
    "div",
    "double",
    "else",
    "escape",
    "except",
    "exists",
    "float",
    "from",
    "having",
    "if",
    "in",
    "index",
    "insert",
    "int",
    "integer",
    "intersect",
    "interval",
    "is",
    "join",
    "key",
    "lateral",
    "left",
    "like",
    "localtime",
    "localtimestamp",
    "match",
    "mediumint",
    "minus",
    "mod",
    "not",
    "numeric",
    "on",
    "or",
    "over",
    "partition",
    "real",
    "regexp",
    "repeat",
    "replace",
    "right",
    "rlike",
    "row",
    "schema",
    "select",
    "smallint",
    "some",
    "straight_join",
    "then",
    "tinyint",
    "union",
    "using",
    "utc_date",
    "utc_time",
    "utc_timestamp",
    "values",
    "varbinary",
    "varchar",
    "when",
    "where",
    "xor",
];

/// Functions that tell about the previous statement on the connection (`ROW_COUNT()`,
/// `FOUND_ROWS()`): the statement runs where the previous one ran, like `SHOW WARNINGS`.
pub(crate) fn previous_statement_function(name: &[u8]) -> bool {
    matches!(name, b"row_count" | b"found_rows")
}

/// Functions whose answer is the connection's or the node's own: the statement must run
/// on the primary's connection.
pub(crate) fn session_function(name: &[u8]) -> Option<Bound> {
    Some(match name {
        b"last_insert_id" => Bound::LastInsertId,
        b"get_lock" | b"release_lock" | b"release_all_locks" | b"is_free_lock" | b"is_used_lock" => Bound::UserLock,
        b"nextval" | b"lastval" | b"setval" => Bound::Sequence,
        b"connection_id" | b"ps_current_thread_id" | b"ps_thread_id" => Bound::Connection,
        // Node-specific: replication positions and waits, files on the server's host.
        b"master_pos_wait"
        | b"source_pos_wait"
        | b"master_gtid_wait"
        | b"wait_for_executed_gtid_set"
        | b"wait_until_sql_thread_after_gtids"
        | b"load_file"
        | b"wsrep_last_seen_gtid"
        | b"wsrep_last_written_gtid"
        | b"wsrep_sync_wait_upto_gtid" => Bound::Other,
        _ => return None,
    })
}

/// Whether `schema.table` holds the node's or the connection's own state (the process
/// list, status counters, replication positions, lock and transaction lists) rather than
/// replicated data. `schema` and `table` lower-cased; `table` empty when unknown.
pub(crate) fn node_specific_table(schema: &[u8], table: &[u8]) -> bool {
    match schema {
        b"performance_schema" | b"sys" => true,
        b"information_schema" => {
            table.starts_with(b"innodb_")
                || table.starts_with(b"thread_pool")
                || matches!(
                    table,
                    b"processlist"
                        | b"session_status"
                        | b"global_status"
                        | b"metadata_lock_info"
                        | b"user_statistics"
                        | b"client_statistics"
                        | b"index_statistics"
                        | b"table_statistics"
                        | b"query_response_time"
                        | b"locks"
                )
        }
        b"mysql" => {
            table.starts_with(b"gtid_")
                || table.starts_with(b"slave_")
                || matches!(table, b"replication_asynchronous_connection_failover" | b"general_log" | b"slow_log")
        }
        _ => false,
    }
}

/// What reading a system variable means for routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SysVarClass {
    /// An ordinary variable: same on every node once session `SET`s are replayed.
    Plain,
    /// Session-bound (`@@last_insert_id`, `@@pseudo_thread_id`, node identity, …).
    Bound(Bound),
    /// `@@warning_count`, `@@error_count`.
    Diagnostics,
}

pub(crate) fn sysvar_class(name: &[u8]) -> SysVarClass {
    match name {
        b"last_insert_id" | b"identity" | b"insert_id" | b"last_gtid" => SysVarClass::Bound(Bound::LastInsertId),
        b"warning_count" | b"error_count" => SysVarClass::Diagnostics,
        b"pseudo_thread_id" => SysVarClass::Bound(Bound::Connection),
        // Node identity (`@@server_id`, `@@hostname`, `@@read_only`, …) is a plain read:
        // it describes the node that answers, which is what a client asking through a
        // proxy gets (and how tests see where a read went). Replication positions are
        // read on the primary: applications read them to make consistency tokens.
        b"gtid_executed" | b"gtid_purged" | b"gtid_owned" | b"gtid_current_pos" | b"gtid_binlog_pos"
        | b"gtid_binlog_state" | b"gtid_slave_pos" => SysVarClass::Bound(Bound::Other),
        _ => SysVarClass::Plain,
    }
}

/// Lower-cases `name` into `buf` (names longer than `buf` are never in a table).
#[inline]
pub(crate) fn lower<'b>(name: &[u8], buf: &'b mut [u8; 48]) -> Option<&'b [u8]> {
    if name.len() > buf.len() {
        return None;
    }
    for (d, s) in buf.iter_mut().zip(name) {
        *d = s.to_ascii_lowercase();
    }
    Some(&buf[..name.len()])
}

/// An open-addressing hash index over a name table, built at compile time.
pub(crate) struct NameIndex {
    names: &'static [&'static str],
    /// Slot → index into `names` + 1 (0: empty).
    slots: [u16; INDEX_SLOTS],
}

const INDEX_SLOTS: usize = 1024;

const fn name_hash(name: &[u8]) -> usize {
    // FNV-1a
    let mut h: u32 = 0x811c_9dc5;
    let mut i = 0;
    while i < name.len() {
        h ^= name[i] as u32;
        h = h.wrapping_mul(0x0100_0193);
        i += 1;
    }
    h as usize
}

impl NameIndex {
    pub(crate) const fn new(names: &'static [&'static str]) -> NameIndex {
        assert!(names.len() < INDEX_SLOTS / 2);
        let mut slots = [0u16; INDEX_SLOTS];
        let mut n = 0;
        while n < names.len() {
            let mut slot = name_hash(names[n].as_bytes()) % INDEX_SLOTS;
            while slots[slot] != 0 {
                slot = (slot + 1) % INDEX_SLOTS;
            }
            slots[slot] = n as u16 + 1;
            n += 1;
        }
        NameIndex { names, slots }
    }

    /// Whether the table holds `lower_name` (already lower-case).
    #[inline]
    pub(crate) fn contains(&self, lower_name: &[u8]) -> bool {
        let mut slot = name_hash(lower_name) % INDEX_SLOTS;
        loop {
            match self.slots[slot] {
                0 => return false,
                // cannot fail: slot values are 1 + an index into `names` (0 is matched above).
                n if self.names[n as usize - 1].as_bytes() == lower_name => return true,
                _ => slot = (slot + 1) % INDEX_SLOTS,
            }
        }
    }
}

pub(crate) const BUILTIN_INDEX: NameIndex = NameIndex::new(BUILTINS);
pub(crate) const PAREN_KEYWORD_INDEX: NameIndex = NameIndex::new(PAREN_KEYWORDS);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_sorted_lower_case_and_without_duplicates() {
        for table in [BUILTINS, PAREN_KEYWORDS] {
            for w in table.windows(2) {
                assert!(w[0] < w[1], "{} before {}", w[0], w[1]);
            }
            for n in table {
                assert_eq!(n.to_ascii_lowercase(), *n);
                assert!(n.len() <= 48);
            }
        }
    }

    #[test]
    fn indexes_find_exactly_the_table_entries() {
        for (table, index) in [(BUILTINS, &BUILTIN_INDEX), (PAREN_KEYWORDS, &PAREN_KEYWORD_INDEX)] {
            for n in table {
                assert!(index.contains(n.as_bytes()), "{n}");
                assert!(!index.contains(format!("{n}x").as_bytes()), "{n}x");
            }
            assert!(!index.contains(b""));
        }
    }

    #[test]
    fn session_functions_are_not_builtins() {
        for n in ["last_insert_id", "get_lock", "nextval", "connection_id", "load_file"] {
            assert!(!BUILTIN_INDEX.contains(n.as_bytes()), "{n}");
            assert!(session_function(n.as_bytes()).is_some(), "{n}");
        }
        for n in ["row_count", "found_rows"] {
            assert!(!BUILTIN_INDEX.contains(n.as_bytes()), "{n}");
            assert!(previous_statement_function(n.as_bytes()), "{n}");
        }
    }
}
