//! Rates shared by all of a node's connections, per user (a token's
//! subject) and per IP address, with the governor crate: ops per user
//! across all their sockets, new connections and joins per address and per
//! user, and REST requests per address. Each connection's own message rate
//! is the session's token bucket; these catch what that cannot see, one
//! user or one address spreading a flood over many sockets or requests.
//!
//! Over a limit, a WebSocket message is answered `error rate_limited` (and
//! counts towards the session's 4429), an upgrade or a REST call HTTP 429
//! `rate_limited` with `Retry-After`. Memory stays bounded: a key whose
//! allowance is full again is no different from one never seen, and is
//! forgotten by the sweep every
//! [`LIMITER_SWEEP_INTERVAL`](crate::config::LIMITER_SWEEP_INTERVAL), or at
//! once when a limiter holds more than
//! [`MAX_LIMITER_KEYS`](crate::config::MAX_LIMITER_KEYS).

use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::HeaderMap;
use actix_web::middleware::Next;
use actix_web::web;
use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota};
use tokio::sync::watch;

use super::http::{ApiError, AppState};
use crate::config::{
    LIMIT_BURST_SECS, LIMITER_SWEEP_INTERVAL, MAX_LIMITER_KEYS, RateLimits, USER_OPS_BURST_SECS,
};

/// The address a limit is kept for: an IPv4 address, or an IPv6 /64 (one
/// host usually holds a whole /64, so single IPv6 addresses would be free
/// for the taking).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpKey(IpAddr);

impl IpKey {
    /// The key of `ip`.
    pub fn of(ip: IpAddr) -> Self {
        let ip = match ip {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
            },
            v4 => v4,
        };
        Self(ip)
    }
}

/// Refused by a limit: what was limited and when to try again.
#[derive(Debug, Clone)]
pub struct Limited {
    /// What was over its rate, for the message: "ops from this user".
    pub what: &'static str,
    /// How long until one more would be let through.
    pub retry_after: Duration,
}

impl Limited {
    /// Whole seconds for `Retry-After`, at least 1.
    pub fn retry_after_secs(&self) -> u64 {
        self.retry_after.as_secs_f64().ceil().max(1.0) as u64
    }

    /// What the client is told.
    pub fn message(&self) -> String {
        format!(
            "too many {}; retry in {} s",
            self.what,
            self.retry_after_secs()
        )
    }
}

impl From<Limited> for ApiError {
    fn from(l: Limited) -> Self {
        ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", l.message())
            .retry_after(l.retry_after_secs())
    }
}

/// One keyed limit.
struct Keyed<K: Hash + Eq + Clone> {
    limiter: DefaultKeyedRateLimiter<K>,
    what: &'static str,
    /// When this limiter last swept because it held too many keys.
    swept: Mutex<Instant>,
}

impl<K: Hash + Eq + Clone> Keyed<K> {
    /// `per_sec` a second with a burst of `burst_secs` seconds' worth, or
    /// `None` (no limit) for 0.
    fn new(per_sec: u32, burst_secs: u32, what: &'static str) -> Option<Self> {
        let rate = NonZeroU32::new(per_sec)?;
        let burst = NonZeroU32::new(per_sec.saturating_mul(burst_secs)).unwrap_or(rate);
        Some(Self {
            limiter: DefaultKeyedRateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)),
            what,
            swept: Mutex::new(Instant::now()),
        })
    }

    fn check(&self, key: &K) -> Result<(), Limited> {
        if self.limiter.len() > MAX_LIMITER_KEYS
            && let Ok(mut swept) = self.swept.try_lock()
            && swept.elapsed() >= Duration::from_secs(1)
        {
            *swept = Instant::now();
            self.sweep();
        }
        self.limiter
            .check_key(key)
            .map_err(|not_until| Limited {
                what: self.what,
                retry_after: not_until.wait_time_from(self.limiter.clock().now()),
            })
            .inspect_err(|l| crate::metrics::rate_limited(l.what))
    }

    fn sweep(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
}

fn check<K: Hash + Eq + Clone>(limit: &Option<Keyed<K>>, key: Option<&K>) -> Result<(), Limited> {
    match (limit, key) {
        (Some(limit), Some(key)) => limit.check(key),
        _ => Ok(()),
    }
}

/// A node's shared limits (see the module doc).
pub struct Limiters {
    user_ops: Option<Keyed<Arc<str>>>,
    ip_connections: Option<Keyed<IpKey>>,
    user_connections: Option<Keyed<Arc<str>>>,
    ip_joins: Option<Keyed<IpKey>>,
    user_joins: Option<Keyed<Arc<str>>>,
    ip_requests: Option<Keyed<IpKey>>,
    trust_forwarded_for: bool,
}

