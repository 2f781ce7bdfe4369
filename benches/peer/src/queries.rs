//! The Nexmark queries as DBSP circuits, one function per query (Freshet's SQL in
//! `src/connectors/generator/nexmark.rs`, `QUERIES`).
//!
//! Timestamps are ms since the Unix epoch (Freshet's `timestamp` columns hold the same instants
//! in µs): TUMBLE / HOP windows are aligned on the epoch, `to_char(date_time, 'YYYY-MM-DD')` is
//! the UTC day and `'HH24:MI'` the UTC minute. Grouping keys derived from a timestamp (day,
//! minute) are kept as integers inside the circuit and printed as Freshet's strings in the
//! view's rows. A view's row is its key and value: e.g. q9's `(id, (price, bid_date_time, ..))`.

use std::cmp::Ordering;

use dbsp::algebra::F64;
use dbsp::operator::{Max, Min};
use dbsp::storage::file::Deserializable;
use dbsp::utils::{Tup10, Tup2, Tup3, Tup4, Tup5, Tup6, Tup7, Tup8};
use dbsp::{CmpFunc, DBData, OrdIndexedZSet, OrdZSet, RootCircuit, Stream};

use crate::{output, Auction, Bid, Inputs, Rows, CHANNEL_URL, EXTRA, ITEM_NAME};

type Indexed<K, V> = Stream<RootCircuit, OrdIndexedZSet<K, V>>;

/// The queries: name → the function adding its circuit.
pub const QUERIES: &[(&str, fn(&mut Inputs) -> Rows)] = &[
    ("q0", q0),
    ("q1", q1),
    ("q2", q2),
    ("q3", q3),
    ("q4", q4),
    ("q5", q5),
    ("q6", q6),
    ("q7", q7),
    ("q8", q8),
    ("q9", q9),
    ("q12", q12),
    ("q13", q13),
    ("q14", q14),
    ("q15", q15),
    ("q16", q16),
    ("q17", q17),
    ("q18", q18),
    ("q19", q19),
    ("q20", q20),
    ("q21", q21),
    ("q22", q22),
];

const SECOND: u64 = 1_000;
const DAY: u64 = 86_400 * SECOND;

/// `TUMBLE(.., INTERVAL '10' SECOND)`: the start of the window holding `t`.
fn tumble_start(t: u64) -> u64 {
    t - t % (10 * SECOND)
}

/// `HOP(.., INTERVAL '2' SECOND, INTERVAL '10' SECOND)`: the starts of the 5 windows holding `t`.
fn hop_starts(t: u64) -> impl Iterator<Item = u64> {
    let last = t - t % (2 * SECOND);
    (0..5).map(move |i| last - i * 2 * SECOND)
}

/// The day (since the epoch) of `t`: `to_char(date_time, 'YYYY-MM-DD')` as a number.
fn day(t: u64) -> u64 {
    t / DAY
}

