//! The case-file format (`*.test`) and its parser.
//!
//! A case is one small text file. The full format is documented in
//! `testdata/conformance/README.md`; in short:
//!
//! ```text
//! # comment
//! @description what the case checks
//! @binary                       also run the test section over the binary protocol
//! @cursor 1,2,1000              binary passes that fetch through a cursor, N rows a time
//! @connections 2                extra connections (switch with `!conn N`)
//! @normalize mask-column 1      a normalisation rule for every compared response
//!
//! --setup
//! CREATE TABLE t_case (id INT)
//! --test
//! SELECT * FROM t_case
//! SELECT ?, ?
//! !params long:5 string:'five'
//! --teardown
//! DROP TABLE IF EXISTS t_case
//! ```
//!
//! Every non-blank line of `--setup`, `--test` and `--teardown` is one statement, sent as
//! it stands (a line ending in `\` continues on the next). Lines starting with `!` are
//! runner commands (protocol commands, connection switches, parameters).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

use crate::normalize::Rule;
use crate::value::{expand_macros, split_tokens, Value};

/// Which protocols the test section runs over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocols {
    Text,
    TextAndBinary,
    Binary,
}

/// One parsed case file.
#[derive(Debug, Clone)]
pub struct Case {
    /// Path relative to the corpus root without `.test`, e.g. `types/int_limits`.
    pub name: String,
    pub path: PathBuf,
    pub description: String,
    pub connections: usize,
    pub protocols: Protocols,
    /// Fetch sizes: each adds a binary pass through a read-only cursor.
    pub cursors: Vec<u32>,
    pub caps_add: u32,
    pub caps_remove: u32,
    /// Collation id sent in the handshake.
    pub charset: u8,
    pub database: Option<String>,
    /// `@user` / `@password`: log in with these instead of the run's account.
    pub user: Option<String>,
    pub password: Option<String>,
    /// Run alone, after every concurrent case.
    pub serial: bool,
    /// Compare the setup section's responses too.
    pub compare_setup: bool,
    /// Compare the initial handshake (version, capabilities, charset, status).
    pub compare_handshake: bool,
    pub timeout: Duration,
    /// `@known-difference TEXT`: the candidate is known to differ here (a reported
    /// problem); differences are listed but do not fail the run.
    pub known_difference: Option<String>,
    /// `@known-difference-split TEXT`: a known difference only when the candidate
    /// splits reads over replicas (`Options::split`): per-connection state that a
    /// statement on another node cannot see (see docs/compatibility.md).
    pub known_difference_split: Option<String>,
    pub rules: Vec<Rule>,
    pub setup: Vec<Stmt>,
    pub test: Vec<Stmt>,
    pub teardown: Vec<Stmt>,
    /// Contents sent when the server asks for a LOCAL INFILE of this name.
    pub infiles: BTreeMap<String, Vec<u8>>,
}

/// One line of a section.
#[derive(Debug, Clone)]
pub struct Stmt {
    /// Line number in the case file (1-based).
    pub line: usize,
    pub action: Action,
    /// Parameters (`!params`) for a statement with `?` placeholders.
    pub params: Option<Vec<Value>>,
    /// Normalisation rules for this statement only (`!normalize`).
    pub rules: Vec<Rule>,
}

