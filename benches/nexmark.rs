//! Nexmark benchmark: each query of `connectors::generator::nexmark::QUERIES` as a
//! materialized view over the three Nexmark streams (`stream_sources`: `nexmark` sources that
//! store nothing, as RisingWave's suite declares them; the side input of q13 is a stored
//! `datagen` table, filled before the streams start, which q13 reads by a temporal join as
//! the suites do: the peer looks each bid up in the same 10,000 values), in a fresh Freshet server (release build, over pgwire), against DataFusion
//! recomputing the same query from scratch over the same events (the naive baseline, in the
//! same run, over stored tables of the same events filled afterwards).
//!
//! Per query: events per second (wall clock, from the sources' creation until every generator
//! the view reads reports its last event durable, the view maintained), events per CPU-second
//! of the server process (its user + system time: "per core"), the server's peak RSS, and the
//! baseline's time to answer the query once over all the events.
//!
//! Run: `cargo bench --bench nexmark` (`FRESHET_BENCH_EVENTS`, default 1,000,000;
//! `FRESHET_BENCH_QUERIES=q0,q1` runs a subset; `FRESHET_BENCH_RUNS=3` runs each query that
//! many times and reports medians; `FRESHET_BENCH_SERVER_WRAPPER`: see `common::wrapper`;
//! `FRESHET_BENCH_BASELINE=0` skips the DataFusion baseline, as `scripts/symbol-order.sh` does
//! to profile what a view run alone executes).
//! Writes its section of BENCHMARKS.md.
//!
//! Runs are interleaved per query (Freshet, then the peer both ways, then again): on a shared
//! machine both engines' figures drift by up to a third over an hour, and a drift that hits
//! one engine's block of runs and not the other's moved single-run ratios as much.
//!
//! The peer: the same queries as DBSP circuits (`benches/peer`, the `dbsp` crate under Feldera,
//! its own cargo root and target dir `$HOME/.cache/freshet-peer`) over the same generator, run
//! by this bench in the same invocation, twice: emitting changes only (dbsp's default) and
//! keeping each view's contents (`FRESHET_PEER_MATERIALIZE=1`, what a Freshet view does). The
//! table gives Freshet / dbsp ratios per CPU-second and of peak RSS.

mod common;

use std::time::{Duration, Instant};

use freshet::connectors::generator::nexmark::{stream_sources, stream_tables, QUERIES, SIDE_INPUT};

/// (utime + stime in seconds, peak RSS in MiB) of a process.
fn usage(pid: u32) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // After the command name: state is field 0, utime 11, stime 12 (clock ticks).
    let cpu = (ticks(11) + ticks(12)) / 100.0;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let hwm = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    (cpu, hwm / 1024.0)
}

/// The first event's time (ms since the Unix epoch), the same in Freshet and the peer: the same
/// events, so the same windows.
const BASE_TIME: u64 = 1_700_000_000_000;
/// How often the runner asks whether the streams have generated their last event.
const POLL: Duration = Duration::from_millis(50);

struct Figures {
    name: &'static str,
    events_per_sec: f64,
    events_per_cpu_sec: f64,
    peak_rss_mib: f64,
    view_rows: i64,
    /// `None`: the baseline was not run (repeated runs run it once).
    batch_secs: Option<f64>,
}