/// `to_char(date_time, 'YYYY-MM-DD')` of a day since the epoch (proleptic Gregorian, UTC).
fn day_string(day: u64) -> String {
    // Howard Hinnant's civil_from_days.
    let z = day as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The minute of the day of `t`: `to_char(date_time, 'HH24:MI')` as a number.
fn minute_of_day(t: u64) -> u64 {
    (t % DAY) / (60 * SECOND)
}

/// `to_char(date_time, 'HH24:MI')` of a minute of the day.
fn minute_string(minute: u64) -> String {
    format!("{:02}:{:02}", minute / 60, minute % 60)
}

fn q0(io: &mut Inputs) -> Rows {
    let bid = io.bid(EXTRA);
    let view = bid.map(|b| Tup5(b.0, b.1, b.2, b.3, b.4.clone()));
    output(&view)
}

fn q1(io: &mut Inputs) -> Rows {
    let bid = io.bid(EXTRA);
    let view = bid.map(|b| Tup5(b.0, b.1, F64::new(0.908 * b.2 as f64), b.3, b.4.clone()));
    output(&view)
}

fn q2(io: &mut Inputs) -> Rows {
    let bid = io.bid(0);
    let view = bid
        .filter(|b| matches!(b.0, 1007 | 1020 | 2001 | 2019 | 2087))
        .map(|b| Tup2(b.0, b.2));
    output(&view)
}

fn q3(io: &mut Inputs) -> Rows {
    let auction = io.auction(0);
    let person = io.person();
    let a: Indexed<u64, u64> = auction.filter(|a| a.2 == 10).map_index(|a| (a.1, a.0));
    let p: Indexed<u64, Tup3<String, String, String>> = person
        .filter(|p| matches!(p.3.as_str(), "or" | "id" | "ca"))
        .map_index(|p| (p.0, Tup3(p.1.clone(), p.2.clone(), p.3.clone())));
    let view = a.join(&p, |_seller, id, Tup3(name, city, state)| {
        Tup4(name.clone(), city.clone(), state.clone(), *id)
    });
    output(&view)
}

fn q4(io: &mut Inputs) -> Rows {
    let auction = io.auction(0);
    let bid = io.bid(0);
    // id -> (category, date_time, expires); auction -> (price, date_time)
    let a: Indexed<u64, Tup3<u64, u64, u64>> = auction.map_index(|a| (a.0, Tup3(a.2, a.3, a.4)));
    let b: Indexed<u64, Tup2<u64, u64>> = bid.map_index(|b| (b.0, Tup2(b.2, b.3)));
    // (id, category) -> price of the bids made while the auction was open
    let prices: Indexed<Tup2<u64, u64>, u64> = a.join_index(&b, |id, Tup3(cat, start, end), Tup2(price, t)| {
        (start <= t && t <= end).then_some((Tup2(*id, *cat), *price))
    });
    let finals: Indexed<u64, i64> = prices
        .aggregate(Max)
        .map_index(|(Tup2(_id, cat), max)| (*cat, *max as i64));
    let view = finals.average(|v: &i64| *v);
    output(&view)
}

fn q5(io: &mut Inputs) -> Rows {
    let bid = io.bid(0);
    // (window_start, auction) -> count(*)
    let counts: Indexed<Tup2<u64, u64>, i64> = bid
        .flat_map_index(|b| {
            let auction = b.0;
            hop_starts(b.3).map(move |start| (Tup2(start, auction), ()))
        })
        .weighted_count();
    // window_start -> max(num)
    let max_bids: Indexed<u64, i64> = counts.map_index(|(Tup2(start, _), n)| (*start, *n)).aggregate(Max);
    let auction_bids: Indexed<u64, Tup2<u64, i64>> =
        counts.map_index(|(Tup2(start, auction), n)| (*start, Tup2(*auction, *n)));
    let view = auction_bids.join_flatmap(&max_bids, |_start, Tup2(auction, num), maxn| {
        (num >= maxn).then_some(Tup2(*auction, *num))
    });
    output(&view)
}

/// q6's bids of an auction: (price, bid date_time, seller).
type Q6Bid = Tup3<u64, u64, u64>;

/// The winning bid of an auction: price DESC, date_time ASC (then the rest, for a total order).
struct Q6BidOrder;

impl CmpFunc<Q6Bid> for Q6BidOrder {
    fn cmp(l: &Q6Bid, r: &Q6Bid) -> Ordering {
        r.0.cmp(&l.0).then(l.1.cmp(&r.1)).then_with(|| l.cmp(r))
    }
}

/// A seller's winning bids: (bid date_time, auction id, price).
type Q6Win = Tup3<u64, u64, u64>;

/// A seller's most recent winning bids first: date_time DESC, id DESC.
struct Q6LatestOrder;

impl CmpFunc<Q6Win> for Q6LatestOrder {
    fn cmp(l: &Q6Win, r: &Q6Win) -> Ordering {
        r.0.cmp(&l.0).then(r.1.cmp(&l.1)).then_with(|| l.cmp(r))
    }
}

fn q6(io: &mut Inputs) -> Rows {
    let auction = io.auction(0);
    let bid = io.bid(0);
    // id -> (seller, date_time, expires); auction -> (price, date_time)
    let a: Indexed<u64, Tup3<u64, u64, u64>> = auction.map_index(|a| (a.0, Tup3(a.1, a.3, a.4)));
    let b: Indexed<u64, Tup2<u64, u64>> = bid.map_index(|b| (b.0, Tup2(b.2, b.3)));
    // The bids made while the auction was open.
    let bids: Indexed<u64, Q6Bid> = a.join_index(&b, |id, Tup3(seller, start, end), Tup2(price, t)| {
        (start <= t && t <= end).then_some((*id, Tup3(*price, *t, *seller)))
    });
    // row_number() OVER (PARTITION BY a.id ORDER BY b.price DESC, b.date_time ASC) <= 1
    let winners: Indexed<u64, Q6Bid> = bids.topk_row_number_custom_order::<Q6BidOrder, _, _>(1, |_n, v: &Q6Bid| *v);
    let by_seller: Indexed<u64, Q6Win> =
        winners.map_index(|(id, Tup3(price, t, seller))| (*seller, Tup3(*t, *id, *price)));
    // row_number() OVER (PARTITION BY seller ORDER BY date_time DESC, id DESC) <= 10
    let recent: Indexed<u64, Q6Win> =
        by_seller.topk_row_number_custom_order::<Q6LatestOrder, _, _>(10, |_n, v: &Q6Win| *v);
    // avg(final) per seller (an integer average, as in q4).
    let view = recent
        .map_index(|(seller, Tup3(_t, _id, price))| (*seller, *price as i64))
        .average(|v: &i64| *v);
    output(&view)
}

fn q7(io: &mut Inputs) -> Rows {
    let bid = io.bid(0);
    // window_end -> max(price), indexed by the price
    let max_price: Indexed<u64, u64> = bid
        .map_index(|b| (tumble_start(b.3) + 10 * SECOND, b.2))
        .aggregate(Max)
        .map_index(|(end, price)| (*price, *end));
    // price -> (auction, bidder, date_time)
    let bids: Indexed<u64, Tup3<u64, u64, u64>> = bid.map_index(|b| (b.2, Tup3(b.0, b.1, b.3)));
    let view = bids.join_flatmap(&max_price, |price, Tup3(auction, bidder, t), end| {
        (*end - 10 * SECOND <= *t && t <= end).then_some(Tup4(*auction, *price, *bidder, *t))
    });
    output(&view)
}

fn q8(io: &mut Inputs) -> Rows {
    let person = io.person();
    let auction = io.auction(0);
    // GROUP BY id, name, window: (id, window_start) -> name
    let p: Indexed<Tup2<u64, u64>, String> = person
        .map_index(|p| (Tup2(p.0, tumble_start(p.4)), p.1.clone()))
        .distinct();
    // GROUP BY seller, window: (seller, window_start)
    let a: Indexed<Tup2<u64, u64>, ()> = auction.map_index(|a| (Tup2(a.1, tumble_start(a.3)), ())).distinct();
    let view = p.join(&a, |Tup2(id, start), name, ()| Tup3(*id, name.clone(), *start));
    output(&view)
}

/// q9's candidate rows: (price, bid date_time, bidder, item_name, seller, category).
type Q9Row = Tup6<u64, u64, u64, String, u64, u64>;

/// q9's order: price DESC, date_time ASC (then the rest, for a total order).
struct Q9Order;

impl CmpFunc<Q9Row> for Q9Order {
    fn cmp(l: &Q9Row, r: &Q9Row) -> Ordering {
        r.0.cmp(&l.0).then(l.1.cmp(&r.1)).then_with(|| l.cmp(r))
    }
}

fn q9(io: &mut Inputs) -> Rows {
    let auction = io.auction(ITEM_NAME);
    let bid = io.bid(0);
    // id -> (item_name, seller, category, date_time, expires)
    let a: Indexed<u64, Tup5<String, u64, u64, u64, u64>> =
        auction.map_index(|a| (a.0, Tup5(a.5.clone(), a.1, a.2, a.3, a.4)));
    // auction -> (bidder, price, date_time)
    let b: Indexed<u64, Tup3<u64, u64, u64>> = bid.map_index(|b| (b.0, Tup3(b.1, b.2, b.3)));
    // The bids made while the auction was open.
    let bids: Indexed<u64, Q9Row> = a.join_index(
        &b,
        |id, Tup5(item_name, seller, category, start, end), Tup3(bidder, price, t)| {
            (start <= t && t <= end).then(|| (*id, Tup6(*price, *t, *bidder, item_name.clone(), *seller, *category)))
        },
    );
    // row_number() OVER (PARTITION BY a.id ORDER BY b.price DESC, b.date_time ASC) <= 1; the
    // view's row: id (= auction) -> (item_name, seller, category, bidder, price, bid_date_time)
    let view = bids.topk_row_number_custom_order::<Q9Order, _, _>(1, |_row_number, v: &Q9Row| {
        let Tup6(price, t, bidder, item_name, seller, category) = v;
        Tup6(item_name.clone(), *seller, *category, *bidder, *price, *t)
    });
    output(&view)
}

/// q12: bids per bidder in 10-second windows of processing time: the wall clock when the
/// circuit first sees each bid (Freshet's `p_time` is when it writes the bid). The windows, so
/// the rows, depend on the run's timing, in both engines.
fn q12(io: &mut Inputs) -> Rows {
    let bid = io.bid(0);
    let view: Indexed<Tup2<u64, u64>, i64> = bid
        .map_index(|b| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0);
            (Tup2(b.1, tumble_start(now)), ())
        })
        .weighted_count();
    output(&view)
}

