//! The OpenAPI 3.1 document, generated from the handlers' annotations.

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::dto;
use crate::routes::{market, me, ops, orders};

#[derive(OpenApi)]
#[openapi(
    info(title = "Trade engine API", description = "Orders, trades and market data of the trade engine. The contract in prose, with its conventions, limits and errors, is docs/api.md in the repository."),
    paths(
        orders::place, orders::list, orders::get, orders::cancel,
        market::order_book, market::ticker, market::stats, market::candles, market::symbols,
        market::recent_trades, market::trade,
        me::trades, me::stats,
        ops::health, ops::ready, ops::metrics, ops::openapi,
        crate::events::ws::upgrade,
    ),
    components(schemas(
        dto::PlaceOrderRequest, dto::OrderDto, dto::TradeDto, dto::PlacementDto,
        dto::OwnTradeDto, dto::LevelDto, dto::OrderBookDto, dto::TickerDto,
        dto::MarketStatsDto, dto::CandleDto, dto::FillRateDto, dto::SymbolDto, dto::ErrorBody,
    )),
    modifiers(&Security),
)]
pub struct ApiDoc;

/// The two ways to authenticate: a bearer JWT, or a gateway's X-User-ID.
struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        components.add_security_scheme(
            "user_header",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-User-ID"))),
        );
    }
}
