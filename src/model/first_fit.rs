//! [`FirstFitSet`]: which slots of a fixed-size table are free, answering "lowest free slot at
//! or after `i`" in a constant number of word operations.
//!
//! It is a hierarchical bitmap: level 0 has one bit per slot (set = free), each higher level
//! one bit per word of the level below (set = that word has a free slot), up to a single top
//! word. A search looks at one word per level on the way up and one per level on the way
//! down, so every operation costs O(log64 capacity): 3 levels cover 262 144 slots. Nothing
//! depends on how many operations came before.
//!
//! ```
//! use udprange::model::FirstFitSet;
//! let mut slots = FirstFitSet::all_free(100);
//! assert_eq!(slots.take_first_free_from(0), Some(0));
//! assert_eq!(slots.take_first_free_from(0), Some(1));
//! slots.set_free(0);
//! assert_eq!(slots.take_first_free_from(0), Some(0));
//! assert_eq!(slots.first_free_from(99), Some(99));
//! ```

const WORD: usize = 64;

/// A set of free slots `0..capacity` with first-fit search.
#[derive(Debug, Clone)]
pub struct FirstFitSet {
    capacity: usize,
    free: usize,
    /// `levels[0]` has one bit per slot; `levels[k + 1]` one bit per word of `levels[k]`.
    levels: Vec<Vec<u64>>,
}

impl FirstFitSet {
    /// A set of `capacity` slots, all free.
    pub fn all_free(capacity: usize) -> Self {
        let mut levels = Vec::new();
        let mut bits = capacity;
        loop {
            let words = bits.div_ceil(WORD).max(1);
            let mut level = vec![u64::MAX; words];
            let tail = bits % WORD;
            if tail != 0 {
                level[words - 1] = (1u64 << tail) - 1;
            }
            if bits == 0 {
                level[0] = 0;
            }
            levels.push(level);
            if words == 1 {
                break;
            }
            bits = words;
        }
        Self {
            capacity,
            free: capacity,
            levels,
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Number of free slots.
    pub fn free_count(&self) -> usize {
        self.free
    }

    pub fn is_free(&self, slot: usize) -> bool {
        slot < self.capacity && self.levels[0][slot / WORD] & (1 << (slot % WORD)) != 0
    }

    /// Marks `slot` as taken. Returns false (and changes nothing) if it was not free.
    pub fn take(&mut self, slot: usize) -> bool {
        if !self.is_free(slot) {
            return false;
        }
        let mut index = slot;
        for level in &mut self.levels {
            let word = &mut level[index / WORD];
            *word &= !(1 << (index % WORD));
            if *word != 0 {
                break;
            }
            index /= WORD;
        }
        self.free -= 1;
        true
    }

    /// Marks `slot` as free. Returns false (and changes nothing) if it was already free or is
    /// out of range.
    pub fn set_free(&mut self, slot: usize) -> bool {
        if slot >= self.capacity || self.is_free(slot) {
            return false;
        }
        let mut index = slot;
        for level in &mut self.levels {
            let word = &mut level[index / WORD];
            let was_empty = *word == 0;
            *word |= 1 << (index % WORD);
            if !was_empty {
                break;
            }
            index /= WORD;
        }
        self.free += 1;
        true
    }

    /// The lowest free slot `>= start`, if any.
    pub fn first_free_from(&self, start: usize) -> Option<usize> {
        if start >= self.capacity {
            return None;
        }
        self.find_from(0, start)
    }

    /// Takes and returns the lowest free slot `>= start`.
    pub fn take_first_free_from(&mut self, start: usize) -> Option<usize> {
        let slot = self.first_free_from(start)?;
        self.take(slot);
        Some(slot)
    }

    /// Lowest set bit `>= index` at `level`.
    fn find_from(&self, level: usize, index: usize) -> Option<usize> {
        let words = &self.levels[level];
        let word_index = index / WORD;
        let word = *words.get(word_index)?;
        let here = word & (u64::MAX << (index % WORD));
        if here != 0 {
            return Some(word_index * WORD + here.trailing_zeros() as usize);
        }
        if level + 1 == self.levels.len() {
            return None;
        }
        // The next word at this level with a set bit, found one level up.
        let next_word = self.find_from(level + 1, word_index + 1)?;
        Some(next_word * WORD + words[next_word].trailing_zeros() as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_fit_order_and_reuse() {
        let mut set = FirstFitSet::all_free(5000);
        for expected in 0..5000 {
            assert_eq!(set.take_first_free_from(0), Some(expected));
        }
        assert_eq!(set.take_first_free_from(0), None, "exhausts");
        assert!(set.set_free(4095));
        assert!(set.set_free(70));
        assert_eq!(set.first_free_from(0), Some(70));
        assert_eq!(set.first_free_from(71), Some(4095));
        assert_eq!(set.first_free_from(4096), None);
        assert_eq!(set.free_count(), 2);
    }

    #[test]
    fn skips_taken() {
        let mut set = FirstFitSet::all_free(300_000);
        for slot in 0..262_144 {
            set.take(slot);
        }
        assert_eq!(set.first_free_from(0), Some(262_144));
        assert_eq!(set.first_free_from(299_999), Some(299_999));
        assert_eq!(set.first_free_from(300_000), None);
    }

    #[test]
    fn take_and_free_are_idempotent_guards() {
        let mut set = FirstFitSet::all_free(10);
        assert!(set.take(3));
        assert!(!set.take(3));
        assert!(!set.take(10));
        assert!(set.set_free(3));
        assert!(!set.set_free(3));
        assert!(!set.set_free(11));
        assert_eq!(set.free_count(), 10);
    }

    #[test]
    fn zero_capacity_has_nothing() {
        let mut set = FirstFitSet::all_free(0);
        assert_eq!(set.take_first_free_from(0), None);
        assert_eq!(set.free_count(), 0);
    }

    #[test]
    fn matches_a_naive_scan() {
        // Deterministic pseudo-random operations against a Vec<bool>.
        let mut set = FirstFitSet::all_free(4200);
        let mut naive = vec![true; 4200];
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..50_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let slot = (x % 4200) as usize;
            if x & (1 << 40) != 0 {
                assert_eq!(set.take(slot), naive[slot]);
                naive[slot] = false;
            } else {
                assert_eq!(set.set_free(slot), !naive[slot]);
                naive[slot] = true;
            }
            let start = ((x >> 20) % 4300) as usize;
            let expected = (start..4200).find(|&s| naive.get(s) == Some(&true));
            assert_eq!(set.first_free_from(start), expected);
        }
    }
}