/// q13: bids with the value of their auction's side-input row (`auction % 10000`). The suites
/// read the side input from a file and look it up (a lookup join against a static table): here
/// 10,000 values built once, looked up per bid.
fn q13(io: &mut Inputs) -> Rows {
    let bid = io.bid(0);
    let side: std::sync::Arc<Vec<String>> = std::sync::Arc::new(
        (0..10_000u64)
            .map(|k| format!("{:016x}", k.wrapping_mul(0x9E37_79B9_7F4A_7C15)))
            .collect(),
    );
    let view = bid.map(move |b: &Bid| Tup5(b.0, b.1, b.2, b.3, side[(b.0 % 10_000) as usize].clone()));
    output(&view)
}

fn q14(io: &mut Inputs) -> Rows {
    let bid = io.bid(EXTRA);
    let view = bid
        .filter(|b| {
            let p = 0.908 * b.2 as f64;
            p > 1_000_000.0 && p < 50_000_000.0
        })
        .map(|b| {
            // The hour of the day (UTC) of a timestamp in ms since the Unix epoch.
            let hour = (b.3 / 3_600_000) % 24;
            let kind = if (8..=18).contains(&hour) {
                "dayTime"
            } else if hour <= 6 || hour >= 20 {
                "nightTime"
            } else {
                "otherTime"
            };
            let c_counts = b.4.chars().filter(|c| *c == 'c').count() as u64;
            Tup7(
                b.0,
                b.1,
                F64::new(0.908 * b.2 as f64),
                kind.to_string(),
                b.3,
                b.4.clone(),
                c_counts,
            )
        });
    output(&view)
}

