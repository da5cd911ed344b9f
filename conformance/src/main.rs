//! `conformance`: runs the differential corpus.
//!
//! ```text
//! conformance diff --reference 127.0.0.1:3310 --candidate 127.0.0.1:15307 [--corpus DIR] [--jobs N]
//! conformance list [--corpus DIR]
//! conformance gen [--out DIR] [--check]
//! ```

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, Parser, Subcommand};
use conformance::runner::passes;
use conformance::{run_all, summary_line, Case, Endpoint, Options};

#[derive(Parser)]
#[command(name = "conformance", version, about = "Differential protocol conformance runner for Sluice")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the corpus against a reference and a candidate endpoint and compare every response.
    Diff(DiffArgs),
    /// List the cases of the corpus.
    List(ListArgs),
    /// Write the generated part of the corpus (or check that it is up to date).
    Gen(GenArgs),
    /// Run cases on one endpoint and print every response decoded (for writing cases).
    Show(ShowArgs),
}

#[derive(Args)]
struct ShowArgs {
    /// The endpoint, HOST:PORT.
    #[arg(long, value_name = "HOST:PORT")]
    endpoint: String,
    #[command(flatten)]
    corpus: CorpusArgs,
    #[arg(long, default_value = "app")]
    user: String,
    #[arg(long, default_value = "app")]
    password: String,
    #[arg(long, default_value = "test")]
    database: String,
}

#[derive(Args)]
struct CorpusArgs {
    /// Corpus directory (default: testdata/conformance of this workspace).
    #[arg(long, value_name = "DIR")]
    corpus: Option<PathBuf>,
    /// Only cases whose name contains SUBSTRING.
    #[arg(long, value_name = "SUBSTRING")]
    filter: Option<String>,
    /// Only the text-protocol pass of each case.
    #[arg(long, conflicts_with = "binary_only")]
    text_only: bool,
    /// Only the binary-protocol passes (cases without @binary are skipped).
    #[arg(long)]
    binary_only: bool,
}

#[derive(Args)]
struct DiffArgs {
    /// The endpoint taken as correct, HOST:PORT (e.g. MariaDB directly).
    #[arg(long, value_name = "HOST:PORT")]
    reference: String,
    /// The endpoint under test, HOST:PORT (e.g. Sluice).
    #[arg(long, value_name = "HOST:PORT")]
    candidate: String,
    #[command(flatten)]
    corpus: CorpusArgs,
    #[arg(long, default_value = "app")]
    user: String,
    #[arg(long, default_value = "app")]
    password: String,
    #[arg(long, default_value = "test")]
    database: String,
    /// Cases run concurrently.
    #[arg(long, default_value_t = 4)]
    jobs: usize,
    /// The candidate splits reads over replicas: cases marked
    /// `@known-difference-split` are reported, not failed.
    #[arg(long)]
    split: bool,
    /// Print a line for every case, not only failures.
    #[arg(long, short)]
    verbose: bool,
}

#[derive(Args)]
struct ListArgs {
    #[command(flatten)]
    corpus: CorpusArgs,
}

#[derive(Args)]
struct GenArgs {
    /// Corpus directory to write into.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Do not write; fail if a generated file is missing or differs.
    #[arg(long)]
    check: bool,
}