impl Limiters {
    /// The limits `rates` asks for.
    pub fn new(rates: &RateLimits) -> Arc<Self> {
        let burst = LIMIT_BURST_SECS;
        Arc::new(Self {
            user_ops: Keyed::new(rates.user_ops, USER_OPS_BURST_SECS, "ops from this user"),
            ip_connections: Keyed::new(
                rates.ip_connections,
                burst,
                "new connections from this address",
            ),
            user_connections: Keyed::new(
                rates.user_connections,
                burst,
                "new connections of this user",
            ),
            ip_joins: Keyed::new(rates.ip_joins, burst, "joins from this address"),
            user_joins: Keyed::new(rates.user_joins, burst, "joins of this user"),
            ip_requests: Keyed::new(rates.ip_requests, burst, "requests from this address"),
            trust_forwarded_for: rates.trust_forwarded_for,
        })
    }

    /// The client's address: the TCP peer's, or with
    /// `trust_forwarded_for` the last `X-Forwarded-For` entry (the one the
    /// proxy in front added; the earlier ones are whatever the client
    /// claimed).
    pub fn client_ip(&self, headers: &HeaderMap, peer: Option<SocketAddr>) -> Option<IpKey> {
        self.client_addr(headers, peer).map(IpKey::of)
    }

    /// The client's address as [`Limiters::client_ip`] finds it, whole
    /// (not cut to its /64): what the admin API shows.
    pub fn client_addr(&self, headers: &HeaderMap, peer: Option<SocketAddr>) -> Option<IpAddr> {
        let forwarded = self
            .trust_forwarded_for
            .then(|| {
                headers
                    .get_all("x-forwarded-for")
                    .filter_map(|v| v.to_str().ok())
                    .flat_map(|v| v.split(','))
                    .last()
                    .and_then(parse_ip)
            })
            .flatten();
        forwarded.or(peer.map(|p| p.ip()))
    }

    /// One op of `user` (none in open mode: not limited here).
    pub fn op(&self, user: Option<&Arc<str>>) -> Result<(), Limited> {
        check(&self.user_ops, user)
    }

    /// One new WebSocket connection from `ip`, before its credentials are
    /// looked at.
    pub fn connection_from(&self, ip: Option<&IpKey>) -> Result<(), Limited> {
        check(&self.ip_connections, ip)
    }

    /// One new WebSocket connection of `user`.
    pub fn connection_of(&self, user: Option<&Arc<str>>) -> Result<(), Limited> {
        check(&self.user_connections, user)
    }

    /// One `join` from `ip` by `user`.
    pub fn join(&self, ip: Option<&IpKey>, user: Option<&Arc<str>>) -> Result<(), Limited> {
        check(&self.ip_joins, ip)?;
        check(&self.user_joins, user)
    }

    /// One REST request from `ip`.
    pub fn request(&self, ip: Option<&IpKey>) -> Result<(), Limited> {
        check(&self.ip_requests, ip)
    }

    /// Forgets every key whose allowance is full again.
    pub fn sweep(&self) {
        sweep(&self.user_ops);
        sweep(&self.ip_connections);
        sweep(&self.user_connections);
        sweep(&self.ip_joins);
        sweep(&self.user_joins);
        sweep(&self.ip_requests);
    }

    /// Keys held by all limiters together.
    pub fn keys(&self) -> usize {
        len(&self.user_ops)
            + len(&self.ip_connections)
            + len(&self.user_connections)
            + len(&self.ip_joins)
            + len(&self.user_joins)
            + len(&self.ip_requests)
    }
}

fn sweep<K: Hash + Eq + Clone>(limit: &Option<Keyed<K>>) {
    if let Some(l) = limit {
        l.sweep();
    }
}

fn len<K: Hash + Eq + Clone>(limit: &Option<Keyed<K>>) -> usize {
    limit.as_ref().map_or(0, |l| l.limiter.len())
}

/// An address as proxies write it: `1.2.3.4`, `2001:db8::1`, or with a
/// port, `1.2.3.4:5678` / `[2001:db8::1]:5678`.
fn parse_ip(raw: &str) -> Option<IpAddr> {
    let raw = raw.trim();
    raw.parse::<IpAddr>()
        .ok()
        .or_else(|| raw.parse::<SocketAddr>().ok().map(|s| s.ip()))
}