/// Counts for all bids and per price band: (all, price < 10,000, < 1,000,000, the rest).
type Bands = Tup4<i64, i64, i64, i64>;

/// The price band of a bid: 1, 2 or 3 (`price_rank_counts!` in Freshet's QUERIES).
fn band(price: u64) -> u8 {
    if price < 10_000 {
        1
    } else if price < 1_000_000 {
        2
    } else {
        3
    }
}

/// `n` in slot `slot` (0: all bids, 1..3: a band) of a `Bands`.
fn in_slot(slot: u8, n: i64) -> Bands {
    let at = |i| if slot == i { n } else { 0 };
    Tup4(at(0), at(1), at(2), at(3))
}

/// q15's and q16's aggregates per `key` of the bids: (count(*), count(*) FILTER per band),
/// (count(DISTINCT bidder) [FILTER per band]), (count(DISTINCT auction) [FILTER per band]).
fn price_rank_counts<K>(
    bid: &Stream<RootCircuit, OrdZSet<Bid>>,
    key: fn(&Bid) -> K,
) -> Indexed<K, Tup3<Bands, Bands, Bands>>
where
    K: DBData,
    <K as Deserializable>::ArchivedDeser: Ord,
    <Tup2<K, u8> as Deserializable>::ArchivedDeser: Ord,
{
    let bids: Indexed<K, Bands> = bid
        .map_index(move |b| (key(b), band(b.2)))
        .aggregate_linear(|band: &u8| {
            let Tup4(_, r1, r2, r3) = in_slot(*band, 1);
            Tup4(1, r1, r2, r3)
        });
    // Distinct values per (key, slot), each bid in slot 0 and in its band's, then the counts
    // of the slots pivoted into one `Bands` per key (a sum of one-slot vectors).
    let distinct = |id: fn(&Bid) -> u64| -> Indexed<K, Bands> {
        bid.flat_map_index(move |b| {
            let (k, id) = (key(b), id(b));
            [(Tup2(k.clone(), 0), id), (Tup2(k, band(b.2)), id)]
        })
        .distinct_count()
        .map_index(|(Tup2(k, slot), n)| (k.clone(), in_slot(*slot, *n)))
        .aggregate_linear(|v: &Bands| v.clone())
    };
    let bidders = distinct(|b| b.1);
    let auctions = distinct(|b| b.0);
    bids.join_index(&bidders, |k, bids, bidders| {
        Some((k.clone(), Tup2(bids.clone(), bidders.clone())))
    })
    .join_index(&auctions, |k, Tup2(bids, bidders), auctions| {
        Some((k.clone(), Tup3(bids.clone(), bidders.clone(), auctions.clone())))
    })
}