fn default_corpus() -> PathBuf {
    let local = Path::new("testdata/conformance");
    if local.is_dir() {
        return local.to_path_buf();
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/conformance")
}

fn load(args: &CorpusArgs) -> Result<Vec<Case>, String> {
    let dir = args.corpus.clone().unwrap_or_else(default_corpus);
    let mut cases = Case::load_dir(&dir).map_err(|e| format!("{e:#}"))?;
    if let Some(f) = &args.filter {
        cases.retain(|c| c.name.contains(f.as_str()));
    }
    let (text, binary) = (!args.binary_only, !args.text_only);
    cases.retain(|c| !passes(c, text, binary).is_empty());
    Ok(cases)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::List(a) => match load(&a.corpus) {
            Ok(cases) => {
                for c in &cases {
                    let p: Vec<String> = passes(c, !a.corpus.binary_only, !a.corpus.text_only).iter().map(|p| p.to_string()).collect();
                    println!("{}\t{}\t{}", c.name, p.join("; "), c.description);
                }
                println!("{} cases", cases.len());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("conformance: {e}");
                ExitCode::from(2)
            }
        },
        Command::Show(a) => {
            let cases = match load(&a.corpus) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("conformance: {e}");
                    return ExitCode::from(2);
                }
            };
            let ep = Endpoint { addr: a.endpoint.clone(), user: a.user.clone(), password: a.password.clone(), database: a.database.clone() };
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
            rt.block_on(async {
                for c in &cases {
                    for pass in passes(c, !a.corpus.binary_only, !a.corpus.text_only) {
                        println!("=== {} [{pass}]", c.name);
                        let leg = conformance::runner::run_leg(c, pass, &ep).await;
                        for s in &leg.steps {
                            print_step(s, "");
                        }
                        if let Some(e) = &leg.error {
                            println!("stopped: {e}");
                        }
                    }
                }
            });
            ExitCode::SUCCESS
        }
        Command::Gen(a) => {
            let dir = a.out.unwrap_or_else(default_corpus);
            match conformance::gen::write(&dir, a.check) {
                Ok(n) => {
                    println!("{n} generated cases {} {}", if a.check { "up to date in" } else { "written to" }, dir.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("conformance: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Diff(a) => {
            let cases = match load(&a.corpus) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("conformance: {e}");
                    return ExitCode::from(2);
                }
            };
            let ep = |addr: &str| Endpoint { addr: addr.to_string(), user: a.user.clone(), password: a.password.clone(), database: a.database.clone() };
            let opts = Options {
                reference: ep(&a.reference),
                candidate: ep(&a.candidate),
                jobs: a.jobs,
                text: !a.corpus.binary_only,
                binary: !a.corpus.text_only,
                split: a.split,
            };
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
            let started = Instant::now();
            let count = cases.len();
            println!("running {count} cases: reference {} vs candidate {}, {} jobs", a.reference, a.candidate, a.jobs);
            let verbose = a.verbose;
            let outcomes = rt.block_on(run_all(cases, opts, |o| {
                if o.known_difference() {
                    println!("KNOWN {} ({:.1}s): {}", o.name, o.elapsed.as_secs_f64(), o.known.as_deref().unwrap_or(""));
                    for f in &o.failures {
                        println!("  {}", f.replace('\n', "\n  "));
                    }
                } else if !o.passed() {
                    println!("FAIL {} ({:.1}s)", o.name, o.elapsed.as_secs_f64());
                    for f in &o.failures {
                        println!("  {}", f.replace('\n', "\n  "));
                    }
                } else if verbose {
                    println!("ok   {} ({:.1}s)", o.name, o.elapsed.as_secs_f64());
                }
                if !o.notes.is_empty() {
                    for n in &o.notes {
                        println!("     note ({}): {n}", o.name);
                    }
                }
            }));
            let failed: Vec<&str> = outcomes.iter().filter(|o| o.failed()).map(|o| o.name.as_str()).collect();
            let known: Vec<&str> = outcomes.iter().filter(|o| o.known_difference()).map(|o| o.name.as_str()).collect();
            if !known.is_empty() {
                println!("{} known differences (@known-difference): {}", known.len(), known.join(" "));
            }
            if !failed.is_empty() {
                println!("failed cases: {}", failed.join(" "));
            }
            println!("ran {count} cases in {:.1}s", started.elapsed().as_secs_f64());
            println!("{}", summary_line(&outcomes));
            if failed.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn print_step(s: &conformance::compare::Step, indent: &str) {
    println!("{indent}--- {} (connection {})", s.label, s.conn);
    for it in s.items() {
        println!("{indent}  [{}] {}: {}", it.seq, it.describe(), it.decoded);
    }
    if let Some(w) = &s.warnings {
        print_step(w, "    ");
    }
}
