//! Rendered explanations of listed entries, kept in memory beside the index so a listed
//! lookup is answered without the database and without rendering again.
//!
//! The reader renders (the store does not know the format) and offers the text with the
//! epoch it read at; a commit that changed an entry's rows or reasons drops that entry's
//! text, or every text after a change whose entries are not known one by one, and moves the
//! epoch, in the step that moves the index. A text rendered from a read that a commit
//! overtook is not kept, so what is served is never older than the last commit.
//! The cache is bounded by entry count, least recently used first out.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, PoisonError};

use lru::LruCache;

use crate::index::EntryId;

/// How many entries' explanations are kept by default: about 450 bytes each, so some 7 MB at
/// most. Lookups of abuse repeat the same addresses; the hot ones stay in.
pub const DEFAULT_EXPLANATIONS: usize = 16_384;

/// The cache.
pub struct Explanations {
    inner: Mutex<Inner>,
}

struct Inner {
    epoch: u64,
    texts: LruCache<EntryId, Arc<str>>,
}

impl Explanations {
    /// An empty cache of at most `capacity` entries (at least one).
    pub fn new(capacity: usize) -> Self {
        let capacity = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        Self { inner: Mutex::new(Inner { epoch: 0, texts: LruCache::new(capacity) }) }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The epoch to read at: pass it to [`Explanations::offer`] with what the read rendered.
    pub fn epoch(&self) -> u64 {
        self.inner().epoch
    }

    /// The text kept for entry `id`, if any.
    pub fn get(&self, id: EntryId) -> Option<Arc<str>> {
        self.inner().texts.get(&id).cloned()
    }

    /// Keeps `text` for entry `id`, unless a commit changed any entry since `epoch`.
    pub fn offer(&self, id: EntryId, epoch: u64, text: Arc<str>) {
        let mut inner = self.inner();
        if inner.epoch == epoch {
            inner.texts.put(id, text);
        }
    }

    /// How many texts are kept.
    pub fn len(&self) -> usize {
        self.inner().texts.len()
    }

    /// True if none is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// After a commit: drops the texts of `ids` (of all entries when `all`) and moves the epoch.
    pub(crate) fn changed(&self, ids: &[EntryId], all: bool) {
        let mut inner = self.inner();
        inner.epoch += 1;
        if all {
            inner.texts.clear();
        } else {
            for id in ids {
                inner.texts.pop(id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_read_before_a_commit_is_not_kept_and_a_commit_drops_what_it_changed() {
        let cache = Explanations::new(2);
        let epoch = cache.epoch();
        cache.offer(1, epoch, Arc::from("one"));
        cache.offer(2, epoch, Arc::from("two"));
        assert_eq!(cache.get(1).as_deref(), Some("one"));
        // A commit touching entry 2 lands while entry 3 is being read.
        let reading = cache.epoch();
        cache.changed(&[2], false);
        cache.offer(3, reading, Arc::from("stale"));
        assert_eq!((cache.get(1).as_deref(), cache.get(2), cache.get(3)), (Some("one"), None, None));
        // Bounded: the least recently used goes first.
        let epoch = cache.epoch();
        cache.offer(4, epoch, Arc::from("four"));
        cache.offer(5, epoch, Arc::from("five"));
        assert_eq!((cache.get(1), cache.len()), (None, 2));
        cache.changed(&[], true);
        assert!(cache.is_empty());
    }
}