/// What a line does.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// A statement: COM_QUERY over text, PREPARE/EXECUTE(/FETCH)/CLOSE over binary.
    Sql(String),
    /// COM_QUERY sent without reading the response (`!send SQL`); `!reap` reads it.
    Send(String),
    Reap,
    /// Switch to connection N (1-based).
    Conn(usize),
    Sleep(u64),
    Ping,
    InitDb(String),
    FieldList { table: String, wildcard: String },
    /// COM_CHANGE_USER (default: the endpoint's own account and database).
    ChangeUser { user: Option<String>, password: Option<String>, database: Option<String> },
    ResetConnection,
    /// COM_SET_OPTION: multi-statements on (`true`) or off.
    SetOption(bool),
    /// COM_STMT_PREPARE, the statement known as `name` afterwards.
    Prepare { name: String, sql: String },
    /// COM_STMT_EXECUTE; `cursor` opens a read-only cursor.
    Execute { name: String, cursor: bool, params: Vec<Value> },
    /// COM_STMT_SEND_LONG_DATA for parameter `param` (0-based).
    LongData { name: String, param: u16, data: Vec<u8> },
    /// COM_STMT_FETCH of `rows` rows.
    Fetch { name: String, rows: u32 },
    StmtReset(String),
    StmtClose(String),
    /// Any command packet, given in hex, and how its response is read.
    Command { payload: Vec<u8>, expect: Option<sluice::protocol::response::Expect> },
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Sql(s) => write!(f, "{}", short(s)),
            Action::Send(s) => write!(f, "!send {}", short(s)),
            Action::Reap => write!(f, "!reap"),
            Action::Conn(n) => write!(f, "!conn {n}"),
            Action::Sleep(ms) => write!(f, "!sleep {ms}"),
            Action::Ping => write!(f, "COM_PING"),
            Action::InitDb(d) => write!(f, "COM_INIT_DB {d}"),
            Action::FieldList { table, wildcard } => write!(f, "COM_FIELD_LIST {table} {wildcard}"),
            Action::ChangeUser { user, .. } => write!(f, "COM_CHANGE_USER {}", user.as_deref().unwrap_or("(same account)")),
            Action::ResetConnection => write!(f, "COM_RESET_CONNECTION"),
            Action::SetOption(on) => write!(f, "COM_SET_OPTION multi-statements {}", if *on { "on" } else { "off" }),
            Action::Prepare { name, sql } => write!(f, "COM_STMT_PREPARE {name} {}", short(sql)),
            Action::Execute { name, cursor, params } => {
                write!(f, "COM_STMT_EXECUTE {name}{}", if *cursor { " (cursor)" } else { "" })?;
                for p in params {
                    write!(f, " {p}")?;
                }
                Ok(())
            }
            Action::LongData { name, param, data } => write!(f, "COM_STMT_SEND_LONG_DATA {name} param {param} ({} bytes)", data.len()),
            Action::Fetch { name, rows } => write!(f, "COM_STMT_FETCH {name} {rows}"),
            Action::StmtReset(n) => write!(f, "COM_STMT_RESET {n}"),
            Action::StmtClose(n) => write!(f, "COM_STMT_CLOSE {n}"),
            Action::Command { payload, .. } => write!(f, "command x'{}'", crate::value::to_hex(payload)),
        }
    }
}

