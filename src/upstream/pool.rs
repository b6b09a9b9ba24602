//! A worker's idle keep-alive upstream connections, per backend. Connections are taken
//! most-recently-used first (warm sockets); the oldest expire through the owner's
//! deadline heap. Pure bookkeeping of indexes: no sockets here.

/// Most idle connections kept per backend per worker; more are closed.
pub const MAX_IDLE_PER_BACKEND: usize = 512;

/// Idle upstream slab indexes by backend index (of the owner's current generation).
///
/// Invariant: an index is in at most one list, and only while its connection is idle.
#[derive(Debug, Default)]
pub struct IdlePool {
    idle: Vec<Vec<usize>>,
}

impl IdlePool {
    /// The most recently pooled connection to `backend`.
    pub fn take(&mut self, backend: usize) -> Option<usize> {
        self.idle.get_mut(backend)?.pop()
    }

    /// Pools a connection; false (the caller closes it) when the backend's list is full.
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

    /// Empties one backend's list (`Some`) or every list (`None`), returning what they
    /// held (to be closed).
    pub fn take_all(&mut self, backend: Option<usize>) -> Vec<usize> {
        match backend {
            Some(b) => self.idle.get_mut(b).map(std::mem::take).unwrap_or_default(),
            None => self.idle.iter_mut().flat_map(std::mem::take).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifo_per_backend() {
        let mut p = IdlePool::default();
        assert!(p.put(1, 10));
        assert!(p.put(1, 11));
        assert!(p.put(0, 12));
        assert_eq!(p.take(1), Some(11));
        p.remove(1, 10);
        assert_eq!(p.take(1), None);
        assert_eq!(p.take_all(Some(0)), vec![12]);
        assert!(p.put(2, 13));
        assert_eq!(p.take_all(None), vec![13]);
    }

    #[test]
    fn bounded_per_backend() {
        let mut p = IdlePool::default();
        for u in 0..MAX_IDLE_PER_BACKEND {
            assert!(p.put(0, u));
        }
        assert!(!p.put(0, MAX_IDLE_PER_BACKEND));
        assert!(p.put(1, MAX_IDLE_PER_BACKEND));
    }
}