fn q15(io: &mut Inputs) -> Rows {
    let bid = io.bid(0);
    // (day, (total_bids, rank1..3_bids), (total_bidders, ..), (total_auctions, ..))
    let view = price_rank_counts(&bid, |b| day(b.3)).map(|(d, Tup3(bids, bidders, auctions))| {
        Tup4(day_string(*d), bids.clone(), bidders.clone(), auctions.clone())
    });
    output(&view)
}

fn q16(io: &mut Inputs) -> Rows {
    let bid = io.bid(CHANNEL_URL);
    let counts = price_rank_counts(&bid, |b| Tup2(b.5.clone(), day(b.3)));
    // max(to_char(date_time, 'HH24:MI')) per (channel, day)
    let minute: Indexed<Tup2<String, u64>, u64> = bid
        .map_index(|b| (Tup2(b.5.clone(), day(b.3)), minute_of_day(b.3)))
        .aggregate(Max);
    // (channel, day, minute, (total_bids, ..), (total_bidders, ..), (total_auctions, ..))
    let view = counts.join(&minute, |Tup2(channel, d), Tup3(bids, bidders, auctions), minute| {
        Tup6(
            channel.clone(),
            day_string(*d),
            minute_string(*minute),
            bids.clone(),
            bidders.clone(),
            auctions.clone(),
        )
    });
    output(&view)
}

