//! Peer benchmark: the Nexmark queries Freshet runs (q0-q5, q7-q9, q13-q22) maintained
//! incrementally by DBSP (crate `dbsp` 0.349.0, the engine under Feldera), over the same `nexmark`
//! event generator as Freshet's `benches/nexmark.rs`, so that the two can be compared. One
//! circuit per query in `queries.rs`, computing Freshet's SQL (`QUERIES` of
//! `src/connectors/generator/nexmark.rs`).
//!
//! Per query, in a fresh child process (so that peak RSS and CPU time are the query's own):
//! generate N events (only those of the streams the circuit reads, by one type-filtered
//! generator per stream, as Freshet's streams do), push them into the circuit's input Z-sets
//! and run one DBSP transaction
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
//! q1 computes `0.908 * price` as f64; q4's `avg` is an integer average (sum / count, i64), q17's
//! a f64 one. Only the string columns a query reads are pushed into its circuit (see `EXTRA`).
//! The generator's base time is fixed (1,700,000,000,000 ms) where Freshet's source takes its
//! creation time: the rows of windowed views (q5, q7, q8) may differ slightly between the two,
//! unless `FRESHET_PEER_BASE_TIME` is set to the source's (its first person's `date_time`).
//!
//! Run (a standalone cargo root, not part of Freshet's build):
//!
//! ```text
//! cd benches/peer
//! CARGO_TARGET_DIR=$HOME/.cache/freshet-peer cargo run --release
//! ```
//!
//! Env: `FRESHET_BENCH_EVENTS` (default 1,000,000), `FRESHET_BENCH_QUERIES=q0,q2` (a subset),
//! `FRESHET_PEER_MATERIALIZE=1` (also keep each view's contents in the circuit, see `output`),
//! `FRESHET_PEER_BASE_TIME` (ms since the epoch, see above), `FRESHET_PEER_DUMP=<file>` (write
//! the view's changes, see `output`).
//! `freshet-peer-dbsp q3` runs a single query in the current process.

mod queries;

use std::io::{BufWriter, Write};
use std::sync::Mutex;
use std::time::Instant;

use dbsp::typed_batch::{IndexedZSetReader, SpineSnapshot};
use dbsp::utils::{Tup2, Tup5, Tup7};
use dbsp::{OrdZSet, RootCircuit, Runtime, Stream, ZSetHandle, ZWeight};
use nexmark::config::NexmarkConfig;
use nexmark::event::{Event, EventType};
use nexmark::EventGenerator;

use queries::QUERIES;

/// Events per transaction (Freshet's nexmark source commits 20,000 events per batch).
const STEP: u64 = 20_000;

/// bid: (auction, bidder, price, date_time, extra, channel, url)
pub type Bid = Tup7<u64, u64, u64, u64, String, String, String>;
/// auction: (id, seller, category, date_time, expires, item_name, initial_bid)
pub type Auction = Tup7<u64, u64, u64, u64, u64, String, u64>;
/// person: (id, name, city, state, date_time)
pub type Person = Tup5<u64, String, String, String, u64>;

/// The string columns of bids and auctions that a query reads (`Inputs::bid`,
/// `Inputs::auction`): the others are pushed as empty strings, so that a circuit copies only
/// what its query uses (person's name, city and state are always pushed).
pub const EXTRA: u8 = 1;
pub const CHANNEL_URL: u8 = 2;
pub const ITEM_NAME: u8 = 4;

/// The net number of rows (sum of weights) of the view's changes in the last transaction.
pub type Rows = Box<dyn Fn() -> i64 + Send>;

/// The input streams of a circuit being built: a query asks only for those it reads.
pub struct Inputs<'a> {
    circuit: &'a RootCircuit,
    bid: Option<ZSetHandle<Bid>>,
    auction: Option<ZSetHandle<Auction>>,
    person: Option<ZSetHandle<Person>>,
    /// EXTRA | CHANNEL_URL | ITEM_NAME: the string columns read.
    strings: u8,
}

