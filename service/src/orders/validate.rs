//! The placement rules that need no lock: the order's own shape, then the
//! symbol's parameters. Field names are the request's (`type`, `stop_price`).

use chrono::{DateTime, FixedOffset};
use entity::symbols;
use rust_decimal::Decimal;

use super::NewOrder;
use crate::error::{Result, ServiceError};
use crate::{OrderType, SymbolStatus};

/// Decimal places the schema stores (`numeric(20,8)`).
pub(crate) const SCALE: u32 = 8;

/// The largest value a `numeric(20,8)` column holds.
const MAX_NUMERIC: Decimal = Decimal::from_parts(0x630f_ffff, 0x6bc7_5e2d, 0x5, false, 8);

const MAX_CLIENT_ORDER_ID: usize = 100;
const MAX_ORDER_SOURCE: usize = 50;

fn invalid(field: &'static str, reason: impl Into<String>) -> ServiceError {
    ServiceError::invalid(field, reason)
}

/// A positive amount with at most 8 decimals that fits `numeric(20,8)`.
fn amount(field: &'static str, value: Decimal) -> Result<Decimal> {
    if value <= Decimal::ZERO {
        return Err(invalid(
            field,
            format!("must be greater than 0, got {value}"),
        ));
    }
    if value.normalize().scale() > SCALE {
        return Err(invalid(
            field,
            format!("has more than {SCALE} decimal places: {value}"),
        ));
    }
    if value > MAX_NUMERIC {
        return Err(invalid(field, format!("is too large: {value}")));
    }
    Ok(value)
}

/// The rules on the order alone.
pub(crate) fn shape(order: &NewOrder) -> Result<()> {
    amount("quantity", order.quantity)?;
    let needs_price = matches!(order.order_type, OrderType::Limit | OrderType::StopLimit);
    let needs_stop = matches!(order.order_type, OrderType::Stop | OrderType::StopLimit);
    if order.order_type == OrderType::TrailingStop {
        return Err(invalid("type", "TRAILING_STOP orders are not supported"));
    }
    match (needs_price, order.price) {
        (true, None) => {
            return Err(invalid(
                "price",
                format!("is required for {:?} orders", order.order_type),
            ));
        }
        (true, Some(price)) => {
            amount("price", price)?;
        }
        (false, Some(_)) => {
            return Err(invalid(
                "price",
                format!("is not allowed for {:?} orders", order.order_type),
            ));
        }
        (false, None) => {}
    }
    match (needs_stop, order.stop_price) {
        (true, None) => {
            return Err(invalid(
                "stop_price",
                format!("is required for {:?} orders", order.order_type),
            ));
        }
        (true, Some(stop)) => {
            amount("stop_price", stop)?;
        }
        (false, Some(_)) => {
            return Err(invalid(
                "stop_price",
                format!("is not allowed for {:?} orders", order.order_type),
            ));
        }
        (false, None) => {}
    }
    if order.symbol.contains('\0') {
        return Err(ServiceError::UnknownSymbol(
            order.symbol.replace('\0', "\\u0000"),
        ));
    }
    if let Some(id) = &order.client_order_id {
        if id.contains('\0') {
            return Err(invalid(
                "client_order_id",
                "must not contain the NUL character",
            ));
        }
        if id.trim().is_empty() {
            return Err(invalid("client_order_id", "must not be empty"));
        }
        if id.chars().count() > MAX_CLIENT_ORDER_ID {
            return Err(invalid(
                "client_order_id",
                format!("must be at most {MAX_CLIENT_ORDER_ID} characters"),
            ));
        }
    }
    if let Some(source) = &order.order_source
        && (source.contains('\0') || source.chars().count() > MAX_ORDER_SOURCE)
    {
        return Err(invalid(
            "order_source",
            format!("must be at most {MAX_ORDER_SOURCE} characters, without NUL"),
        ));
    }
    Ok(())
}

/// The rules against the symbol's parameters.
pub(crate) fn against_symbol(order: &NewOrder, symbol: &symbols::Model) -> Result<()> {
    if symbol.status != SymbolStatus::Active {
        return Err(ServiceError::SymbolNotTradable {
            symbol: symbol.symbol.clone(),
            status: symbol.status,
        });
    }
    if order.quantity < symbol.min_order_size {
        return Err(invalid(
            "quantity",
            format!(
                "{} is below the minimum order size {} of {}",
                order.quantity,
                symbol.min_order_size.normalize(),
                symbol.symbol
            ),
        ));
    }
    if order.quantity > symbol.max_order_size {
        return Err(invalid(
            "quantity",
            format!(
                "{} is above the maximum order size {} of {}",
                order.quantity,
                symbol.max_order_size.normalize(),
                symbol.symbol
            ),
        ));
    }
    if let Some(price) = order.price {
        if !(price % symbol.tick_size).is_zero() {
            return Err(invalid(
                "price",
                format!(
                    "{price} is not a multiple of the tick size {} of {}",
                    symbol.tick_size.normalize(),
                    symbol.symbol
                ),
            ));
        }
        if order.order_type == OrderType::Limit {
            let notional = price * order.quantity;
            if notional < symbol.min_order_value {
                return Err(invalid(
                    "quantity",
                    format!(
                        "notional {} (price × quantity) is below the minimum order value {} of {}",
                        notional.normalize(),
                        symbol.min_order_value.normalize(),
                        symbol.symbol
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// A LIMIT price lies within ±price_band_percentage of the last trade price.
pub(crate) fn price_band(
    order: &NewOrder,
    symbol: &symbols::Model,
    last_price: Option<Decimal>,
) -> Result<()> {
    let (OrderType::Limit, Some(price), Some(last)) = (order.order_type, order.price, last_price)
    else {
        return Ok(());
    };
    let band = last * symbol.price_band_percentage / Decimal::ONE_HUNDRED;
    let (low, high) = (last - band, last + band);
    if price < low || price > high {
        return Err(invalid(
            "price",
            format!(
                "{price} is outside the price band {}..{} (±{}% of the last trade price {})",
                low.normalize(),
                high.normalize(),
                symbol.price_band_percentage.normalize(),
                last.normalize()
            ),
        ));
    }
    Ok(())
}

/// An expiry time lies in the future.
pub(crate) fn expiry(order: &NewOrder, now: DateTime<FixedOffset>) -> Result<()> {
    match order.expires_at {
        Some(at) if at <= now => Err(invalid("expires_at", format!("{at} is not in the future"))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_numeric_bound_is_that_of_numeric_20_8() {
        assert_eq!(MAX_NUMERIC.to_string(), "999999999999.99999999");
    }
}