/// Sweeps `limiters` every [`LIMITER_SWEEP_INTERVAL`] until `stop` turns
/// true.
pub async fn sweep_until(limiters: Arc<Limiters>, mut stop: watch::Receiver<bool>) {
    let mut every = tokio::time::interval(LIMITER_SWEEP_INTERVAL);
    every.tick().await;
    loop {
        tokio::select! {
            _ = every.tick() => limiters.sweep(),
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
    }
}

/// True for the WebSocket upgrade route, `/api/documents/{id}/ws`, which
/// has limits of its own and checks its `Origin` itself.
pub fn is_upgrade_path(path: &str) -> bool {
    let mut parts = path.split('/');
    matches!(
        (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next()
        ),
        (Some(""), Some("api"), Some("documents"), Some(id), Some("ws"), None) if !id.is_empty()
    )
}

/// Middleware: every request but the WebSocket upgrade and the operators'
/// probes (`super::ready::is_probe_path`: a scraper or a load balancer
/// must never read a 429 as "down") counts against its address's REST
/// rate; over it, HTTP 429 with `Retry-After`.
pub async fn limit_requests(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody + 'static>>, actix_web::Error> {
    if !is_upgrade_path(req.path())
        && !super::ready::is_probe_path(req.path())
        && let Some(state) = req.app_data::<web::Data<AppState>>()
    {
        let ip = state.limiters.client_ip(req.headers(), req.peer_addr());
        if let Err(limited) = state.limiters.request(ip.as_ref()) {
            let refusal = ApiError::from(limited);
            return Ok(req.error_response(refusal).map_into_right_body());
        }
    }
    Ok(next.call(req).await?.map_into_left_body())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_is_keyed_by_its_64_and_mapped_v4_as_v4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(IpKey::of(a), IpKey::of(b));
        assert_ne!(IpKey::of(a), IpKey::of(c));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(IpKey::of(mapped), IpKey::of("10.0.0.1".parse().unwrap()));
    }

    #[test]
    fn forwarded_for_only_when_trusted_and_the_last_entry() {
        let mut headers = HeaderMap::new();
        headers.insert(
            actix_web::http::header::HeaderName::from_static("x-forwarded-for"),
            "6.6.6.6, 10.1.2.3".parse().unwrap(),
        );
        let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let plain = Limiters::new(&RateLimits::default());
        assert_eq!(
            plain.client_ip(&headers, Some(peer)),
            Some(IpKey::of(peer.ip()))
        );
        let trusting = Limiters::new(&RateLimits {
            trust_forwarded_for: true,
            ..RateLimits::default()
        });
        assert_eq!(
            trusting.client_ip(&headers, Some(peer)),
            Some(IpKey::of("10.1.2.3".parse().unwrap()))
        );
        assert_eq!(parse_ip("[::1]:80"), Some("::1".parse().unwrap()));
        assert_eq!(parse_ip(" 1.2.3.4:5 "), Some("1.2.3.4".parse().unwrap()));
    }

    #[test]
    fn a_burst_then_refusal_with_a_retry_time_and_keys_are_forgotten() {
        let limiters = Limiters::new(&RateLimits {
            ip_requests: 2,
            ..RateLimits::default()
        });
        let ip = IpKey::of("10.0.0.1".parse().unwrap());
        let other = IpKey::of("10.0.0.2".parse().unwrap());
        let burst = 2 * LIMIT_BURST_SECS;
        for _ in 0..burst {
            limiters.request(Some(&ip)).expect("within the burst");
        }
        let refused = limiters.request(Some(&ip)).expect_err("over the burst");
        assert!(refused.retry_after <= Duration::from_millis(500));
        assert_eq!(refused.retry_after_secs(), 1);
        limiters.request(Some(&other)).expect("another address");
        // Unknown callers (no address, no user) are not limited.
        limiters.request(None).expect("no address");
        limiters.op(None).expect("open mode");
        assert_eq!(limiters.keys(), 2);
        limiters.sweep();
        // `ip` is still refilling; `other` used one of 40 and is refilling too.
        assert_eq!(limiters.keys(), 2);
    }

    #[test]
    fn zero_turns_a_limit_off_and_the_upgrade_path_is_recognised() {
        let limiters = Limiters::new(&RateLimits {
            ip_requests: 0,
            ..RateLimits::default()
        });
        let ip = IpKey::of("10.0.0.1".parse().unwrap());
        for _ in 0..100_000 {
            limiters.request(Some(&ip)).expect("no limit");
        }
        assert!(is_upgrade_path("/api/documents/x/ws"));
        assert!(!is_upgrade_path("/api/documents/ws"));
        assert!(!is_upgrade_path("/api/documents//ws"));
        assert!(!is_upgrade_path("/api/documents/x/ws/more"));
    }
}
