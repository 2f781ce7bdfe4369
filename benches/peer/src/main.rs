//! Peer benchmark: Nexmark q0..q4 and q14 maintained incrementally by DBSP (crate `dbsp` 0.349.0, the
//! engine under Feldera), over the same `nexmark` event generator and the same base time as
//! Freshet's `benches/nexmark.rs`, so that the two can be compared.
//!
//! Per query, in a fresh child process (so that peak RSS and CPU time are the query's own):
//! generate N events, push them into the circuit's input Z-sets and run one DBSP transaction
//! per 20,000 events (Freshet's source batch); results are read each transaction through
//! `accumulate_output()`. (`DBSPHandle::transaction()` = start, commit, `step()` until the commit
//! completes: in 0.349 a bare `step()` runs inside an open transaction, and `accumulate_output`
//! publishes only when a transaction commits.) Timing covers event generation + the circuit, like Freshet's figure
//! (whose source generates events in the server process too). Prints one line per query:
//!
//! `q0 events_per_sec=<f> events_per_cpu_sec=<f> peak_rss_mib=<f> output_rows=<n>`
//!
//! * events_per_sec: N / wall-clock seconds;
//! * events_per_cpu_sec: N / (utime + stime) of the process (/proc/self/stat, all its threads);
//! * peak_rss_mib: VmHWM of /proc/self/status;
//! * output_rows: rows in the view after the last event (sum of the weights of all changes).
//!
//! The circuit runs with 1 worker (`Runtime::init_circuit(1, ..)`), in memory (no storage).
//! q1 computes `0.908 * price` as f64; q4's `avg` is an integer average (sum / count, i64).
//!
//! Run (a standalone cargo root, not part of Freshet's build):
//!
//! ```text
//! cd benches/peer
//! CARGO_TARGET_DIR=$HOME/.cache/freshet-peer cargo run --release
//! ```
//!
//! Env: `FRESHET_BENCH_EVENTS` (default 1,000,000), `FRESHET_BENCH_QUERIES=q0,q2` (a subset),
//! `FRESHET_PEER_MATERIALIZE=1` (also keep each view's contents in the circuit, see `output`).
//! `freshet-peer-dbsp q3` runs a single query in the current process.

use std::time::Instant;

use dbsp::algebra::F64;
use dbsp::operator::Max;
use dbsp::typed_batch::{IndexedZSetReader, SpineSnapshot};
use dbsp::utils::{Tup2, Tup3, Tup4, Tup5, Tup7};
use dbsp::{OrdIndexedZSet, Runtime, ZSetHandle, ZWeight};
use nexmark::config::NexmarkConfig;
use nexmark::event::Event;
use nexmark::EventGenerator;

const QUERIES: &[&str] = &["q0", "q1", "q2", "q3", "q4", "q14"];
/// Events per transaction (Freshet's nexmark source commits 20,000 events per batch).
const STEP: u64 = 20_000;

/// bid: (auction, bidder, price, date_time, extra)
type Bid = Tup5<u64, u64, u64, u64, String>;
/// auction: (id, seller, category, date_time, expires)
type Auction = Tup5<u64, u64, u64, u64, u64>;
/// person: (id, name, city, state)
type Person = Tup4<u64, String, String, String>;

/// Input handles of one circuit (only the streams its query reads) and a function that
/// counts the net rows of the last transaction's output.
struct Circuit {
    bid: Option<ZSetHandle<Bid>>,
    auction: Option<ZSetHandle<Auction>>,
    person: Option<ZSetHandle<Person>>,
    take_rows: Box<dyn Fn() -> i64 + Send>,
}

/// The view's output: a function returning the net number of rows (sum of weights) of the last
/// transaction's changes, read through `accumulate_output()`. With `FRESHET_PEER_MATERIALIZE=1`
/// the view's contents are also kept in the circuit (`integrate_trace`), as a materialized view
/// in Freshet is; by default DBSP only emits the changes.
fn output<B>(view: &dbsp::Stream<dbsp::RootCircuit, B>) -> Box<dyn Fn() -> i64 + Send>
where
    B: dbsp::Batch<Time = ()> + Send,
    SpineSnapshot<B>: IndexedZSetReader + Send + Clone,
{
    if std::env::var("FRESHET_PEER_MATERIALIZE").is_ok_and(|v| v == "1") {
        view.integrate_trace();
    }
    let out = view.accumulate_output();
    Box::new(move || {
        out.take_from_all()
            .iter()
            .map(|snapshot| snapshot.iter().map(|(_, _, w)| w).sum::<ZWeight>())
            .sum()
    })
}

