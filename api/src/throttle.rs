//! Per-caller request rate limits: a GCRA token bucket (the `governor` crate)
//! per authenticated user, and per client address for calls without
//! credentials, so one client cannot starve the others of the database pool.
//! A request over its limit is answered 429 with `Retry-After` before any
//! handler runs.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use uuid::Uuid;

use crate::auth::Caller;
use crate::config::{Config, RateLimit};
use crate::error::ApiError;
use crate::state::AppState;

/// Forget idle callers' buckets every this many requests, so the key maps
/// stay as small as the set of recently active callers.
const PRUNE_EVERY: u64 = 4096;

/// The rate limiters of one server.
pub struct Throttle {
    users: Option<DefaultKeyedRateLimiter<Uuid>>,
    addresses: Option<DefaultKeyedRateLimiter<IpAddr>>,
    clock: DefaultClock,
    requests: AtomicU64,
}

fn limiter<K>(limit: Option<RateLimit>) -> Option<DefaultKeyedRateLimiter<K>>
where
    K: std::hash::Hash + Eq + Clone,
{
    let limit = limit?;
    let per_second = NonZeroU32::new(limit.per_second)?;
    let burst = NonZeroU32::new(limit.burst).unwrap_or(per_second);
    Some(RateLimiter::keyed(
        Quota::per_second(per_second).allow_burst(burst),
    ))
}

impl Throttle {
    /// The limits of `RATE_LIMIT_*` and `ANONYMOUS_RATE_LIMIT_*`.
    pub fn new(config: &Config) -> Throttle {
        Throttle {
            users: limiter(config.user_rate_limit),
            addresses: limiter(config.anonymous_rate_limit),
            clock: DefaultClock::default(),
            requests: AtomicU64::new(0),
        }
    }

    /// `Err(wait)` when `caller` (or, without valid credentials, `peer`) is
    /// over its limit.
    fn check(&self, caller: &Caller, peer: Option<IpAddr>) -> Result<(), std::time::Duration> {
        if self.requests.fetch_add(1, Ordering::Relaxed) % PRUNE_EVERY == PRUNE_EVERY - 1 {
            if let Some(users) = &self.users {
                users.retain_recent();
            }
            if let Some(addresses) = &self.addresses {
                addresses.retain_recent();
            }
        }
        let outcome = match (caller, peer) {
            (Caller::User(user), _) => match &self.users {
                Some(users) => users.check_key(user),
                None => Ok(()),
            },
            (_, Some(ip)) => match &self.addresses {
                Some(addresses) => addresses.check_key(&ip.to_canonical()),
                None => Ok(()),
            },
            (_, None) => Ok(()),
        };
        outcome.map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }
}

/// Refuses a peer outside `TRUSTED_PROXIES` (trusted-header mode), decides
/// who is calling (once per request; [`crate::auth::AuthUser`] reads the
/// outcome) and refuses a caller over its rate limit with 429.
pub async fn limit_rate(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip());
    // Behind a gateway, the api's contract is served to the gateway alone;
    // the operations endpoints stay open to probes and scrapers.
    if request.uri().path().starts_with("/api/")
        && let Err(reason) = state.auth.admit(peer)
    {
        return ApiError::Unauthorized(reason).into_response();
    }
    let caller = state.auth.caller(request.headers(), peer);
    if let Err(retry_after) = state.throttle.check(&caller, peer) {
        return ApiError::TooManyRequests { retry_after }.into_response();
    }
    request.extensions_mut().insert(caller);
    next.run(request).await
}
