//! Belady's OPT: the best hit ratio any cache bounded by an entry count can
//! reach on a trace, knowing the whole future. It is the yardstick that says
//! how much a policy still leaves on the table, which a comparison between
//! online caches cannot.
//!
//! The cache is a demand cache, as in the replays: an access hits when its
//! key is held; on a miss the key is inserted and, when that puts the cache
//! over capacity, the held key whose next use is furthest away (a key never
//! used again first) is evicted. The key just inserted is a candidate too, so
//! OPT may drop it at once, which is the same as not admitting it: that makes
//! OPT an upper bound for caches with an admission filter (moka's TinyLFU)
//! as well as for those that keep everything they insert.
//!
//! Unlike the replays, OPT needs the whole trace at once: the keys are
//! materialised once per trace, turned into next-use positions, and dropped.
//!
//! The simulation itself never looks at a key. Access `i` knows the position
//! `next[i]` of the next access to the same key, and a held key is stood for
//! by the position of its next access: access `i` hits exactly when position
//! `i` is held, and evicting the furthest next use is popping the largest
//! position off a max-heap. Keys never used again share one position,
//! [`Position::NEVER`], above every real one; they are interchangeable, since
//! none of them will hit again. A position a hit has used up stays in the heap
//! but sits below every live one, so it never reaches the top while the cache
//! is over capacity; the heap is cleared of such positions from time to time
//! to keep it near the cache's size. Each access costs O(log capacity).

use std::collections::BinaryHeap;
use std::num::NonZeroUsize;

use hashbrown::HashMap;

/// The optimum for one trace at one capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptResult {
    /// Accesses that hit.
    pub hits: u64,
    /// Accesses simulated.
    pub accesses: u64,
}

impl OptResult {
    /// Hits as a percentage of accesses; 0 for an empty trace.
    pub fn hit_percent(&self) -> f64 {
        if self.accesses == 0 {
            0.0
        } else {
            self.hits as f64 * 100.0 / self.accesses as f64
        }
    }
}

/// Where each access of a trace is next followed by one to the same key:
/// all OPT needs to know of a trace, computed once and simulated at every
/// capacity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextUses {
    positions: Positions,
    distinct_keys: u64,
}

/// Next-use positions, 4 bytes each when the trace is short enough.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Positions {
    /// For traces of fewer than `u32::MAX` accesses.
    Narrow(Vec<u32>),
    /// For longer traces.
    Wide(Vec<u64>),
}

impl NextUses {
    /// Computes the next use of every access of `keys`, in one backward pass.
    pub fn new(keys: &[u64]) -> Self {
        // `u32::MAX` is `NEVER`, so every real position must stay below it.
        let (positions, distinct_keys) = if keys.len() < u32::MAX as usize {
            let (next, distinct) = next_uses::<u32>(keys);
            (Positions::Narrow(next), distinct)
        } else {
            let (next, distinct) = next_uses::<u64>(keys);
            (Positions::Wide(next), distinct)
        };
        Self {
            positions,
            distinct_keys,
        }
    }

    /// Accesses in the trace.
    pub fn accesses(&self) -> u64 {
        match &self.positions {
            Positions::Narrow(next) => next.len() as u64,
            Positions::Wide(next) => next.len() as u64,
        }
    }

    /// Distinct keys in the trace.
    pub fn distinct_keys(&self) -> u64 {
        self.distinct_keys
    }

    /// OPT's hits with room for `capacity` keys.
    pub fn simulate(&self, capacity: NonZeroUsize) -> OptResult {
        let hits = match &self.positions {
            Positions::Narrow(next) => simulate(next, capacity.get()),
            Positions::Wide(next) => simulate(next, capacity.get()),
        };
        OptResult {
            hits,
            accesses: self.accesses(),
        }
    }
}

/// An index into the trace, in as few bytes as the trace allows.
trait Position: Copy + Ord {
    /// The next use of a key that is never accessed again: larger than any
    /// position, so such a key is the first evicted.
    const NEVER: Self;

    /// Position `index`, which the caller keeps below `NEVER`.
    fn at(index: usize) -> Self;

    /// The index this position stands for.
    fn index(self) -> usize;
}

impl Position for u32 {
    const NEVER: Self = u32::MAX;

