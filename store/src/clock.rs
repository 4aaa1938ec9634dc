//! Time and randomness as parameters: the node reads both through [`Environment`], so tests
//! pin the clock and the ids instead of sleeping or matching random values.

use ostracon_protocol::time::Timestamp;
use uuid::Uuid;

/// The node's source of time and fresh identifiers.
pub trait Environment: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> Timestamp;
    /// A fresh random UUID (incident ids).
    fn uuid(&self) -> Uuid;
    /// 32 fresh random bytes (tokens, nonces).
    fn random_bytes(&self) -> [u8; 32];
}

/// A fixed, manually advanced environment for tests.
#[derive(Debug)]
pub struct FixedEnvironment {
    now: std::sync::Mutex<Timestamp>,
    next_id: std::sync::atomic::AtomicU64,
}

impl FixedEnvironment {
    /// Starts at `now`.
    pub fn new(now: Timestamp) -> Self {
        Self { now: std::sync::Mutex::new(now), next_id: 1.into() }
    }

    /// Moves the clock.
    pub fn advance(&self, secs: i64) {
        let mut now = self.now.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *now = now.plus_secs(secs);
    }
}

impl Environment for FixedEnvironment {
    fn now(&self) -> Timestamp {
        *self.now.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn uuid(&self) -> Uuid {
        Uuid::from_u128(u128::from(self.next_id.fetch_add(1, std::sync::atomic::Ordering::SeqCst)))
    }

    fn random_bytes(&self) -> [u8; 32] {
        let mut bytes = [0u8; 32];
        bytes[..16].copy_from_slice(self.uuid().as_bytes());
        bytes
    }
}
