//! Micro-benchmarks of the statement classifier (`sluice::route::classify`): time per
//! statement on a cache hit (`Classifier::classify` of a text whose normalised form is
//! cached) and on a miss (`classify_uncached`: scan, rules, no cache), for a realistic
//! OLTP mix: sysbench's point and range selects, index and non-index updates, deletes,
//! inserts, BEGIN/COMMIT, SETs, a few longer ORM-style queries with joins and IN
//! lists, and one query the scan leaves to the full parser.
//!
//! Run with
//! `cargo bench -p sluice-proxy --bench classify -- --warm-up-time 1 --measurement-time 3`.
//! Figures and targets are in docs/routing.md ("Classification").

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sluice::route::class::Kind;
use sluice::route::classify::{classify_uncached, Classifier};

const PAD: &str = "'70248457291-63426195424-36431271862-79651451219-21566428463'";
const C: &str = "'83868641912-28773972837-60736120486-75867434564-43532315483-06738311155-39818524116-18407233281-28478536316-58617183152'";

/// (name, statement, expected kind) — the kinds are asserted once, so a regression that
/// made everything `Unknown` would not go unnoticed as a speed-up.
fn mix() -> Vec<(&'static str, String, Kind)> {
    vec![
        ("point_select", "SELECT c FROM sbtest1 WHERE id=5012".into(), Kind::Read),
        ("range_select", "SELECT c FROM sbtest3 WHERE id BETWEEN 4902 AND 5001".into(), Kind::Read),
        ("range_sum", "SELECT SUM(k) FROM sbtest2 WHERE id BETWEEN 4902 AND 5001".into(), Kind::Read),
        ("range_order", "SELECT c FROM sbtest4 WHERE id BETWEEN 4902 AND 5001 ORDER BY c".into(), Kind::Read),
        (
            "range_distinct",
            "SELECT DISTINCT c FROM sbtest1 WHERE id BETWEEN 4902 AND 5001 ORDER BY c".into(),
            Kind::Read,
        ),
        ("update_index", "UPDATE sbtest1 SET k=k+1 WHERE id=5003".into(), Kind::Write),
        ("update_non_index", format!("UPDATE sbtest2 SET c={C} WHERE id=4981"), Kind::Write),
        ("delete", "DELETE FROM sbtest3 WHERE id=5001".into(), Kind::Write),
        ("insert", format!("INSERT INTO sbtest3 (id, k, c, pad) VALUES (5001, 4992, {C}, {PAD})"), Kind::Write),
        ("begin", "BEGIN".into(), Kind::Begin { read_only: false }),
        ("commit", "COMMIT".into(), Kind::TransactionControl),
        ("set_autocommit", "SET autocommit=1".into(), Kind::SessionSet),
        ("set_names", "SET NAMES utf8mb4 COLLATE utf8mb4_general_ci".into(), Kind::SessionSet),
        (
            "orm_join_in",
            "select u1_0.id,u1_0.email,u1_0.created_at,o1_0.id,o1_0.total,o1_0.status from users u1_0 \
             left join orders o1_0 on u1_0.id=o1_0.user_id where u1_0.tenant_id=? and u1_0.id in \
             (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) and o1_0.created_at>=? order by u1_0.created_at desc limit ?"
                .into(),
            Kind::Read,
        ),
        (
            "orm_backticks",
            "SELECT `auth_user`.`id`, `auth_user`.`password`, `auth_user`.`last_login`, `auth_user`.`is_superuser`, \
             `auth_user`.`username`, `auth_user`.`email`, `auth_group`.`name` FROM `auth_user` INNER JOIN \
             `auth_user_groups` ON (`auth_user`.`id` = `auth_user_groups`.`user_id`) INNER JOIN `auth_group` ON \
             (`auth_user_groups`.`group_id` = `auth_group`.`id`) WHERE (`auth_user`.`is_active` AND \
             `auth_user`.`id` IN (1, 2, 3, 5, 8, 13, 21, 34, 55, 89)) ORDER BY `auth_user`.`date_joined` DESC LIMIT 21"
                .into(),
            Kind::Read,
        ),
        (
            "orm_aggregate",
            "SELECT `posts`.`author_id`, COUNT(*) AS `count_all`, MAX(`posts`.`created_at`) AS `max_created` \
             FROM `posts` WHERE `posts`.`published` = TRUE AND `posts`.`created_at` > '2026-01-01 00:00:00' \
             GROUP BY `posts`.`author_id` HAVING COUNT(*) > 3 ORDER BY `count_all` DESC LIMIT 20 OFFSET 40"
                .into(),
            Kind::Read,
        ),
        (
            // A statement keyword as a column name: the scan is unsure, the parser decides.
            "parse_fallback",
            "SELECT id, load FROM jobs WHERE state = 'ready' AND load < 10 ORDER BY id LIMIT 5".into(),
            Kind::Read,
        ),
    ]
}

fn benches(c: &mut Criterion) {
    let mix = mix();
    for (name, sql, kind) in &mix {
        assert_eq!(classify_uncached(sql.as_bytes()).kind, *kind, "{name}");
    }
    let classifier = Classifier::new(10_000);
    for (_, sql, _) in &mix {
        classifier.classify(sql.as_bytes());
    }

    let mut g = c.benchmark_group("classify_hit");
    for (name, sql, _) in &mix {
        g.bench_with_input(BenchmarkId::from_parameter(name), sql.as_bytes(), |b, sql| {
            b.iter(|| classifier.classify(black_box(sql)))
        });
    }
    // The whole mix: the statements the scan decides (the parser case apart).
    let scanned: Vec<&[u8]> =
        mix.iter().filter(|(n, _, _)| *n != "parse_fallback").map(|(_, s, _)| s.as_bytes()).collect();
    g.throughput(Throughput::Elements(scanned.len() as u64));
    g.bench_function("whole_mix", |b| {
        b.iter(|| {
            for sql in &scanned {
                black_box(classifier.classify(black_box(sql)));
            }
        })
    });
    g.finish();

    let mut g = c.benchmark_group("classify_miss");
    for (name, sql, _) in &mix {
        g.bench_with_input(BenchmarkId::from_parameter(name), sql.as_bytes(), |b, sql| {
            b.iter(|| classify_uncached(black_box(sql)))
        });
    }
    g.throughput(Throughput::Elements(scanned.len() as u64));
    g.bench_function("whole_mix", |b| {
        b.iter(|| {
            for sql in &scanned {
                black_box(classify_uncached(black_box(sql)));
            }
        })
    });
    g.finish();

    let stats = classifier.stats();
    assert_eq!(stats.misses, mix.len() as u64, "every hit-bench call was a hit");
}

fn config() -> Criterion {
    Criterion::default().sample_size(30).without_plots()
}

criterion_group! {
    name = classify;
    config = config();
    targets = benches
}
criterion_main!(classify);