/// One run of query `name` (`baseline`: also time DataFusion's answer from scratch).
async fn run_query(name: &'static str, sql: &str, events: u64, baseline: bool) -> Figures {
    let f = common::Freshet::start();
    let pid = f.pid();
    let c = f.connect().await;
    let (cpu0, _) = usage(pid);
    let started = Instant::now();
    let options =
        format!("nexmark.event.num = '{events}', nexmark.events.per.second = '0', nexmark.base.time = '{BASE_TIME}'");
    // The side input first, for the query that reads it (q13 looks bids up in it as they
    // arrive; loading it cost the other queries CPU the peer does not spend, ~5 % of q3's),
    // then the view with the streams, before their generators start (a view over a stream
    // sees the events from its creation on).
    if sql.contains("side_input") {
        c.batch_execute(SIDE_INPUT).await.unwrap();
        common::wait_for(&c, "SELECT count(*) FROM side_input", 10_000, Duration::from_secs(600)).await;
    }
    c.batch_execute(&format!(
        "{}; CREATE MATERIALIZED VIEW {name} AS {sql}",
        stream_sources(&options)
    ))
    .await
    .unwrap();
    // Every stream the view reads has generated its last event (the others stay idle).
    let generating = "SELECT count(*) FROM freshet_catalog.sources WHERE connector = 'nexmark' AND state <> 'idle' \
                      AND coalesce(reason, '') NOT LIKE 'all % events generated'";
    // Asked every 50 ms, not 5: the server's CPU time is the figure, and asking (a catalog
    // query, planned each time) every 5 ms cost it up to a fifth more on the longer queries.
    common::wait_polling(&c, generating, 0, Duration::from_secs(3600), POLL).await;
    let secs = started.elapsed().as_secs_f64();
    let (cpu1, rss) = usage(pid);
    let view_rows = common::first_i64(&c, &format!("SELECT count(*) FROM {name}")).await;
    let batch_secs = if baseline {
        // The baseline: DataFusion answers the query from scratch over every event, stored in
        // tables (schema `stored`, first on the search path) by one source of the same events.
        c.batch_execute("CREATE SCHEMA stored").await.unwrap();
        c.batch_execute("SET search_path = stored, public").await.unwrap();
        c.batch_execute(&format!(
            "CREATE SOURCE nx WITH (connector = 'nexmark', {options}); {}",
            stream_tables("nx")
        ))
        .await
        .unwrap();
        common::wait_for(&c, generating, 0, Duration::from_secs(3600)).await;
        let t = Instant::now();
        c.simple_query(&format!("SELECT count(*) FROM ({sql}) q"))
            .await
            .unwrap();
        Some(t.elapsed().as_secs_f64())
    } else {
        None
    };
    Figures {
        name,
        events_per_sec: events as f64 / secs,
        events_per_cpu_sec: events as f64 / (cpu1 - cpu0).max(1e-3),
        peak_rss_mib: rss,
        view_rows,
        batch_secs,
    }
}

/// The median of `values` (the lower of the two middle ones for an even count; 0 for none).
fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len().saturating_sub(1) / 2).copied().unwrap_or(0.0)
}

/// One query's figures from the dbsp peer.
struct PeerFigures {
    events_per_cpu_sec: f64,
    peak_rss_mib: f64,
    /// Rows in the view after the last event.
    output_rows: Option<i64>,
}

/// Runs the dbsp peer (`benches/peer`) over `events` events for the queries it implements;
/// `materialize`: keep each view's contents. Query name → figures (empty if it cannot run).
fn run_peer(events: u64, only: &Option<Vec<String>>, materialize: bool) -> Vec<(String, PeerFigures)> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/peer");
    let target = std::env::var("HOME")
        .map(|h| format!("{h}/.cache/freshet-peer"))
        .unwrap_or_else(|_| "target/peer".into());
    let mut cmd = std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.args(["run", "--release", "-q"])
        .current_dir(&root)
        .env("CARGO_TARGET_DIR", target)
        .env("FRESHET_BENCH_EVENTS", events.to_string())
        .env("FRESHET_PEER_BASE_TIME", BASE_TIME.to_string())
        .env("FRESHET_PEER_MATERIALIZE", if materialize { "1" } else { "0" })
        .stderr(std::process::Stdio::inherit());
    if let Some(o) = only {
        cmd.env("FRESHET_BENCH_QUERIES", o.join(","));
    }
    let out = match cmd.output() {
        Ok(o) if o.status.success() => o,
        Ok(o) => {
            eprintln!("the dbsp peer failed: {}", o.status);
            return Vec::new();
        }
        Err(e) => {
            eprintln!("cannot run the dbsp peer: {e}");
            return Vec::new();
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut figures = Vec::new();
    for line in stdout.lines() {
        println!("dbsp{}: {line}", if materialize { " (views kept)" } else { "" });
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let field = |key: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
                .and_then(|v| v.parse::<f64>().ok())
        };
        if let (Some(e), Some(r)) = (field("events_per_cpu_sec"), field("peak_rss_mib")) {
            figures.push((
                name.to_string(),
                PeerFigures {
                    events_per_cpu_sec: e,
                    peak_rss_mib: r,
                    output_rows: field("output_rows").map(|v| v as i64),
                },
            ));
        }
    }
    figures
}

