//! The ten symbols the migration seeds, as the loader and the benchmark see
//! them: reference prices, tick and lot sizes in units of 1e-8 (the schema's
//! `numeric(20,8)` scale), and a deterministic price path.

use std::f64::consts::TAU;

/// Units of 1e-8 per 1.
pub const UNIT: i64 = 100_000_000;

/// One symbol's trading parameters, as `symbols` holds them.
#[derive(Clone, Copy, Debug)]
pub struct Market {
    pub symbol: &'static str,
    pub base_asset: &'static str,
    /// The reference price, in quote units.
    pub reference: f64,
    /// `tick_size` in 1e-8 units.
    pub tick: i64,
    /// `min_order_size` in 1e-8 units.
    pub lot: i64,
}

/// The migration's seeded symbols.
pub const MARKETS: [Market; 10] = [
    market("BTC/USDT", "BTC", 50_000.0, 1_000_000, 10_000),
    market("ETH/USDT", "ETH", 3_000.0, 1_000_000, 100_000),
    market("BNB/USDT", "BNB", 600.0, 1_000_000, 1_000_000),
    market("SOL/USDT", "SOL", 150.0, 1_000_000, 10_000_000),
    market("XRP/USDT", "XRP", 0.6, 10_000, UNIT),
    market("ADA/USDT", "ADA", 0.45, 10_000, UNIT),
    market("DOGE/USDT", "DOGE", 0.08, 1_000, UNIT),
    market("AVAX/USDT", "AVAX", 35.0, 1_000_000, 10_000_000),
    market("DOT/USDT", "DOT", 7.0, 1_000_000, 10_000_000),
    market("MATIC/USDT", "MATIC", 0.9, 10_000, UNIT),
];

const fn market(
    symbol: &'static str,
    base_asset: &'static str,
    reference: f64,
    tick: i64,
    lot: i64,
) -> Market {
    Market {
        symbol,
        base_asset,
        reference,
        tick,
        lot,
    }
}

impl Market {
    /// The market price at `micros` (Unix microseconds): the reference price
    /// moved by two slow waves (±3 % in all), rounded down to the tick.
    pub fn price_at(&self, index: usize, micros: i64) -> i64 {
        let hours = micros as f64 / 3.6e9;
        let phase = index as f64;
        let wave = 0.02 * (TAU * hours / 72.0 + phase).sin() + 0.01 * (TAU * hours / 5.0).sin();
        self.round_price(self.reference * (1.0 + wave))
    }

    /// `price` (quote units) in 1e-8 units, a positive multiple of the tick.
    pub fn round_price(&self, price: f64) -> i64 {
        let units = (price * UNIT as f64) as i64;
        (units / self.tick).max(1) * self.tick
    }

    /// The fewest lots whose notional at `price` reaches the 10 USDT minimum.
    pub fn min_lots(&self, price: i64) -> i64 {
        let lot_value = self.lot as i128 * price as i128 / UNIT as i128;
        let min_value = 10 * UNIT as i128;
        let lot_value = lot_value.max(1);
        (((min_value + lot_value - 1) / lot_value) as i64).max(1)
    }
}

/// `units` (1e-8) as a decimal with 8 places, appended to `out`.
pub fn push_units(out: &mut Vec<u8>, units: i64) {
    use std::io::Write as _;
    let _ = write!(out, "{}.{:08}", units / UNIT, units % UNIT);
}

/// `units` (1e-8) as a `rust_decimal::Decimal`.
pub fn decimal(units: i64) -> rust_decimal::Decimal {
    rust_decimal::Decimal::new(units, 8).normalize()
}
