//! One actix arbiter (a thread with a current-thread runtime) per CPU core, and the choice of
//! where a new stream runs.
//!
//! Each stream's actors and its webrtc-rs tasks live on one arbiter, so a packet never
//! crosses threads on its way from the socket to the WebSocket; spreading streams over all
//! arbiters uses every core (SPEC §2).

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use actix::{Arbiter, ArbiterHandle};

/// Index of the least-loaded slot (the first of equals): the plain rule behind [`ArbiterPool::pick`].
pub fn least_loaded(loads: &[usize]) -> Option<usize> {
    loads
        .iter()
        .enumerate()
        .min_by_key(|(_, l)| **l)
        .map(|(i, _)| i)
}

/// Counts the streams placed on one arbiter; released when the stream's handle drops.
#[derive(Debug)]
pub struct Placement {
    pub index: usize,
    load: Arc<AtomicUsize>,
}

impl Drop for Placement {
    fn drop(&mut self) {
        self.load.fetch_sub(1, Relaxed);
    }
}

pub struct ArbiterPool {
    arbiters: Vec<Arbiter>,
    loads: Vec<Arc<AtomicUsize>>,
}

impl ArbiterPool {
    /// Starts `n` arbiters (at least one). Must be called inside an actix `System`.
    pub fn new(n: usize) -> Self {
        let n = n.max(1);
        Self {
            arbiters: (0..n).map(|_| Arbiter::new()).collect(),
            loads: (0..n).map(|_| Arc::new(AtomicUsize::new(0))).collect(),
        }
    }

    /// One arbiter per available core.
    pub fn per_core() -> Self {
        Self::new(std::thread::available_parallelism().map_or(1, |n| n.get()))
    }

    pub fn len(&self) -> usize {
        self.arbiters.len()
    }

    pub fn is_empty(&self) -> bool {
        self.arbiters.is_empty()
    }

    /// Streams per arbiter right now.
    pub fn loads(&self) -> Vec<usize> {
        self.loads.iter().map(|l| l.load(Relaxed)).collect()
    }

    /// Places a stream on the least-loaded arbiter.
    pub fn pick(&self) -> (ArbiterHandle, Placement) {
        let index = least_loaded(&self.loads()).unwrap_or(0);
        self.loads[index].fetch_add(1, Relaxed);
        (
            self.arbiters[index].handle(),
            Placement {
                index,
                load: self.loads[index].clone(),
            },
        )
    }

    /// Stops every arbiter thread (after their streams were stopped).
    pub fn stop(&self) {
        for a in &self.arbiters {
            a.stop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn least_loaded_prefers_the_first_of_equals() {
        assert_eq!(least_loaded(&[]), None);
        assert_eq!(least_loaded(&[2, 1, 1]), Some(1));
        assert_eq!(least_loaded(&[0, 0]), Some(0));
    }

    #[test]
    fn placements_spread_and_release() {
        let sys = actix::System::new();
        sys.block_on(async {
            let pool = ArbiterPool::new(2);
            let a = pool.pick();
            let b = pool.pick();
            let c = pool.pick();
            assert_eq!((a.1.index, b.1.index, c.1.index), (0, 1, 0));
            assert_eq!(pool.loads(), vec![2, 1]);
            drop(a);
            assert_eq!(pool.loads(), vec![1, 1]);
            drop((b, c));
            assert_eq!(pool.loads(), vec![0, 0]);
            pool.stop();
        });
    }
}