fn main() {
    let events: u64 = std::env::var("FRESHET_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let only: Option<Vec<String>> = std::env::var("FRESHET_BENCH_QUERIES")
        .ok()
        .map(|v| v.split(',').map(|s| s.trim().to_string()).collect());
    let runs: usize = std::env::var("FRESHET_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .max(1);
    let baseline = std::env::var("FRESHET_BENCH_BASELINE").as_deref() != Ok("0");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut all = Vec::new();
    let (mut peer, mut kept) = (Vec::new(), Vec::new());
    for (name, sql) in QUERIES {
        if only.as_ref().is_some_and(|o| !o.iter().any(|q| q == name)) {
            continue;
        }
        // Each run: Freshet, then the peer both ways (see the module documentation).
        let (mut figs, mut peers, mut keeps) = (Vec::new(), Vec::new(), Vec::new());
        for run in 0..runs {
            let fig = rt.block_on(run_query(name, sql, events, baseline && run == 0));
            println!(
                "{name} (run {}): {:.0} events/s, {:.0} events/CPU-s, peak RSS {:.0} MiB, {} view rows{}",
                run + 1,
                fig.events_per_sec,
                fig.events_per_cpu_sec,
                fig.peak_rss_mib,
                fig.view_rows,
                fig.batch_secs
                    .map_or(String::new(), |s| format!("; batch recompute {s:.2} s"))
            );
            figs.push(fig);
            if common::wrapper().is_some() {
                continue;
            }
            let this = Some(vec![name.to_string()]);
            peers.extend(run_peer(events, &this, false).into_iter().map(|(_, f)| f));
            keeps.extend(run_peer(events, &this, true).into_iter().map(|(_, f)| f));
        }
        let first = &figs[0];
        all.push(Figures {
            name,
            events_per_sec: median(figs.iter().map(|f| f.events_per_sec)),
            events_per_cpu_sec: median(figs.iter().map(|f| f.events_per_cpu_sec)),
            peak_rss_mib: median(figs.iter().map(|f| f.peak_rss_mib)),
            view_rows: first.view_rows,
            batch_secs: first.batch_secs,
        });
        for (list, these) in [(&mut peer, peers), (&mut kept, keeps)] {
            if let Some(first) = these.first() {
                list.push((
                    name.to_string(),
                    PeerFigures {
                        events_per_cpu_sec: median(these.iter().map(|f| f.events_per_cpu_sec)),
                        peak_rss_mib: median(these.iter().map(|f| f.peak_rss_mib)),
                        output_rows: first.output_rows,
                    },
                ));
            }
        }
    }
    let medians = if runs > 1 {
        format!(" Each figure is the median of {runs} runs, interleaved per query with the peer's.")
    } else {
        String::new()
    };
    let mut body = format!(
        "{events} Nexmark events (the `nexmark` crate's generator, 1 : 3 : 46 person : auction : bid) generated \
         as fast as possible by three `nexmark` streams (`CREATE SOURCE bid (*) WITH (connector = 'nexmark', \
         nexmark.table.type = 'bid', ..)`, as RisingWave's suite declares them: nothing stored, each stream \
         generating only its own events, and only while a view reads it), one materialized view per run, a fresh \
         Freshet server (release build, WAL sync on) per query. Events/s: wall clock from the streams' creation to \
         the last event durable with the view maintained. Events/CPU-s: the same events over the server \
         process's user + system CPU time (the runner asks whether the streams are done every 50 ms, a query \
         the server plans each time). Peak RSS: the server's VmHWM. Batch: DataFusion answering the query \
         from scratch once over all the events (ad-hoc, same server, first run): what a recompute-per-change \
         system pays for every change.{medians}\n\n\
         | query | events/s | events/CPU-s | peak RSS MiB | view rows | batch recompute s | recompute events/s |\n\
         |---|---|---|---|---|---|---|\n"
    );
    for f in &all {
        body.push_str(&format!(
            "| {} | {:.0} | {:.0} | {:.0} | {} | {} |\n",
            f.name,
            f.events_per_sec,
            f.events_per_cpu_sec,
            f.peak_rss_mib,
            f.view_rows,
            // Not run (`FRESHET_BENCH_BASELINE=0`): a dash in both columns.
            f.batch_secs.map_or("— | —".to_string(), |s| format!(
                "{s:.2} | {:.0}",
                events as f64 / s.max(1e-6)
            ))
        ));
    }
    body.push_str(
        "\nEvery view, its operator state and the streams' positions are durable (RocksDB, one WriteBatch per \
         epoch of up to 20,000 events per stream): this is an end-to-end figure, not an in-memory operator \
         micro-benchmark. The batch baseline reads stored tables of the same events, filled after the run.\n",
    );
    body.push_str(
        "\n### Beside the peer: dbsp (Feldera's engine)\n\n\
         The same queries as DBSP circuits (`benches/peer`, crate `dbsp` 0.349.0, 1 worker, in memory, no \
         durability), over the same generator and base time, one DBSP transaction per 20,000 events, each query \
         in its own process, run by this bench in the same invocation; like Freshet's streams, it generates only \
         the events of the streams its circuit reads. \"dbsp\": the circuit emits changes only \
         (its default); \"dbsp, views kept\": it also keeps each view's contents (`integrate_trace`), as a \
         Freshet materialized view does. Ratios are Freshet / dbsp: above 1× Freshet does more events per \
         CPU-second, or uses more memory. \"same rows\": the Freshet view's row count equals the peer's \
         (q12 windows by processing time, so its rows depend on each run's timing, in both engines).\n\n\
         | query | Freshet events/CPU-s | dbsp events/CPU-s | ratio | dbsp views kept events/CPU-s | ratio | Freshet RSS MiB | dbsp RSS MiB | dbsp views kept RSS MiB | RSS ratio (views kept) | same rows |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    let find = |list: &[(String, PeerFigures)], name: &str| -> Option<(f64, f64, Option<i64>)> {
        list.iter()
            .find(|(n, _)| n == name)
            .map(|(_, f)| (f.events_per_cpu_sec, f.peak_rss_mib, f.output_rows))
    };
    let mut compared = 0;
    for f in &all {
        let (Some(p), Some(k)) = (find(&peer, f.name), find(&kept, f.name)) else {
            continue;
        };
        compared += 1;
        body.push_str(&format!(
            "| {} | {:.0} | {:.0} | {:.2}× | {:.0} | {:.2}× | {:.0} | {:.0} | {:.0} | {:.1}× | {} |\n",
            f.name,
            f.events_per_cpu_sec,
            p.0,
            f.events_per_cpu_sec / p.0.max(1e-6),
            k.0,
            f.events_per_cpu_sec / k.0.max(1e-6),
            f.peak_rss_mib,
            p.1,
            k.1,
            f.peak_rss_mib / k.1.max(1e-6),
            match p.2 {
                Some(n) if n == f.view_rows => "yes".to_string(),
                Some(n) => format!("no: {} vs {n}", f.view_rows),
                None => "?".to_string(),
            },
        ));
    }
    if compared == 0 {
        body.push_str("| (the peer did not run: see the bench's output) | | | | | | | | | | |\n");
    }
    let missing: Vec<&str> = all
        .iter()
        .filter(|f| find(&peer, f.name).is_none())
        .map(|f| f.name)
        .collect();
    if !missing.is_empty() {
        body.push_str(&format!("\nNo dbsp circuit yet for: {}.\n", missing.join(", ")));
    }
    println!("{body}");
    if common::wrapper().is_some() {
        println!("(the server ran under FRESHET_BENCH_SERVER_WRAPPER: BENCHMARKS.md left as it is)");
        return;
    }
    // The command that reproduces the table (the event count and runs when not the defaults).
    let mut command = String::new();
    if events != 1_000_000 {
        command.push_str(&format!("FRESHET_BENCH_EVENTS={events} "));
    }
    if runs > 1 {
        command.push_str(&format!("FRESHET_BENCH_RUNS={runs} "));
    }
    command.push_str("cargo bench --bench nexmark");
    common::write_section(
        "nexmark",
        "Nexmark: queries as materialized views over the generator",
        &command,
        &body,
    );
}
