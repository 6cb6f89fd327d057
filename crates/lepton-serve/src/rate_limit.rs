//! Per-client token buckets in a bounded map. A client is a token id (requests with a valid
//! token) or a client address; the map holds at most `limits.rate-limit-max-clients` buckets:
//! when it is full, buckets that have refilled completely (indistinguishable from a new client)
//! are dropped first, then the least recently seen one, so memory stays bounded whatever the
//! number of addresses an attacker uses.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use crate::error::ApiError;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// The rate limiter of one server.
#[derive(Debug)]
pub struct RateLimiter {
    per_sec: f64,
    burst: f64,
    max_clients: usize,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    /// `per_sec` requests per second with bursts of `burst` per client (`per_sec <= 0`: off),
    /// remembering at most `max_clients` clients.
    pub fn new(per_sec: f64, burst: f64, max_clients: usize) -> Self {
        RateLimiter {
            per_sec,
            burst: burst.max(1.0),
            max_clients: max_clients.max(1),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Take one request from `client`'s bucket; `RateLimited(seconds to wait)` when empty.
    pub fn check(&self, client: &str) -> Result<(), ApiError> {
        self.check_at(client, Instant::now())
    }

    fn check_at(&self, client: &str, now: Instant) -> Result<(), ApiError> {
        if self.per_sec <= 0.0 {
            return Ok(());
        }
        let mut map = self.buckets.lock().expect("rate-limit lock");
        if !map.contains_key(client) && map.len() >= self.max_clients {
            self.evict(&mut map, now);
        }
        let b = map.entry(client.to_string()).or_insert(Bucket {
            tokens: self.burst,
            last: now,
        });
        b.tokens = (b.tokens + now.saturating_duration_since(b.last).as_secs_f64() * self.per_sec)
            .min(self.burst);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(ApiError::RateLimited(
                ((1.0 - b.tokens) / self.per_sec).ceil() as u64,
            ))
        }
    }

    /// Make room for one more client.
    fn evict(&self, map: &mut HashMap<String, Bucket>, now: Instant) {
        let (per_sec, burst) = (self.per_sec, self.burst);
        map.retain(|_, b| {
            b.tokens + now.saturating_duration_since(b.last).as_secs_f64() * per_sec < burst
        });
        if map.len() >= self.max_clients {
            if let Some(oldest) = map
                .iter()
                .min_by_key(|(_, b)| b.last)
                .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
    }

    /// Clients currently remembered.
    pub fn clients(&self) -> usize {
        self.buckets.lock().expect("rate-limit lock").len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn each_client_has_its_own_bucket() {
        let r = RateLimiter::new(1.0, 2.0, 100);
        let t = Instant::now();
        assert!(r.check_at("a", t).is_ok());
        assert!(r.check_at("a", t).is_ok());
        assert!(matches!(r.check_at("a", t), Err(ApiError::RateLimited(1))));
        // Another client is not affected by a's exhaustion.
        assert!(r.check_at("b", t).is_ok());
        // a refills at 1/s.
        assert!(r.check_at("a", t + Duration::from_millis(1100)).is_ok());
    }

    #[test]
    fn the_map_stays_bounded_and_forgets_refilled_clients_first() {
        let r = RateLimiter::new(1.0, 3.0, 10);
        let t = Instant::now();
        for i in 0..1000 {
            r.check_at(&format!("addr{i}"), t + Duration::from_millis(i))
                .ok();
            assert!(r.clients() <= 10);
        }
        let r = RateLimiter::new(1.0, 3.0, 2);
        r.check_at("idle", t).unwrap();
        let busy_at = t + Duration::from_secs(2);
        for _ in 0..3 {
            r.check_at("busy", busy_at).unwrap();
        }
        // At +2.5 s 'idle' has refilled completely (evicted first), 'busy' has not (kept).
        let later = t + Duration::from_millis(2500);
        r.check_at("new", later).unwrap();
        assert_eq!(r.clients(), 2);
        assert!(
            matches!(r.check_at("busy", later), Err(ApiError::RateLimited(_))),
            "the busy client's bucket was kept, so it is still limited"
        );
    }
}