fn q17(io: &mut Inputs) -> Rows {
    let bid = io.bid(0);
    // (auction, day) -> price
    let prices: Indexed<Tup2<u64, u64>, u64> = bid.map_index(|b| (Tup2(b.0, day(b.3)), b.2));
    // count(*), sum(CASE WHEN price < 10000 THEN 1 ELSE 0 END), sum(price)
    let sums: Indexed<Tup2<u64, u64>, Tup3<i64, i64, i64>> =
        prices.aggregate_linear(|p: &u64| Tup3(1, i64::from(*p < 10_000), *p as i64));
    let min: Indexed<Tup2<u64, u64>, u64> = prices.aggregate(Min);
    let max: Indexed<Tup2<u64, u64>, u64> = prices.aggregate(Max);
    // (auction, day, total_bids, rank1_bids, min_price, max_price, avg_price, sum_price)
    let view = sums
        .join_index(&min, |k, sums, min| Some((k.clone(), Tup2(sums.clone(), *min))))
        .join(&max, |Tup2(auction, d), Tup2(Tup3(n, rank1, sum), min), max| {
            Tup8(
                *auction,
                day_string(*d),
                *n,
                *rank1,
                *min,
                *max,
                F64::new(*sum as f64 / *n as f64),
                *sum,
            )
        });
    output(&view)
}

/// q18's rows per (bidder, auction): (date_time, price, channel, url).
type Q18Row = Tup4<u64, u64, String, String>;

/// q18's order: date_time DESC, price DESC (then the rest, for a total order).
struct Q18Order;

impl CmpFunc<Q18Row> for Q18Order {
    fn cmp(l: &Q18Row, r: &Q18Row) -> Ordering {
        r.0.cmp(&l.0).then(r.1.cmp(&l.1)).then_with(|| l.cmp(r))
    }
}

fn q18(io: &mut Inputs) -> Rows {
    let bid = io.bid(CHANNEL_URL);
    let bids: Indexed<Tup2<u64, u64>, Q18Row> =
        bid.map_index(|b| (Tup2(b.1, b.0), Tup4(b.3, b.2, b.5.clone(), b.6.clone())));
    // row_number() OVER (PARTITION BY bidder, auction ORDER BY date_time DESC, price DESC) <= 1;
    // the view's row: (bidder, auction) -> (price, channel, url, date_time)
    let view = bids.topk_row_number_custom_order::<Q18Order, _, _>(1, |_row_number, v: &Q18Row| {
        Tup4(v.1, v.2.clone(), v.3.clone(), v.0)
    });
    output(&view)
}

/// q19's rows per auction: (price, bidder, date_time, channel, url).
type Q19Row = Tup5<u64, u64, u64, String, String>;

/// q19's order: price DESC, bidder, date_time (then the rest, for a total order).
struct Q19Order;

impl CmpFunc<Q19Row> for Q19Order {
    fn cmp(l: &Q19Row, r: &Q19Row) -> Ordering {
        r.0.cmp(&l.0).then_with(|| l.cmp(r))
    }
}

fn q19(io: &mut Inputs) -> Rows {
    let bid = io.bid(CHANNEL_URL);
    let bids: Indexed<u64, Q19Row> = bid.map_index(|b| (b.0, Tup5(b.2, b.1, b.3, b.5.clone(), b.6.clone())));
    // row_number() OVER (PARTITION BY auction ORDER BY price DESC, bidder, date_time) <= 10;
    // the view's row: auction -> (bidder, price, channel, url, date_time, rank_number)
    let view = bids.topk_row_number_custom_order::<Q19Order, _, _>(10, |rank_number, v: &Q19Row| {
        let Tup5(price, bidder, t, channel, url) = v;
        Tup6(*bidder, *price, channel.clone(), url.clone(), *t, rank_number)
    });
    output(&view)
}

