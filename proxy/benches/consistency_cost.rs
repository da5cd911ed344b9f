//! What read-after-write consistency costs on a real MariaDB primary and two replicas
//! (`scripts/bench-consistency.sh` runs it; figures in `docs/consistency.md`): the
//! write-then-read runner of `tests/rw_consistency.rs` at each level, reporting where
//! reads went, their latency and the checker's verdict. Needs `mariadbd` (see
//! `scripts/install-deps.sh`).
//!
//! `cargo bench -p sluice-proxy --bench consistency_cost` runs it; `cargo test` (which
//! builds benches in test mode, without `--bench`) only checks that it builds.

#[allow(dead_code)]
#[path = "../tests/common/mod.rs"]
mod common;
// Each crate uses one of the runner's two entry points.
#[allow(dead_code)]
#[path = "../tests/rw/mod.rs"]
mod rw;

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("consistency_cost: a benchmark against a real cluster; run it with `cargo bench -p sluice-proxy --bench consistency_cost` or scripts/bench-consistency.sh");
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio runtime");
    rt.block_on(rw::consistency_cost());
}
