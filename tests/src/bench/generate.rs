//! Generates consistent orders and trades as `COPY … FROM STDIN` text rows.
//!
//! Trades come from a price-time walk per symbol: a buy and a sell order are
//! "at the head" of each symbol; each step trades the smaller remaining
//! quantity of the two (split into one or more trades) at the older order's
//! price, and an order leaves the walk when it reaches its fill target. So
//! every trade references a real FILLED or partially filled order, and each
//! order's `filled_quantity` is the sum of its trades. Orders that never
//! traded (resting, cancelled, expired, rejected) are generated apart.

use std::io::Write as _;

use chrono::DateTime;
use uuid::Uuid;

use super::market::{MARKETS, Market, push_units};

/// What to generate.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    pub orders: u64,
    pub trades: u64,
    pub users: u64,
    /// Orders are created over this many months back (trades over `trade_days`).
    pub order_days: i64,
    pub trade_days: i64,
    /// Unix microseconds the data ends at (a minute before the load).
    pub now_micros: i64,
    pub seed: u64,
}

/// The heavy user whose order and trade history the benchmark pages through.
pub fn user_id(index: u64) -> Uuid {
    Uuid::from_u128(0xbe4c_0000_0000_4000_8000_0000_0000_0000 | index as u128)
}

/// Share of all orders that rest in the book at the end.
const RESTING_SHARE: f64 = 0.03;
/// Share of all orders that trade (FILLED, PARTIALLY_FILLED, cancelled after a fill).
const FILL_SHARE: f64 = 0.62;

/// splitmix64: fast, seedable, good enough for test data.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n.max(1) as u128) >> 64) as u64
    }

    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn uuid(&mut self) -> Uuid {
        let bits = ((self.next_u64() as u128) << 64) | self.next_u64() as u128;
        uuid::Builder::from_random_bytes(bits.to_be_bytes()).into_uuid()
    }
}

/// Where generated rows go: full buffers of COPY text.
pub trait Sink {
    fn orders(&mut self, rows: Vec<u8>, count: u64);
    fn trades(&mut self, rows: Vec<u8>, count: u64);
}

/// The rows a generation produced, by kind.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counts {
    pub orders: u64,
    pub trades: u64,
}

const FLUSH_BYTES: usize = 4 << 20;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Buy,
    Sell,
}

/// An order in the walk.
struct Live {
    id: Uuid,
    user: u64,
    side: Side,
    price: i64,
    quantity: i64,
    target: i64,
    filled: i64,
    /// Σ price × quantity, in 1e-16 units.
    notional: i128,
    created: i64,
    last_fill: i64,
}

struct Book {
    buy: Option<Live>,
    sell: Option<Live>,
}

struct Generator<'s, S: Sink> {
    plan: Plan,
    rng: Rng,
    sink: &'s mut S,
    order_buf: Vec<u8>,
    order_rows: u64,
    trade_buf: Vec<u8>,
    trade_rows: u64,
    counts: Counts,
    whale_share: f64,
    end_prices: [i64; 10],
}

/// Generates `plan`'s rows into `sink`; returns how many of each it made.
pub fn generate<S: Sink>(plan: Plan, sink: &mut S) -> Counts {
    let end_prices = std::array::from_fn(|i| MARKETS[i].price_at(i, plan.now_micros));
    let whale_share = (6_000.0 / plan.orders.max(1) as f64).clamp(0.001, 0.05);
    let mut generator = Generator {
        plan,
        rng: Rng::new(plan.seed),
        sink,
        order_buf: Vec::with_capacity(FLUSH_BYTES + 4096),
        order_rows: 0,
        trade_buf: Vec::with_capacity(FLUSH_BYTES + 4096),
        trade_rows: 0,
        counts: Counts::default(),
        whale_share,
        end_prices,
    };
    generator.walk();
    generator.untraded();
    generator.flush_orders();
    generator.flush_trades();
    generator.counts
}