fn q20(io: &mut Inputs) -> Rows {
    let bid = io.bid(CHANNEL_URL);
    let auction = io.auction(ITEM_NAME);
    // auction -> (bidder, price, channel, url, date_time)
    let b: Indexed<u64, Tup5<u64, u64, String, String, u64>> =
        bid.map_index(|b| (b.0, Tup5(b.1, b.2, b.5.clone(), b.6.clone(), b.3)));
    // id -> (item_name, initial_bid, seller, category)
    let a: Indexed<u64, Tup4<String, u64, u64, u64>> = auction
        .filter(|a: &Auction| a.2 == 10)
        .map_index(|a| (a.0, Tup4(a.5.clone(), a.6, a.1, a.2)));
    let view = b.join(
        &a,
        |auction, Tup5(bidder, price, channel, url, t), Tup4(item_name, initial_bid, seller, category)| {
            Tup10(
                *auction,
                *bidder,
                *price,
                channel.clone(),
                url.clone(),
                *t,
                item_name.clone(),
                *initial_bid,
                *seller,
                *category,
            )
        },
    );
    output(&view)
}

/// `(regexp_match(url, '(&|^)channel_id=([^&]*)'))[2]`: the value of the first `channel_id`
/// parameter that starts the url or follows a `&`.
fn channel_id(url: &str) -> Option<&str> {
    const NAME: &str = "channel_id=";
    let mut from = 0;
    while let Some(i) = url[from..].find(NAME) {
        let at = from + i;
        if at == 0 || url.as_bytes()[at - 1] == b'&' {
            return url[at + NAME.len()..].split('&').next();
        }
        from = at + 1;
    }
    None
}

fn q21(io: &mut Inputs) -> Rows {
    let bid = io.bid(CHANNEL_URL);
    // The rows whose channel_id is not NULL (the WHERE clause is exactly that).
    let view = bid.flat_map(|b| {
        let id = match b.5.to_lowercase().as_str() {
            "apple" => Some("0"),
            "google" => Some("1"),
            "facebook" => Some("2"),
            "baidu" => Some("3"),
            _ => channel_id(&b.6),
        };
        id.map(|id| Tup5(b.0, b.1, b.2, b.5.clone(), id.to_string()))
    });
    output(&view)
}

/// `split_part(s, '/', n)`: the n-th (from 1) field of `s` split at '/', or '' past the last.
fn split_part(s: &str, n: usize) -> String {
    s.split('/').nth(n - 1).unwrap_or("").to_string()
}

fn q22(io: &mut Inputs) -> Rows {
    let bid = io.bid(CHANNEL_URL);
    let view = bid.map(|b| {
        Tup7(
            b.0,
            b.1,
            b.2,
            b.5.clone(),
            split_part(&b.6, 4),
            split_part(&b.6, 5),
            split_part(&b.6, 6),
        )
    });
    output(&view)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_and_minutes() {
        assert_eq!(day_string(0), "1970-01-01");
        // 1,700,000,000,000 ms = 2023-11-14 22:13:20 UTC
        let t = 1_700_000_000_000;
        assert_eq!(day_string(day(t)), "2023-11-14");
        assert_eq!(minute_string(minute_of_day(t)), "22:13");
        assert_eq!(day_string(day(951_782_400_000)), "2000-02-29");
        assert_eq!(day_string(day(4_102_444_799_000)), "2099-12-31");
    }

    #[test]
    fn windows() {
        assert_eq!(tumble_start(1_700_000_009_999), 1_700_000_000_000);
        let starts: Vec<u64> = hop_starts(1_700_000_003_000).collect();
        assert_eq!(
            starts,
            [
                1_700_000_002_000,
                1_700_000_000_000,
                1_699_999_998_000,
                1_699_999_996_000,
                1_699_999_994_000
            ]
        );
    }

    #[test]
    fn url_functions() {
        assert_eq!(
            channel_id("https://x/a/b/c/item.htm?query=1&channel_id=123"),
            Some("123")
        );
        assert_eq!(channel_id("channel_id=7&x=1"), Some("7"));
        assert_eq!(channel_id("a?xchannel_id=1&channel_id="), Some(""));
        assert_eq!(channel_id("https://x/a/b/c/item.htm?query=1"), None);
        let url = "https://www.nexmark.com/ab/cd/ef/item.htm?query=1";
        assert_eq!(split_part(url, 4), "ab");
        assert_eq!(split_part(url, 6), "ef");
        assert_eq!(split_part(url, 9), "");
    }
}
