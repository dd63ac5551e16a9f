//! Buffers the producer writes into again and again (request bodies, aggregates), kept
//! once the last request that carried one is done and handed out for the next one.
//!
//! A fresh buffer of tens of KiB to a few MiB comes from fresh pages, which the kernel
//! maps and zeroes on first touch: with 1 KiB records, page faults were a tenth of the
//! producer's CPU while it wrote every JSON body into a new buffer, and the allocator kept
//! the pages of the buffers let go in between (BENCHMARKS.md). A pool keeps at most `max`
//! buffers, and the pipeline empties it whenever it has nothing to send, so an idle
//! producer holds none.

use std::sync::{Arc, Mutex};

use bytes::Bytes;

#[derive(Debug, Clone)]
pub(super) struct BufferPool {
    free: Arc<Mutex<Vec<Vec<u8>>>>,
    max: usize,
}

impl BufferPool {
    pub(super) fn new(max: usize) -> Self {
        Self {
            free: Arc::default(),
            max,
        }
    }

    /// An empty buffer for at least `len` bytes: the largest one given back if it is large
    /// enough, else a new one with a sixteenth more room than asked. Buffers near a limit
    /// (a request's 5 MiB, an aggregate's 50 KiB) differ in length by a record or two, so a
    /// buffer sized exactly to one would be too small for the next about half the time, and
    /// growing it moves its old contents into fresh pages; with the room, the pool settles
    /// on buffers that fit every one.
    pub(super) fn take(&self, len: usize) -> Vec<u8> {
        let kept = self.free.lock().ok().and_then(|mut free| {
            let largest = (0..free.len()).max_by_key(|&i| free[i].capacity())?;
            Some(free.swap_remove(largest))
        });
        match kept {
            Some(mut buf) if buf.capacity() >= len => {
                buf.clear();
                buf
            }
            _ => Vec::with_capacity(len + len / 16),
        }
    }

    /// `buf` as `Bytes` whose buffer comes back here once the last of them is dropped.
    pub(super) fn bytes(&self, buf: Vec<u8>) -> Bytes {
        Bytes::from_owner(Pooled {
            buf,
            pool: self.clone(),
        })
    }

    /// Takes `buf` back now (if there is room), for a caller done with it.
    pub(super) fn give(&self, buf: Vec<u8>) {
        if let Ok(mut free) = self.free.lock() {
            if free.len() < self.max && buf.capacity() > 0 {
                free.push(buf);
            }
        }
    }

    /// Lets go of the buffers kept.
    pub(super) fn clear(&self) {
        if let Ok(mut free) = self.free.lock() {
            free.clear();
        }
    }

    /// Buffers kept now.
    #[cfg(test)]
    pub(super) fn kept(&self) -> usize {
        self.free.lock().map_or(0, |free| free.len())
    }
}

/// A buffer on its way back to its pool.
struct Pooled {
    buf: Vec<u8>,
    pool: BufferPool,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        self.pool.give(std::mem::take(&mut self.buf));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_comes_back_once_its_last_copy_is_dropped_and_only_up_to_max() {
        let pool = BufferPool::new(2);
        let mut buf = pool.take(100);
        buf.extend_from_slice(b"aggregate");
        let ptr = buf.as_ptr();
        let bytes = pool.bytes(buf).slice(3..);
        assert_eq!(&bytes[..], b"regate");
        let copy = bytes.clone();
        drop(bytes);
        assert_eq!(pool.kept(), 0, "a copy is alive");
        drop(copy);
        assert_eq!(pool.kept(), 1);
        let again = pool.take(50);
        assert_eq!(
            (again.as_ptr(), again.len()),
            (ptr, 0),
            "the same buffer, empty"
        );
        for _ in 0..3 {
            pool.give(Vec::with_capacity(10));
        }
        assert_eq!(pool.kept(), 2, "no more than max");
        pool.clear();
        assert_eq!(pool.kept(), 0);
    }
}