impl<S: Sink> Generator<'_, S> {
    fn user(&mut self, not: Option<u64>) -> u64 {
        loop {
            let user = if self.rng.unit() < self.whale_share {
                0
            } else {
                1 + self.rng.below(self.plan.users.max(2) - 1)
            };
            if Some(user) != not {
                return user;
            }
        }
    }

    fn quantity_lots(&mut self, market: &Market, price: i64) -> i64 {
        let min = market.min_lots(price);
        let tail = if self.rng.unit() < 0.05 { 20 } else { 1 };
        min * (1 + self.rng.below(40) as i64 * tail)
    }

    /// A new order for the walk at `now`, crossing `other` (the opposite head).
    fn new_live(&mut self, index: usize, side: Side, other: Option<&Live>, now: i64) -> Live {
        let market = &MARKETS[index];
        let lag = if self.rng.unit() < 0.7 {
            self.rng.below(2_000_000) as i64
        } else {
            let hours = -4.0 * (1.0 - self.rng.unit()).ln();
            ((hours.min(24.0 * 7.0)) * 3.6e9) as i64
        };
        let created = now - lag;
        let market_price = market.price_at(index, created);
        // A buy at or above the sell it meets, a sell at or below: whichever
        // is older is the maker and sets the trade price, within both limits.
        let price = match (side, other) {
            (Side::Buy, Some(sell)) => market_price.max(sell.price),
            (Side::Sell, Some(buy)) => market_price.min(buy.price),
            (_, None) => market_price,
        };
        let lots = self.quantity_lots(market, price);
        let quantity = lots * market.lot;
        let target = if lots >= 2 && self.rng.unit() < 0.15 {
            let part = 1 + self.rng.below(lots as u64 - 1) as i64;
            part * market.lot
        } else {
            quantity
        };
        let user = self.user(other.map(|o| o.user));
        Live {
            id: self.rng.uuid(),
            user,
            side,
            price,
            quantity,
            target,
            filled: 0,
            notional: 0,
            created,
            last_fill: created,
        }
    }

    fn walk(&mut self) {
        let plan = self.plan;
        let start = plan.now_micros - plan.trade_days * 86_400_000_000;
        let window = (plan.now_micros - 60_000_000 - start).max(1) as i128;
        let fill_target = ((plan.orders as f64 * FILL_SHARE) as u64).max(2);
        let mut books: Vec<Book> = (0..MARKETS.len())
            .map(|_| Book {
                buy: None,
                sell: None,
            })
            .collect();
        let mut trades = 0u64;
        let mut completed = 0u64;
        while trades < plan.trades {
            let index = self.rng.below(MARKETS.len() as u64) as usize;
            let market = MARKETS[index];
            let now = start + (trades as i128 * window / plan.trades.max(1) as i128) as i64;
            let book = &mut books[index];
            let mut buy = match book.buy.take() {
                Some(buy) => buy,
                None => self.new_live(index, Side::Buy, book.sell.as_ref(), now),
            };
            let mut sell = match book.sell.take() {
                Some(sell) => sell,
                None => self.new_live(index, Side::Sell, Some(&buy), now),
            };
            let lots = (buy.target - buy.filled).min(sell.target - sell.filled) / market.lot;
            let ratio = (plan.trades - trades) as f64
                / (fill_target.saturating_sub(completed)).max(1) as f64;
            let mut splits = ratio.floor() as i64;
            if self.rng.unit() < ratio.fract() {
                splits += 1;
            }
            let splits = splits.clamp(1, lots).min((plan.trades - trades) as i64);
            let buyer_maker = buy.created <= sell.created;
            let price = if buyer_maker { buy.price } else { sell.price };
            for part in 0..splits {
                let part_lots = lots / splits + i64::from(part < lots % splits);
                let quantity = part_lots * market.lot;
                let at = now.max(buy.created).max(sell.created) + part;
                self.trade(&market, &buy, &sell, price, quantity, buyer_maker, at);
                for order in [&mut buy, &mut sell] {
                    order.filled += quantity;
                    order.notional += price as i128 * quantity as i128;
                    order.last_fill = at;
                }
                trades += 1;
            }
            for order in [buy, sell] {
                if order.filled >= order.target {
                    completed += 1;
                    self.finish(index, order);
                } else if order.side == Side::Buy {
                    books[index].buy = Some(order);
                } else {
                    books[index].sell = Some(order);
                }
            }
        }
        for (index, book) in books.into_iter().enumerate() {
            for order in [book.buy, book.sell].into_iter().flatten() {
                self.finish(index, order);
            }
        }
    }

    /// Writes an order that left the walk, with the status its fills leave.
    fn finish(&mut self, index: usize, order: Live) {
        let market = MARKETS[index];
        let average = (order.filled > 0).then(|| (order.notional / order.filled as i128) as i64);
        if order.filled == order.quantity {
            self.order(
                &market,
                &order,
                "LIMIT",
                "FILLED",
                "GTC",
                average,
                order.last_fill,
                Some(order.last_fill),
                None,
            );
            return;
        }
        // Partially filled: still resting if its price does not cross the
        // final book, else cancelled or expired after its last fill.
        let end = self.end_prices[index];
        let rests = match order.side {
            Side::Buy => order.price < end - end / 2000,
            Side::Sell => order.price > end + end / 2000,
        };
        let roll = self.rng.unit();
        let later =
            (order.last_fill + self.rng.below(3_600_000_000) as i64).min(self.plan.now_micros);
        if rests && roll < 0.6 {
            self.order(
                &market,
                &order,
                "LIMIT",
                "PARTIALLY_FILLED",
                "GTC",
                average,
                order.last_fill,
                None,
                None,
            );
        } else if roll < 0.85 || rests {
            self.order(
                &market,
                &order,
                "LIMIT",
                "CANCELLED",
                "GTC",
                average,
                later,
                None,
                Some(later),
            );
        } else {
            self.order(
                &market, &order, "LIMIT", "EXPIRED", "DAY", average, later, None, None,
            );
        }
    }

    /// Orders that never traded: the resting book and the finished rest.
    fn untraded(&mut self) {
        let plan = self.plan;
        let resting = (plan.orders as f64 * RESTING_SHARE) as u64;
        let remaining = plan.orders.saturating_sub(self.counts.orders);
        let span = plan.order_days * 86_400_000_000;
        for n in 0..remaining {
            let index = self.rng.below(MARKETS.len() as u64) as usize;
            let market = MARKETS[index];
            let side = if self.rng.unit() < 0.5 {
                Side::Buy
            } else {
                Side::Sell
            };
            let created = plan.now_micros - self.rng.below(span as u64) as i64;
            let user = self.user(None);
            if n < resting {
                // Clustered near the top of the book: 1-basis-point levels,
                // denser close to the spread.
                let end = self.end_prices[index] as f64;
                let u = self.rng.unit();
                let away = 1 + (u * u * 500.0) as i64;
                let price = match side {
                    Side::Buy => end * (1.0 - away as f64 / 10_000.0),
                    Side::Sell => end * (1.0 + away as f64 / 10_000.0),
                };
                let price = market.round_price(price / super::market::UNIT as f64);
                let lots = self.quantity_lots(&market, price);
                let order = untraded(&mut self.rng, user, side, price, lots * market.lot, created);
                self.order(
                    &market, &order, "LIMIT", "OPEN", "GTC", None, created, None, None,
                );
                continue;
            }
            let moved = 1.0 + (self.rng.unit() - 0.5) * 0.04;
            let price = market.price_at(index, created) as f64 * moved;
            let price = market.round_price(price / super::market::UNIT as f64);
            let lots = self.quantity_lots(&market, price);
            let order = untraded(&mut self.rng, user, side, price, lots * market.lot, created);
            let roll = self.rng.unit();
            let later = (created + self.rng.below(86_400_000_000) as i64).min(plan.now_micros);
            if roll < 0.75 {
                self.order(
                    &market,
                    &order,
                    "LIMIT",
                    "CANCELLED",
                    "GTC",
                    None,
                    later,
                    None,
                    Some(later),
                );
            } else if roll < 0.97 {
                self.order(
                    &market, &order, "LIMIT", "EXPIRED", "IOC", None, created, None, None,
                );
            } else {
                self.order(
                    &market, &order, "LIMIT", "REJECTED", "GTC", None, created, None, None,
                );
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn order(
        &mut self,
        market: &Market,
        order: &Live,
        order_type: &str,
        status: &str,
        time_in_force: &str,
        average: Option<i64>,
        updated: i64,
        filled_at: Option<i64>,
        cancelled_at: Option<i64>,
    ) {
        let out = &mut self.order_buf;
        push_uuid(out, order.id);
        out.push(b'\t');
        push_uuid(out, user_id(order.user));
        let side = match order.side {
            Side::Buy => "BUY",
            Side::Sell => "SELL",
        };
        let _ = write!(out, "\t{}\t{side}\t{order_type}\t{status}\t", market.symbol);
        push_units(out, order.quantity);
        out.push(b'\t');
        push_units(out, order.filled);
        out.push(b'\t');
        push_units(out, order.price);
        out.push(b'\t');
        match average {
            Some(average) => push_units(out, average),
            None => out.extend_from_slice(b"\\N"),
        }
        let _ = write!(out, "\t{time_in_force}\t");
        push_time(out, order.created);
        out.push(b'\t');
        push_time(out, updated.max(order.created));
        for at in [filled_at, cancelled_at] {
            out.push(b'\t');
            match at {
                Some(at) => push_time(out, at),
                None => out.extend_from_slice(b"\\N"),
            }
        }
        out.push(b'\n');
        self.order_rows += 1;
        self.counts.orders += 1;
        if self.order_buf.len() >= FLUSH_BYTES {
            self.flush_orders();
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn trade(
        &mut self,
        market: &Market,
        buy: &Live,
        sell: &Live,
        price: i64,
        quantity: i64,
        buyer_maker: bool,
        at: i64,
    ) {
        let id = self.rng.uuid();
        let out = &mut self.trade_buf;
        push_uuid(out, id);
        let _ = write!(out, "\t{}\t", market.symbol);
        push_uuid(out, buy.id);
        out.push(b'\t');
        push_uuid(out, sell.id);
        out.push(b'\t');
        push_uuid(out, user_id(buy.user));
        out.push(b'\t');
        push_uuid(out, user_id(sell.user));
        out.push(b'\t');
        push_units(out, price);
        out.push(b'\t');
        push_units(out, quantity);
        // Maker 0.05 %, taker 0.10 %; the buyer pays in base, the seller in quote.
        let (buyer_rate, seller_rate) = if buyer_maker { (5, 10) } else { (10, 5) };
        let quote = price as i128 * quantity as i128 / super::market::UNIT as i128;
        out.push(b'\t');
        push_units(out, (quantity as i128 * buyer_rate / 10_000) as i64);
        out.push(b'\t');
        push_units(out, (quote * seller_rate / 10_000) as i64);
        let _ = write!(
            out,
            "\t{}\tUSDT\t{}\t",
            market.base_asset,
            if buyer_maker { 't' } else { 'f' }
        );
        push_time(out, at);
        out.push(b'\n');
        self.trade_rows += 1;
        self.counts.trades += 1;
        if self.trade_buf.len() >= FLUSH_BYTES {
            self.flush_trades();
        }
    }

    fn flush_orders(&mut self) {
        if self.order_rows > 0 {
            let rows =
                std::mem::replace(&mut self.order_buf, Vec::with_capacity(FLUSH_BYTES + 4096));
            self.sink.orders(rows, std::mem::take(&mut self.order_rows));
        }
    }

    fn flush_trades(&mut self) {
        if self.trade_rows > 0 {
            let rows =
                std::mem::replace(&mut self.trade_buf, Vec::with_capacity(FLUSH_BYTES + 4096));
            self.sink.trades(rows, std::mem::take(&mut self.trade_rows));
        }
    }
}

fn untraded(rng: &mut Rng, user: u64, side: Side, price: i64, quantity: i64, created: i64) -> Live {
    Live {
        id: rng.uuid(),
        user,
        side,
        price,
        quantity,
        target: quantity,
        filled: 0,
        notional: 0,
        created,
        last_fill: created,
    }
}

fn push_uuid(out: &mut Vec<u8>, id: Uuid) {
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    out.extend_from_slice(id.hyphenated().encode_lower(&mut buf).as_bytes());
}

fn push_time(out: &mut Vec<u8>, micros: i64) {
    if let Some(at) = DateTime::from_timestamp_micros(micros) {
        let _ = write!(out, "{}", at.format("%Y-%m-%d %H:%M:%S%.6f+00"));
    }
}

/// The columns the rows carry, in order.
pub const ORDER_COLUMNS: &str = "order_id, user_id, symbol, side, order_type, status, quantity, \
    filled_quantity, price, average_price, time_in_force, created_at, updated_at, filled_at, \
    cancelled_at";

pub const TRADE_COLUMNS: &str = "trade_id, symbol, buyer_order_id, seller_order_id, \
    buyer_user_id, seller_user_id, price, quantity, buyer_fee, seller_fee, buyer_fee_asset, \
    seller_fee_asset, is_buyer_maker, executed_at";