/// A statement shortened for messages.
pub fn short(s: &str) -> String {
    let one_line: String = s.chars().map(|c| if c == '\n' { ' ' } else { c }).collect();
    if one_line.chars().count() > 160 {
        let cut: String = one_line.chars().take(150).collect();
        format!("{cut}… ({} bytes)", s.len())
    } else {
        one_line
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Section {
    None,
    Setup,
    Test,
    Teardown,
    Infile,
}

/// Capability names accepted by `@caps`.
fn cap_by_name(name: &str) -> Option<u32> {
    use sluice::protocol::constants::cap;
    Some(match name.to_ascii_uppercase().as_str() {
        "FOUND_ROWS" => cap::FOUND_ROWS,
        "DEPRECATE_EOF" => cap::DEPRECATE_EOF,
        "MULTI_STATEMENTS" => cap::MULTI_STATEMENTS,
        "MULTI_RESULTS" => cap::MULTI_RESULTS,
        "PS_MULTI_RESULTS" => cap::PS_MULTI_RESULTS,
        "SESSION_TRACK" => cap::SESSION_TRACK,
        "LOCAL_FILES" => cap::LOCAL_FILES,
        "IGNORE_SPACE" => cap::IGNORE_SPACE,
        "NO_SCHEMA" => cap::NO_SCHEMA,
        "ODBC" => cap::ODBC,
        "INTERACTIVE" => cap::INTERACTIVE,
        "CONNECT_ATTRS" => cap::CONNECT_ATTRS,
        _ => return None,
    })
}

/// Collation ids accepted by `@charset` by name.
fn collation_by_name(name: &str) -> Option<u8> {
    Some(match name {
        "utf8mb4" | "utf8mb4_general_ci" => 45,
        "utf8mb4_bin" => 46,
        "utf8mb4_unicode_ci" => 224,
        "latin1" | "latin1_swedish_ci" => 8,
        "latin1_bin" => 47,
        "utf8" | "utf8mb3" | "utf8_general_ci" => 33,
        "binary" => 63,
        "ascii" => 11,
        "cp1251" => 51,
        "koi8r" => 7,
        "gbk" => 28,
        "sjis" => 13,
        _ => return name.parse().ok(),
    })
}

impl Case {
    /// Loads every `*.test` file under `root`, sorted by name.
    pub fn load_dir(root: &Path) -> Result<Vec<Case>> {
        let mut files = Vec::new();
        collect(root, &mut files).with_context(|| format!("reading corpus {}", root.display()))?;
        files.sort();
        let mut cases = Vec::with_capacity(files.len());
        for f in files {
            let rel = f.strip_prefix(root).unwrap_or(&f).with_extension("");
            let name = rel.to_string_lossy().replace('\\', "/");
            let text = std::fs::read(&f).with_context(|| format!("reading {}", f.display()))?;
            let text = String::from_utf8(text).map_err(|_| anyhow!("{}: not UTF-8", f.display()))?;
            let case = Case::parse(&name, &text).with_context(|| format!("{}", f.display()))?;
            cases.push(Case { path: f, ..case });
        }
        Ok(cases)
    }

    /// Parses the text of a case file.
    pub fn parse(name: &str, text: &str) -> Result<Case> {
        let mut case = Case {
            name: name.to_string(),
            path: PathBuf::new(),
            description: String::new(),
            connections: 1,
            protocols: Protocols::Text,
            cursors: Vec::new(),
            caps_add: 0,
            caps_remove: 0,
            charset: 45,
            database: None,
            user: None,
            password: None,
            serial: false,
            compare_setup: false,
            compare_handshake: false,
            timeout: Duration::from_secs(60),
            known_difference: None,
            known_difference_split: None,
            rules: Vec::new(),
            setup: Vec::new(),
            test: Vec::new(),
            teardown: Vec::new(),
            infiles: BTreeMap::new(),
        };
        let mut section = Section::None;
        let mut infile_name = String::new();
        let mut infile = Vec::<u8>::new();
        let lines: Vec<&str> = text.lines().collect();
        let mut i = 0;
        while i < lines.len() {
            let lineno = i + 1;
            let raw = lines[i];
            i += 1;
            if raw.trim_end() == "--binary" && section != Section::Infile {
                // The marker form of `@binary`.
                if case.protocols == Protocols::Text {
                    case.protocols = Protocols::TextAndBinary;
                }
                continue;
            }
            if let Some(header) = raw.strip_prefix("--").filter(|h| is_section_header(h)) {
                if section == Section::Infile {
                    case.infiles.insert(std::mem::take(&mut infile_name), std::mem::take(&mut infile));
                }
                let mut words = header.split_whitespace();
                section = match words.next().unwrap_or("") {
                    "setup" => Section::Setup,
                    "test" => Section::Test,
                    "teardown" => Section::Teardown,
                    "infile" => {
                        infile_name = words.next().ok_or_else(|| anyhow!("line {lineno}: --infile needs a file name"))?.to_string();
                        Section::Infile
                    }
                    _ => Section::None,
                };
                continue;
            }
            if section == Section::Infile {
                infile.extend_from_slice(expand_macros(raw)?.as_bytes());
                infile.push(b'\n');
                continue;
            }
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some(directive) = line.strip_prefix('@') {
                if section != Section::None {
                    bail!("line {lineno}: directives (@...) go before the first section");
                }
                case.directive(directive).with_context(|| format!("line {lineno}"))?;
                continue;
            }
            if section == Section::None {
                bail!("line {lineno}: statement outside a section (start one with --setup, --test or --teardown)");
            }
            // Continuation lines.
            let mut full = line.to_string();
            while full.ends_with('\\') && i < lines.len() {
                full.pop();
                full.push('\n');
                full.push_str(lines[i].trim_end());
                i += 1;
            }
            let list = match section {
                Section::Setup => &mut case.setup,
                Section::Test => &mut case.test,
                _ => &mut case.teardown,
            };
            if let Some(cmd) = full.strip_prefix('!') {
                let (word, rest) = cmd.split_once(char::is_whitespace).unwrap_or((cmd, ""));
                let rest = rest.trim();
                match word {
                    "params" => {
                        let last = list.last_mut().ok_or_else(|| anyhow!("line {lineno}: !params without a statement before it"))?;
                        let vals = parse_values(rest).with_context(|| format!("line {lineno}"))?;
                        last.params = Some(vals);
                        continue;
                    }
                    "normalize" => {
                        let last = list.last_mut().ok_or_else(|| anyhow!("line {lineno}: !normalize without a statement before it"))?;
                        last.rules.push(Rule::parse(rest).with_context(|| format!("line {lineno}"))?);
                        continue;
                    }
                    _ => {}
                }
                let action = parse_command(word, rest).with_context(|| format!("line {lineno}"))?;
                if let Action::Conn(n) = action {
                    if n == 0 || n > case.connections {
                        bail!("line {lineno}: !conn {n} but the case has {} connection(s) (@connections)", case.connections);
                    }
                }
                list.push(Stmt { line: lineno, action, params: None, rules: Vec::new() });
            } else {
                list.push(Stmt { line: lineno, action: Action::Sql(expand_macros(&full)?), params: None, rules: Vec::new() });
            }
        }
        if section == Section::Infile {
            case.infiles.insert(infile_name, infile);
        }
        if case.test.is_empty() {
            bail!("the case has no --test section (or it is empty)");
        }
        if !case.cursors.is_empty() && case.protocols == Protocols::Text {
            case.protocols = Protocols::TextAndBinary;
        }
        Ok(case)
    }

    fn directive(&mut self, d: &str) -> Result<()> {
        let (word, rest) = d.split_once(char::is_whitespace).unwrap_or((d, ""));
        let rest = rest.trim();
        match word {
            "description" => self.description = rest.to_string(),
            "binary" => self.protocols = Protocols::TextAndBinary,
            "binary-only" => self.protocols = Protocols::Binary,
            "cursor" => {
                for n in rest.split(',') {
                    self.cursors.push(n.trim().parse().map_err(|_| anyhow!("@cursor takes fetch sizes like 1,2,100"))?);
                }
            }
            "connections" => {
                self.connections = rest.parse().map_err(|_| anyhow!("@connections takes a number"))?;
                if self.connections == 0 || self.connections > 8 {
                    bail!("@connections must be 1..8");
                }
            }
            "caps" => {
                for c in rest.split_whitespace() {
                    let (add, name) = match c.as_bytes().first() {
                        Some(b'-') => (false, &c[1..]),
                        Some(b'+') => (true, &c[1..]),
                        _ => (true, c),
                    };
                    let bit = cap_by_name(name).ok_or_else(|| anyhow!("unknown capability {name}"))?;
                    if add {
                        self.caps_add |= bit;
                    } else {
                        self.caps_remove |= bit;
                    }
                }
            }
            "charset" => self.charset = collation_by_name(rest).ok_or_else(|| anyhow!("unknown collation {rest}"))?,
            "database" => self.database = Some(rest.to_string()),
            "user" => self.user = Some(rest.to_string()),
            "password" => self.password = Some(rest.to_string()),
            "serial" => self.serial = true,
            "compare-setup" => self.compare_setup = true,
            "compare-handshake" => self.compare_handshake = true,
            "timeout" => self.timeout = Duration::from_secs(rest.parse().map_err(|_| anyhow!("@timeout takes seconds"))?),
            "normalize" => self.rules.push(Rule::parse(rest)?),
            "known-difference" => {
                if rest.is_empty() {
                    bail!("@known-difference needs a description of the difference");
                }
                self.known_difference = Some(rest.to_string());
            }
            "known-difference-split" => {
                if rest.is_empty() {
                    bail!("@known-difference-split needs a description of the difference");
                }
                self.known_difference_split = Some(rest.to_string());
            }
            other => bail!("unknown directive @{other}"),
        }
        Ok(())
    }
}

fn is_section_header(h: &str) -> bool {
    let w = h.split_whitespace().next().unwrap_or("");
    matches!(w, "setup" | "test" | "teardown" | "infile" | "end") && !h.starts_with(' ')
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        if p.is_dir() {
            collect(&p, out)?;
        } else if p.extension().is_some_and(|x| x == "test") {
            out.push(p);
        }
    }
    Ok(())
}

fn parse_values(rest: &str) -> Result<Vec<Value>> {
    split_tokens(rest)?.iter().map(|t| Value::parse(&expand_macros(t)?)).collect()
}

fn parse_command(word: &str, rest: &str) -> Result<Action> {
    let args: Vec<String> = split_tokens(rest)?;
    let arg = |i: usize, what: &str| -> Result<String> { args.get(i).cloned().ok_or_else(|| anyhow!("!{word} needs {what}")) };
    Ok(match word {
        "send" => Action::Send(expand_macros(rest)?),
        "reap" => Action::Reap,
        "conn" => Action::Conn(arg(0, "a connection number")?.parse()?),
        "sleep" => Action::Sleep(arg(0, "milliseconds")?.parse()?),
        "ping" => Action::Ping,
        "init_db" => Action::InitDb(arg(0, "a database name")?),
        "field_list" => Action::FieldList { table: arg(0, "a table name")?, wildcard: args.get(1).cloned().unwrap_or_default() },
        "change_user" => Action::ChangeUser { user: args.first().cloned(), password: args.get(1).cloned(), database: args.get(2).cloned() },
        "reset_connection" => Action::ResetConnection,
        "set_option" => match arg(0, "on or off")?.as_str() {
            "on" => Action::SetOption(true),
            "off" => Action::SetOption(false),
            other => bail!("!set_option takes on or off, not {other}"),
        },
        "prepare" => {
            if rest.is_empty() {
                bail!("!prepare NAME SQL");
            }
            let (name, sql) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
            Action::Prepare { name: name.to_string(), sql: expand_macros(sql.trim())? }
        }
        "execute" => {
            let name = arg(0, "a statement name")?;
            let mut cursor = false;
            let mut params = Vec::new();
            for t in &args[1..] {
                if t == "cursor" {
                    cursor = true;
                } else {
                    params.push(Value::parse(&expand_macros(t)?)?);
                }
            }
            Action::Execute { name, cursor, params }
        }
        "long_data" => {
            let name = arg(0, "a statement name")?;
            let param = arg(1, "a parameter index")?.parse()?;
            let v = Value::parse(&format!("blob:{}", expand_macros(&arg(2, "data")?)?))?;
            Action::LongData { name, param, data: v.bytes().unwrap_or_default() }
        }
        "fetch" => Action::Fetch { name: arg(0, "a statement name")?, rows: arg(1, "a row count")?.parse()? },
        "stmt_reset" => Action::StmtReset(arg(0, "a statement name")?),
        "stmt_close" => Action::StmtClose(arg(0, "a statement name")?),
        "command" => {
            use sluice::protocol::response::Expect;
            let payload = crate::value::from_hex(&arg(0, "the command packet in hex")?)?;
            if payload.is_empty() {
                bail!("!command needs at least the command byte");
            }
            let expect = match args.get(1).map(String::as_str).unwrap_or("one") {
                "one" => Some(Expect::OnePacket),
                "query" => Some(Expect::Query),
                "prepare" => Some(Expect::Prepare),
                "execute" => Some(Expect::Execute),
                "fetch" => Some(Expect::Fetch),
                "field_list" => Some(Expect::FieldList),
                "none" => None,
                other => bail!("!command response kind is one, query, prepare, execute, fetch, field_list or none, not {other}"),
            };
            Action::Command { payload, expect }
        }
        other => bail!("unknown command !{other}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sections_directives_and_commands() {
        let text = "# c\n@description d\n@binary\n@cursor 1,2\n@connections 2\n@normalize mask-column 1\n\
                    --setup\nCREATE TABLE t (a INT)\n--test\nSELECT 1\nSELECT ?, \\\n ?\n!params long:5 string:'a b'\n!normalize ignore-ok-field info\n\
                    !conn 2\n!prepare s SELECT ?\n!execute s cursor long:NULL\n!fetch s 2\n--teardown\nDROP TABLE t\n--infile a.csv\n1,a\n2,b\n";
        let c = Case::parse("x/y", text).unwrap();
        assert_eq!(c.description, "d");
        assert_eq!(c.protocols, Protocols::TextAndBinary);
        assert_eq!(c.cursors, vec![1, 2]);
        assert_eq!(c.connections, 2);
        assert_eq!(c.setup.len(), 1);
        assert_eq!(c.test.len(), 6);
        assert_eq!(c.test[1].action, Action::Sql("SELECT ?, \n ?".into()));
        assert_eq!(c.test[1].params.as_ref().unwrap().len(), 2);
        assert_eq!(c.test[1].rules.len(), 1);
        assert_eq!(c.infiles["a.csv"], b"1,a\n2,b\n");
        assert!(matches!(&c.test[4].action, Action::Execute { cursor: true, params, .. } if params.len() == 1));
    }

    #[test]
    fn binary_marker_line_is_the_same_as_the_directive() {
        let c = Case::parse("x", "--binary\n--test\nSELECT 1\n").unwrap();
        assert_eq!(c.protocols, Protocols::TextAndBinary);
    }

    #[test]
    fn rejects_unknown_directives_and_bad_connections() {
        assert!(Case::parse("x", "@nope\n--test\nSELECT 1\n").is_err());
        assert!(Case::parse("x", "--test\n!conn 2\n").is_err());
        assert!(Case::parse("x", "--setup\nSELECT 1\n").is_err());
    }
}
