//! A worker's idle keep-alive upstream connections, per backend. Connections are taken
//! most-recently-used first (warm sockets); the oldest expire through the timer heap.

/// Most idle connections kept per backend per worker; more are closed.
pub const MAX_IDLE_PER_BACKEND: usize = 512;

/// Idle upstream slab indexes by backend index.
///
/// Invariant: an index is in at most one list, and only while its `Upstream` has
/// `owner == None`.
#[derive(Debug, Default)]
pub struct UpstreamPool {
    idle: Vec<Vec<usize>>,
}

impl UpstreamPool {
    /// The most recently pooled connection to `backend`.
    pub fn take(&mut self, backend: usize) -> Option<usize> {
        self.idle.get_mut(backend)?.pop()
    }

    /// Pools a connection; returns false (caller closes it) when the backend's list is full.
    pub fn put(&mut self, backend: usize, upstream: usize) -> bool {
        if self.idle.len() <= backend {
            self.idle.resize_with(backend + 1, Vec::new);
        }
        let list = &mut self.idle[backend];
        if list.len() >= MAX_IDLE_PER_BACKEND {
            return false;
        }
        list.push(upstream);
        true
    }

    /// Removes a connection that closed or expired while idle.
    pub fn remove(&mut self, backend: usize, upstream: usize) {
        if let Some(list) = self.idle.get_mut(backend) {
            list.retain(|&u| u != upstream);
        }
    }

    /// Empties one backend's list, returning what it held (to be closed).
    pub fn drain_backend(&mut self, backend: usize) -> Vec<usize> {
        self.idle
            .get_mut(backend)
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Empties every list.
    pub fn drain_all(&mut self) -> Vec<usize> {
        self.idle.iter_mut().flat_map(std::mem::take).collect()
    }

    /// Idle connections to `backend`.
    pub fn idle_count(&self, backend: usize) -> usize {
        self.idle.get(backend).map_or(0, Vec::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifo_per_backend() {
        let mut p = UpstreamPool::default();
        assert!(p.put(1, 10));
        assert!(p.put(1, 11));
        assert!(p.put(0, 12));
        assert_eq!(p.take(1), Some(11));
        p.remove(1, 10);
        assert_eq!(p.take(1), None);
        assert_eq!(p.idle_count(0), 1);
        assert_eq!(p.drain_all(), vec![12]);
    }
}