fn build(query: &'static str) -> (dbsp::DBSPHandle, Circuit) {
    Runtime::init_circuit(1, move |c| {
        let mut circuit = Circuit {
            bid: None,
            auction: None,
            person: None,
            take_rows: Box::new(|| 0),
        };
        match query {
            "q0" => {
                let (bid, h) = c.add_input_zset::<Bid>();
                circuit.bid = Some(h);
                let view = bid.map(|b| b.clone());
                circuit.take_rows = output(&view);
            }
            "q1" => {
                let (bid, h) = c.add_input_zset::<Bid>();
                circuit.bid = Some(h);
                let view = bid.map(|Tup5(a, b, p, t, e)| Tup5(*a, *b, F64::new(0.908 * *p as f64), *t, e.clone()));
                circuit.take_rows = output(&view);
            }
            "q2" => {
                let (bid, h) = c.add_input_zset::<Bid>();
                circuit.bid = Some(h);
                let view = bid
                    .filter(|b| matches!(b.0, 1007 | 1020 | 2001 | 2019 | 2087))
                    .map(|b| Tup2(b.0, b.2));
                circuit.take_rows = output(&view);
            }
            "q3" => {
                let (auction, ha) = c.add_input_zset::<Auction>();
                let (person, hp) = c.add_input_zset::<Person>();
                circuit.auction = Some(ha);
                circuit.person = Some(hp);
                let a: dbsp::Stream<_, OrdIndexedZSet<u64, u64>> =
                    auction.filter(|a| a.2 == 10).map_index(|a| (a.1, a.0));
                let p: dbsp::Stream<_, OrdIndexedZSet<u64, Tup3<String, String, String>>> = person
                    .filter(|p| matches!(p.3.as_str(), "or" | "id" | "ca"))
                    .map_index(|p| (p.0, Tup3(p.1.clone(), p.2.clone(), p.3.clone())));
                let view = a.join(&p, |_seller, id, Tup3(name, city, state)| {
                    Tup4(name.clone(), city.clone(), state.clone(), *id)
                });
                circuit.take_rows = output(&view);
            }
            "q4" => {
                let (auction, ha) = c.add_input_zset::<Auction>();
                let (bid, hb) = c.add_input_zset::<Bid>();
                circuit.auction = Some(ha);
                circuit.bid = Some(hb);
                // id -> (category, date_time, expires); auction -> (price, date_time)
                let a: dbsp::Stream<_, OrdIndexedZSet<u64, Tup3<u64, u64, u64>>> =
                    auction.map_index(|a| (a.0, Tup3(a.2, a.3, a.4)));
                let b: dbsp::Stream<_, OrdIndexedZSet<u64, Tup2<u64, u64>>> = bid.map_index(|b| (b.0, Tup2(b.2, b.3)));
                // (id, category) -> price of the bids made while the auction was open
                let prices: dbsp::Stream<_, OrdIndexedZSet<Tup2<u64, u64>, u64>> =
                    a.join_index(&b, |id, Tup3(cat, start, end), Tup2(price, t)| {
                        (start <= t && t <= end).then_some((Tup2(*id, *cat), *price))
                    });
                let finals: dbsp::Stream<_, OrdIndexedZSet<u64, i64>> = prices
                    .aggregate(Max)
                    .map_index(|(Tup2(_id, cat), max)| (*cat, *max as i64));
                let view = finals.average(|v: &i64| *v);
                circuit.take_rows = output(&view);
            }
            "q14" => {
                let (bid, h) = c.add_input_zset::<Bid>();
                circuit.bid = Some(h);
                let view = bid
                    .filter(|b| {
                        let p = 0.908 * b.2 as f64;
                        p > 1_000_000.0 && p < 50_000_000.0
                    })
                    .map(|Tup5(a, b, p, t, e)| {
                        // The hour of the day (UTC) of a timestamp in ms since the Unix epoch.
                        let hour = (*t / 3_600_000) % 24;
                        let kind = if (8..=18).contains(&hour) {
                            "dayTime"
                        } else if hour <= 6 || hour >= 20 {
                            "nightTime"
                        } else {
                            "otherTime"
                        };
                        let c_counts = e.chars().filter(|c| *c == 'c').count() as u64;
                        Tup7(
                            *a,
                            *b,
                            F64::new(0.908 * *p as f64),
                            kind.to_string(),
                            *t,
                            e.clone(),
                            c_counts,
                        )
                    });
                circuit.take_rows = output(&view);
            }
            _ => panic!("unknown query {query}"),
        }
        Ok(circuit)
    })
    .expect("building the circuit")
}