impl Inputs<'_> {
    /// The bids, with the string columns `strings` (the others empty).
    pub fn bid(&mut self, strings: u8) -> Stream<RootCircuit, OrdZSet<Bid>> {
        let (stream, handle) = self.circuit.add_input_zset::<Bid>();
        self.bid = Some(handle);
        self.strings |= strings;
        stream
    }

    /// The auctions, with the string columns `strings` (the others empty).
    pub fn auction(&mut self, strings: u8) -> Stream<RootCircuit, OrdZSet<Auction>> {
        let (stream, handle) = self.circuit.add_input_zset::<Auction>();
        self.auction = Some(handle);
        self.strings |= strings;
        stream
    }

    pub fn person(&mut self) -> Stream<RootCircuit, OrdZSet<Person>> {
        let (stream, handle) = self.circuit.add_input_zset::<Person>();
        self.person = Some(handle);
        stream
    }
}

/// Input handles of one circuit (only the streams its query reads), the string columns it
/// reads, and its output.
struct Circuit {
    bid: Option<ZSetHandle<Bid>>,
    auction: Option<ZSetHandle<Auction>>,
    person: Option<ZSetHandle<Person>>,
    strings: u8,
    take_rows: Rows,
}

/// The view's output: a function returning the net number of rows (sum of weights) of the last
/// transaction's changes, read through `accumulate_output()`. With `FRESHET_PEER_MATERIALIZE=1`
/// the view's contents are also kept in the circuit (`integrate_trace`), as a materialized view
/// in Freshet is; by default DBSP only emits the changes. With `FRESHET_PEER_DUMP=<file>` the
/// changes are also written to the file, one `<key>\t<value>\t<weight>` line each (to check
/// a view's contents against Freshet's).
pub fn output<B>(view: &Stream<RootCircuit, B>) -> Rows
where
    B: dbsp::Batch<Time = ()> + Send,
    SpineSnapshot<B>: IndexedZSetReader + Send + Clone,
{
    if std::env::var("FRESHET_PEER_MATERIALIZE").is_ok_and(|v| v == "1") {
        view.integrate_trace();
    }
    let out = view.accumulate_output();
    let dump = std::env::var("FRESHET_PEER_DUMP").ok().map(|path| {
        let file = std::fs::File::create(&path).unwrap_or_else(|e| panic!("FRESHET_PEER_DUMP {path}: {e}"));
        Mutex::new(BufWriter::new(file))
    });
    Box::new(move || {
        let mut rows: ZWeight = 0;
        for snapshot in out.take_from_all() {
            for (key, val, w) in snapshot.iter() {
                rows += w;
                if let Some(dump) = &dump {
                    writeln!(dump.lock().unwrap(), "{key:?}\t{val:?}\t{w}").expect("FRESHET_PEER_DUMP");
                }
            }
        }
        if let Some(dump) = &dump {
            dump.lock().unwrap().flush().expect("FRESHET_PEER_DUMP");
        }
        rows
    })
}