    fn at(index: usize) -> Self {
        debug_assert!(index < u32::MAX as usize);
        index as u32
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl Position for u64 {
    const NEVER: Self = u64::MAX;

    fn at(index: usize) -> Self {
        index as u64
    }

    fn index(self) -> usize {
        // Only called on positions of a trace held in memory.
        self as usize
    }
}

/// The next use of every access of `keys`, and the number of distinct keys.
fn next_uses<P: Position>(keys: &[u64]) -> (Vec<P>, u64) {
    let mut next = vec![P::NEVER; keys.len()];
    let mut upcoming: HashMap<u64, P> = HashMap::new();
    for (index, &key) in keys.iter().enumerate().rev() {
        if let Some(later) = upcoming.insert(key, P::at(index)) {
            next[index] = later;
        }
    }
    (next, upcoming.len() as u64)
}

/// Stale positions the heap may hold beyond twice the live ones before it
/// is cleared of them; enough that clearing is rare on small caches.
const HEAP_SLACK: usize = 1024;

/// OPT's hits over the accesses whose next uses are `next`, with room for
/// `capacity` keys.
fn simulate<P: Position>(next: &[P], capacity: usize) -> u64 {
    let mut held = BitSet::new(next.len());
    let mut heap: BinaryHeap<P> = BinaryHeap::new();
    let mut resident = 0usize;
    let mut hits = 0u64;
    for (index, &later) in next.iter().enumerate() {
        if held.take(index) {
            hits += 1;
        } else {
            resident += 1;
        }
        // The key is held until its next use, unless evicted before.
        if later != P::NEVER {
            held.insert(later.index());
        }
        heap.push(later);
        if resident > capacity {
            // The top is live: every live position lies after `index`, every
            // stale one at or before it, and at least two keys are held.
            if let Some(victim) = heap.pop()
                && victim != P::NEVER
            {
                held.take(victim.index());
            }
            resident -= 1;
        }
        if heap.len() > 2 * resident + HEAP_SLACK {
            let now = P::at(index);
            heap.retain(|&position| position > now);
        }
    }
    hits
}

/// A fixed-size set of indices, one bit each.
struct BitSet {
    words: Vec<u64>,
}

impl BitSet {
    /// An empty set of indices below `len`.
    fn new(len: usize) -> Self {
        Self {
            words: vec![0; len.div_ceil(64)],
        }
    }

    /// Adds `index`.
    fn insert(&mut self, index: usize) {
        self.words[index / 64] |= 1 << (index % 64);
    }

    /// Removes `index`; true if it was in the set.
    fn take(&mut self, index: usize) -> bool {
        let word = &mut self.words[index / 64];
        let bit = 1 << (index % 64);
        let was = *word & bit != 0;
        *word &= !bit;
        was
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::caches::{ExactLru, ReplayCache};

    fn capacity(n: usize) -> NonZeroUsize {
        NonZeroUsize::new(n).expect("non-zero")
    }

    fn opt_hits(keys: &[u64], room: usize) -> u64 {
        NextUses::new(keys).simulate(capacity(room)).hits
    }

    /// The most hits any sequence of eviction choices gets: a search over
    /// every choice at every miss, for keys below 8.
    fn brute_force(keys: &[u64], room: usize) -> u64 {
        fn best(
            keys: &[u64],
            at: usize,
            held: u8,
            room: u32,
            memo: &mut HashMap<(usize, u8), u64>,
        ) -> u64 {
            let Some(&key) = keys.get(at) else { return 0 };
            if let Some(&known) = memo.get(&(at, held)) {
                return known;
            }
            let bit = 1u8 << key;
            let result = if held & bit != 0 {
                1 + best(keys, at + 1, held, room, memo)
            } else {
                let with = held | bit;
                if with.count_ones() <= room {
                    best(keys, at + 1, with, room, memo)
                } else {
                    (0..8)
                        .filter(|victim| with & (1 << victim) != 0)
                        .map(|victim| best(keys, at + 1, with & !(1 << victim), room, memo))
                        .max()
                        .unwrap_or(0)
                }
            };
            memo.insert((at, held), result);
            result
        }
        let room = u32::try_from(room).expect("small capacity");
        best(keys, 0, 0, room, &mut HashMap::new())
    }

    /// Belady's rule applied literally to the keys, in O(n × capacity).
    fn naive(keys: &[u64], room: usize) -> u64 {
        let next_use = |from: usize, key: u64| {
            keys[from..]
                .iter()
                .position(|&k| k == key)
                .map_or(usize::MAX, |offset| from + offset)
        };
        let mut cache: Vec<u64> = Vec::new();
        let mut hits = 0;
        for (index, &key) in keys.iter().enumerate() {
            if cache.contains(&key) {
                hits += 1;
                continue;
            }
            cache.push(key);
            if cache.len() > room {
                let victim = (0..cache.len())
                    .max_by_key(|&slot| next_use(index + 1, cache[slot]))
                    .expect("cache is not empty");
                cache.swap_remove(victim);
            }
        }
        hits
    }

    fn random_keys(rng: &mut StdRng, len: usize, alphabet: u64) -> Vec<u64> {
        (0..len).map(|_| rng.random_range(0..alphabet)).collect()
    }

    #[test]
    fn a_loop_larger_than_the_cache_still_hits_under_opt_but_not_lru() {
        let keys: Vec<u64> = [1, 2, 3].repeat(4);
        // After the first pass, two of every three accesses hit: OPT keeps 1
        // and 2 and lets each 3 go.
        assert_eq!(opt_hits(&keys, 2), 6);
        let mut lru = ExactLru::new(capacity(2));
        let lru_hits = keys.iter().filter(|&&key| lru.access(key)).count();
        assert_eq!(lru_hits, 0);
    }

    #[test]
    fn the_furthest_next_use_and_keys_never_used_again_go_first() {
        // At 3, key 1 is next used after key 2 and key 3 never again.
        assert_eq!(opt_hits(&[1, 2, 3, 2, 1], 2), 2);
        // At 3, keys 2 and 3 are never used again, key 1 is.
        assert_eq!(opt_hits(&[1, 2, 3, 1], 2), 1);
        // With room for one, OPT keeps 1 rather than admit 2.
        assert_eq!(opt_hits(&[1, 2, 1], 1), 1);
    }

    #[test]
    fn with_room_for_every_key_only_first_accesses_miss() {
        let keys = [5, 9, 5, 5, 1, 9, 7, 1];
        let uses = NextUses::new(&keys);
        assert_eq!((uses.accesses(), uses.distinct_keys()), (8, 4));
        for room in [4, 5, 100] {
            let result = uses.simulate(capacity(room));
            assert_eq!((result.hits, result.accesses), (4, 8));
        }
        assert_eq!(uses.simulate(capacity(4)).hit_percent(), 50.0);
    }

    #[test]
    fn an_empty_trace_has_no_hits() {
        let uses = NextUses::new(&[]);
        assert_eq!((uses.accesses(), uses.distinct_keys()), (0, 0));
        let result = uses.simulate(capacity(3));
        assert_eq!((result.hits, result.hit_percent()), (0, 0.0));
    }

    #[test]
    fn next_uses_point_at_the_next_access_of_the_same_key() {
        let (next, distinct) = next_uses::<u32>(&[4, 2, 4, 4, 3]);
        assert_eq!(next, [2, u32::MAX, 3, u32::MAX, u32::MAX]);
        assert_eq!(distinct, 3);
    }

    #[test]
    fn opt_matches_a_search_over_every_eviction_choice() {
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..300 {
            let len = rng.random_range(0..=14);
            let alphabet = rng.random_range(1..=6);
            let keys = random_keys(&mut rng, len, alphabet);
            for room in 1..=4 {
                assert_eq!(
                    opt_hits(&keys, room),
                    brute_force(&keys, room),
                    "capacity {room}, keys {keys:?}"
                );
            }
        }
    }

    #[test]
    fn opt_matches_beladys_rule_applied_literally_on_longer_traces() {
        let mut rng = StdRng::seed_from_u64(11);
        for round in 0..20 {
            let alphabet = if round % 2 == 0 { 40 } else { 300 };
            let keys = random_keys(&mut rng, 3_000, alphabet);
            for room in [1, 3, 17, 39, 120] {
                assert_eq!(
                    opt_hits(&keys, room),
                    naive(&keys, room),
                    "round {round}, capacity {room}"
                );
            }
        }
    }

    #[test]
    fn clearing_stale_positions_changes_nothing() {
        // A long hot loop makes many hits, so the heap is cleared often.
        let mut rng = StdRng::seed_from_u64(3);
        let mut keys: Vec<u64> = (0..20_000).map(|i| i % 10).collect();
        keys.extend(random_keys(&mut rng, 5_000, 2_000));
        keys.extend((0..20_000).map(|i| i % 7));
        for room in [1, 8, 64] {
            assert_eq!(opt_hits(&keys, room), naive(&keys, room), "capacity {room}");
        }
    }

    #[test]
    fn wide_positions_give_the_same_result_as_narrow_ones() {
        let mut rng = StdRng::seed_from_u64(5);
        let keys = random_keys(&mut rng, 5_000, 500);
        let (narrow, narrow_distinct) = next_uses::<u32>(&keys);
        let (wide, wide_distinct) = next_uses::<u64>(&keys);
        assert_eq!(narrow_distinct, wide_distinct);
        for room in [1, 50, 499, 500] {
            assert_eq!(simulate(&narrow, room), simulate(&wide, room));
        }
    }

    #[test]
    fn opt_never_loses_to_lru() {
        let mut rng = StdRng::seed_from_u64(9);
        let keys = random_keys(&mut rng, 20_000, 1_000);
        for room in [10, 100, 500] {
            let mut lru = ExactLru::new(capacity(room));
            let lru_hits = keys.iter().filter(|&&key| lru.access(key)).count() as u64;
            assert!(opt_hits(&keys, room) >= lru_hits, "capacity {room}");
        }
    }
}