/// (utime + stime in seconds, peak RSS in MiB) of this process.
fn usage() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    // After the command name: state is field 0, utime 11, stime 12 (clock ticks).
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let hwm_kib = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    ((ticks(11) + ticks(12)) / 100.0, hwm_kib / 1024.0)
}

fn run(query: &'static str, events: u64) {
    let (cpu0, _) = usage();
    let started = Instant::now();
    let (mut dbsp, circuit) = build(query);
    let mut generator = EventGenerator::new(NexmarkConfig {
        base_time: 1_700_000_000_000,
        ..Default::default()
    });
    let (mut bids, mut auctions, mut persons) = (Vec::new(), Vec::new(), Vec::new());
    let mut output_rows = 0i64;
    let mut done = 0;
    while done < events {
        let n = STEP.min(events - done);
        for event in generator.by_ref().take(n as usize) {
            match event {
                Event::Bid(b) if circuit.bid.is_some() => bids.push(Tup2(
                    Tup5(b.auction as u64, b.bidder as u64, b.price as u64, b.date_time, b.extra),
                    1,
                )),
                Event::Auction(a) if circuit.auction.is_some() => auctions.push(Tup2(
                    Tup5(a.id as u64, a.seller as u64, a.category as u64, a.date_time, a.expires),
                    1,
                )),
                Event::Person(p) if circuit.person.is_some() => {
                    persons.push(Tup2(Tup4(p.id as u64, p.name, p.city, p.state), 1))
                }
                _ => {}
            }
        }
        done += n;
        // `append` drains the vectors.
        circuit.bid.iter().for_each(|h| h.append(&mut bids));
        circuit.auction.iter().for_each(|h| h.append(&mut auctions));
        circuit.person.iter().for_each(|h| h.append(&mut persons));
        dbsp.transaction().expect("transaction");
        output_rows += (circuit.take_rows)();
    }
    let secs = started.elapsed().as_secs_f64();
    let (cpu1, peak_rss_mib) = usage();
    println!(
        "{query} events_per_sec={:.0} events_per_cpu_sec={:.0} peak_rss_mib={:.1} output_rows={output_rows}",
        events as f64 / secs,
        events as f64 / (cpu1 - cpu0).max(0.01),
        peak_rss_mib,
    );
    dbsp.kill().ok();
}

fn main() {
    let events: u64 = std::env::var("FRESHET_BENCH_EVENTS")
        .ok()
        .map(|v| v.replace('_', "").parse().expect("FRESHET_BENCH_EVENTS: a number"))
        .unwrap_or(1_000_000);
    if let Some(arg) = std::env::args().nth(1) {
        let query = QUERIES.iter().find(|q| **q == arg).expect("a query name: q0..q4, q14");
        return run(query, events);
    }
    let wanted = std::env::var("FRESHET_BENCH_QUERIES").unwrap_or_default();
    let exe = std::env::current_exe().expect("own executable");
    for query in QUERIES
        .iter()
        .filter(|q| wanted.is_empty() || wanted.split(',').any(|w| w == **q))
    {
        // A child process per query: its own peak RSS and CPU time, a fresh circuit.
        let status = std::process::Command::new(&exe).arg(query).status().expect("spawn");
        if !status.success() {
            eprintln!("{query} failed: {status}");
        }
    }
}