fn build(query: fn(&mut Inputs) -> Rows) -> (dbsp::DBSPHandle, Circuit) {
    Runtime::init_circuit(1, move |c| {
        let mut io = Inputs {
            circuit: c,
            bid: None,
            auction: None,
            person: None,
            strings: 0,
        };
        let take_rows = query(&mut io);
        Ok(Circuit {
            bid: io.bid,
            auction: io.auction,
            person: io.person,
            strings: io.strings,
            take_rows,
        })
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

fn run(query: &str, circuit: fn(&mut Inputs) -> Rows, events: u64) {
    let (cpu0, _) = usage();
    let started = Instant::now();
    let (mut dbsp, circuit) = build(circuit);
    // FRESHET_PEER_BASE_TIME (ms since the epoch): to compare a view with a Freshet source's,
    // whose base time is its creation time.
    let base_time = std::env::var("FRESHET_PEER_BASE_TIME")
        .ok()
        .map(|v| v.parse().expect("FRESHET_PEER_BASE_TIME: ms since the epoch"))
        .unwrap_or(1_700_000_000_000);
    let config = NexmarkConfig {
        base_time,
        ..Default::default()
    };
    // One generator per stream the circuit reads, each making only that stream's events (as
    // Freshet's streams do): the same events as one generator of all three, without the
    // others' cost.
    let mut generators: Vec<(EventType, EventGenerator)> = [
        (EventType::Bid, circuit.bid.is_some()),
        (EventType::Auction, circuit.auction.is_some()),
        (EventType::Person, circuit.person.is_some()),
    ]
    .into_iter()
    .filter(|(_, read)| *read)
    .map(|(t, _)| (t, EventGenerator::new(config.clone()).with_type_filter(t)))
    .collect();
    let keep = |s: String, column: u8| {
        if circuit.strings & column != 0 {
            s
        } else {
            String::new()
        }
    };
    let (mut bids, mut auctions, mut persons) = (Vec::new(), Vec::new(), Vec::new());
    let mut output_rows = 0i64;
    let mut done = 0;
    while done < events {
        let n = STEP.min(events - done);
        let batch = generators.iter_mut().flat_map(|(t, g)| {
            let count = count_before(&config, *t, done + n) - count_before(&config, *t, done);
            g.by_ref().take(count as usize)
        });
        for event in batch {
            match event {
                Event::Bid(b) if circuit.bid.is_some() => bids.push(Tup2(
                    Tup7(
                        b.auction as u64,
                        b.bidder as u64,
                        b.price as u64,
                        b.date_time,
                        keep(b.extra, EXTRA),
                        keep(b.channel, CHANNEL_URL),
                        keep(b.url, CHANNEL_URL),
                    ),
                    1,
                )),
                Event::Auction(a) if circuit.auction.is_some() => auctions.push(Tup2(
                    Tup7(
                        a.id as u64,
                        a.seller as u64,
                        a.category as u64,
                        a.date_time,
                        a.expires,
                        keep(a.item_name, ITEM_NAME),
                        a.initial_bid as u64,
                    ),
                    1,
                )),
                Event::Person(p) if circuit.person.is_some() => {
                    persons.push(Tup2(Tup5(p.id as u64, p.name, p.city, p.state, p.date_time), 1))
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

/// How many of the events numbered `0..global` are of type `t` (the generator's proportions;
/// events are not shuffled by default).
fn count_before(config: &NexmarkConfig, t: EventType, global: u64) -> u64 {
    let (p, a, b) = (
        config.person_proportion as u64,
        config.auction_proportion as u64,
        config.bid_proportion as u64,
    );
    let (full, rem) = (global / (p + a + b), global % (p + a + b));
    match t {
        EventType::Person => full * p + rem.min(p),
        EventType::Auction => full * a + rem.saturating_sub(p).min(a),
        EventType::Bid => full * b + rem.saturating_sub(p + a).min(b),
    }
}

fn main() {
    let events: u64 = std::env::var("FRESHET_BENCH_EVENTS")
        .ok()
        .map(|v| v.replace('_', "").parse().expect("FRESHET_BENCH_EVENTS: a number"))
        .unwrap_or(1_000_000);
    if let Some(arg) = std::env::args().nth(1) {
        let (name, circuit) = QUERIES.iter().find(|(q, _)| *q == arg).expect(
            "a query name: q0, q1, q2, q3, q4, q5, q7, q8, q9, q13, q14, q15, q16, q17, q18, q19, q20, q21, q22",
        );
        return run(name, *circuit, events);
    }
    let wanted = std::env::var("FRESHET_BENCH_QUERIES").unwrap_or_default();
    let exe = std::env::current_exe().expect("own executable");
    for (query, _) in QUERIES
        .iter()
        .filter(|(q, _)| wanted.is_empty() || wanted.split(',').any(|w| w == *q))
    {
        // A child process per query: its own peak RSS and CPU time, a fresh circuit.
        let status = std::process::Command::new(&exe).arg(query).status().expect("spawn");
        if !status.success() {
            eprintln!("{query} failed: {status}");
        }
    }
}
