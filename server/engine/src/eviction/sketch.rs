//! How often a key was seen lately, including while it was not cached: a
//! count-min sketch of 4-bit counters behind a doorkeeper, after TinyLFU
//! (Einziger, Friedman and Manes, "TinyLFU: A Highly Efficient Cache
//! Admission Policy", 2017).
//!
//! - The **doorkeeper** is a Bloom filter that takes a key's first
//!   sighting, so that keys seen once (most keys of a scan) never reach the
//!   counters and cost nothing there.
//! - The **sketch** counts later sightings in four counters chosen by four
//!   hashes, and answers the smallest of them: collisions can only make a
//!   key look more frequent, never less.
//! - Every `10 × width` sightings, all counters are halved and the
//!   doorkeeper emptied, so the counts describe the recent past and a key
//!   that was popular long ago stops looking so. The doorkeeper is also
//!   emptied whenever it holds as many keys as it can tell apart, since a
//!   loop over many keys would otherwise fill it within one period and
//!   make every key look seen before.
//!
//! Memory: 8 bytes per key the shard holds for the counters (16 nibbles a
//! word, one word per key) and 2 for the doorkeeper; a shard of under 512
//! keys keeps a doorkeeper of up to 1 KiB, so that it can hold one sample
//! period's first sightings (`doorkeeper_words`).

/// Bits of doorkeeper per key it remembers: past that many keys it is
/// emptied early, since a fuller filter would let more and more first
/// sightings pass for second ones (with 3 probes and 8 bits a key, about
/// 3 % of them).
const DOORKEEPER_BITS_PER_KEY: usize = 8;
/// Words of doorkeeper a sketch of any width may have, whatever its
/// share per counter word: 1 KiB, 1 024 keys at [`DOORKEEPER_BITS_PER_KEY`].
const DOORKEEPER_FLOOR_WORDS: usize = 128;
/// Highest count a counter holds.
const MAX_COUNT: u64 = 15;
/// Every nibble's low three bits, for halving all counters of a word.
const HALVING_MASK: u64 = 0x7777_7777_7777_7777;

/// A frequency sketch sized for a shard of about `width` keys.
#[derive(Debug, Default)]
pub(super) struct FrequencySketch {
    /// 16 counters of 4 bits per word.
    counters: Vec<u64>,
    /// Bloom filter of first sightings, 3 probes.
    doorkeeper: Vec<u64>,
    /// Sightings recorded since the last halving.
    recorded: usize,
    /// Keys let into the doorkeeper since it was last emptied.
    doorkeeper_keys: usize,
}

impl FrequencySketch {
    /// Makes room for about `keys` keys, if the sketch is smaller than
    /// that or more than eight times larger. Resizing forgets every count:
    /// it happens a few times as a shard fills up to its share of the
    /// budget, or once it has shrunk far below it.
    pub(super) fn fit(&mut self, keys: usize) {
        let wanted = keys.max(16).next_power_of_two();
        let now = self.counters.len();
        if now >= wanted && now <= wanted * 8 {
            return;
        }
        self.counters = vec![0; wanted];
        self.doorkeeper = vec![0; doorkeeper_words(wanted)];
        self.recorded = 0;
        self.doorkeeper_keys = 0;
    }

    /// Counts one sighting of the key hashed to `hash`.
    pub(super) fn record(&mut self, hash: u64) {
        if self.counters.is_empty() {
            self.fit(16);
        }
        if self.doorkeeper_insert(hash) {
            self.doorkeeper_keys += 1;
            if self.doorkeeper_keys > self.doorkeeper.len() * 64 / DOORKEEPER_BITS_PER_KEY {
                self.doorkeeper.fill(0);
                self.doorkeeper_keys = 0;
            }
            self.recorded += 1;
            self.halve_if_due();
            return;
        }
        let mut smallest = MAX_COUNT;
        let places = self.places(hash);
        for (word, shift) in places {
            smallest = smallest.min((self.counters[word] >> shift) & MAX_COUNT);
        }
        if smallest == MAX_COUNT {
            return;
        }
        // Conservative update: only the counters at the minimum grow, which
        // keeps collisions from inflating the others.
        for (word, shift) in places {
            if (self.counters[word] >> shift) & MAX_COUNT == smallest {
                self.counters[word] += 1 << shift;
            }
        }
        self.recorded += 1;
        self.halve_if_due();
    }

    /// How often the key hashed to `hash` was seen lately (0 to 16).
    pub(super) fn estimate(&self, hash: u64) -> u8 {
        if self.counters.is_empty() {
            return 0;
        }
        let counted = self
            .places(hash)
            .iter()
            .map(|&(word, shift)| (self.counters[word] >> shift) & MAX_COUNT)
            .min()
            .unwrap_or(0);
        counted as u8 + u8::from(self.doorkeeper_contains(hash))
    }

    /// Bytes held.
    pub(super) fn memory_bytes(&self) -> usize {
        (self.counters.capacity() + self.doorkeeper.capacity()) * size_of::<u64>()
    }

    /// The four counters of `hash`: a word and a nibble each.
    fn places(&self, hash: u64) -> [(usize, u32); 4] {
        let mask = self.counters.len() - 1;
        let mut places = [(0, 0); 4];
        for (row, place) in places.iter_mut().enumerate() {
            let mixed = mix(hash, row as u64);
            *place = ((mixed as usize) & mask, ((mixed >> 60) as u32) * 4);
        }
        places
    }

    /// Sets the key's doorkeeper bits; true if they were not all set.
    fn doorkeeper_insert(&mut self, hash: u64) -> bool {
        let bits = self.doorkeeper.len() * 64;
        let mut fresh = false;
        for probe in 0..3 {
            let bit = (mix(hash, 8 + probe) as usize) % bits;
            let word = &mut self.doorkeeper[bit / 64];
            let mask = 1 << (bit % 64);
            fresh |= *word & mask == 0;
            *word |= mask;
        }
        fresh
    }

    fn doorkeeper_contains(&self, hash: u64) -> bool {
        let bits = self.doorkeeper.len() * 64;
        (0..3).all(|probe| {
            let bit = (mix(hash, 8 + probe) as usize) % bits;
            self.doorkeeper[bit / 64] & (1 << (bit % 64)) != 0
        })
    }

    /// Sightings between two halvings: ten per counter word.
    pub(super) fn sample_size(&self) -> usize {
        self.counters.len().max(16) * 10
    }

    fn halve_if_due(&mut self) {
        if self.recorded >= self.sample_size() {
            self.halve();
        }
    }

    /// Halves every count and empties the doorkeeper. The policy calls it
    /// too, every [`FrequencySketch::sample_size`] reads of the shard:
    /// reads that hit reach the sketch only in bulk and capped, so counting
    /// sightings alone would age the counts far too slowly where most
    /// reads hit.
    pub(super) fn halve(&mut self) {
        for word in &mut self.counters {
            *word = (*word >> 1) & HALVING_MASK;
        }
        self.doorkeeper.fill(0);
        self.doorkeeper_keys = 0;
        self.recorded /= 2;
    }
}

/// Doorkeeper words for `width` counter words: a quarter word each (two
/// keys a counter word), but never fewer than one sample period's first
/// sightings need ([`FrequencySketch::sample_size`], 10 a word, at
/// [`DOORKEEPER_BITS_PER_KEY`] each) up to [`DOORKEEPER_FLOOR_WORDS`].
///
/// A doorkeeper that fills before the counters are halved is emptied
/// early, which takes one sighting from every key seen lately but not the
/// counts above it, so rare keys sink against frequent ones between two
/// halvings. In a large shard that costs little (two keys a counter word
/// is many keys); in a small one, where a sample's distinct keys may be
/// many times the shard's (a small cache under a stream of one-time keys),
/// the doorkeeper would be emptied several times a period and the sketch
/// would stop telling a key seen twice from one seen once.
fn doorkeeper_words(width: usize) -> usize {
    let per_word = width / 4;
    let sample = (width * 10 * DOORKEEPER_BITS_PER_KEY).div_ceil(64);
    per_word.max(sample.min(DOORKEEPER_FLOOR_WORDS)).max(1)
}

/// An independent-looking 64-bit hash of `hash` for `row` (a multiply and
/// xor-shift finaliser, as in SplitMix64).
fn mix(hash: u64, row: u64) -> u64 {
    let mut x = hash ^ row.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sketch(keys: usize) -> FrequencySketch {
        let mut sketch = FrequencySketch::default();
        sketch.fit(keys);
        sketch
    }

    #[test]
    fn a_key_seen_once_stays_at_the_doorkeeper() {
        let mut sketch = sketch(1024);
        assert_eq!(sketch.estimate(7), 0);
        sketch.record(7);
        assert_eq!(sketch.estimate(7), 1);
        sketch.record(7);
        sketch.record(7);
        assert_eq!(sketch.estimate(7), 3);
    }

    #[test]
    fn counts_saturate_and_frequent_keys_outrank_rare_ones() {
        let mut sketch = sketch(1024);
        for _ in 0..40 {
            sketch.record(1);
        }
        for key in 100..600 {
            sketch.record(key);
        }
        assert_eq!(sketch.estimate(1), 16);
        let rare = (100..600)
            .map(|key| sketch.estimate(key))
            .max()
            .expect("some");
        assert!(rare <= 2, "{rare}");
    }

    #[test]
    fn a_full_doorkeeper_is_emptied_rather_than_letting_first_sightings_through() {
        // Far more keys seen once than the doorkeeper can tell apart: a key
        // seen once must still look seen (at most) once, not twice.
        let mut sketch = sketch(64);
        for key in 0..5_000 {
            sketch.record(key);
        }
        let twice = (0..5_000).filter(|&key| sketch.estimate(key) > 1).count();
        assert!(
            twice < 250,
            "{twice} of 5000 keys seen once look seen twice"
        );
    }

    #[test]
    fn a_small_sketch_tells_a_second_sighting_amid_one_time_keys() {
        // A shard of 100 keys whose sample period sees 900 keys once
        // between two sightings of 100 others: the doorkeeper must still
        // hold the first sightings when the second ones come.
        let mut sketch = sketch(100);
        assert!(sketch.sample_size() > 1_100);
        for key in 0..100 {
            sketch.record(key);
        }
        for key in 1_000..1_900 {
            sketch.record(key);
        }
        for key in 0..100 {
            sketch.record(key);
        }
        let twice = (0..100).filter(|&key| sketch.estimate(key) >= 2).count();
        assert!(twice >= 95, "{twice} of 100 keys seen twice look so");
        let once = (1_000..1_900)
            .filter(|&key| sketch.estimate(key) >= 2)
            .count();
        assert!(once < 90, "{once} of 900 keys seen once look seen twice");
    }

    #[test]
    fn the_doorkeeper_is_a_quarter_word_a_counter_word_past_its_floor() {
        assert_eq!(doorkeeper_words(16), 20);
        assert_eq!(doorkeeper_words(128), DOORKEEPER_FLOOR_WORDS);
        assert_eq!(doorkeeper_words(512), 128);
        assert_eq!(doorkeeper_words(1 << 20), (1 << 20) / 4);
    }

    #[test]
    fn old_counts_fade() {
        let mut sketch = sketch(16);
        for _ in 0..10 {
            sketch.record(1);
        }
        let before = sketch.estimate(1);
        // Enough other sightings to halve the counters twice.
        for key in 1_000..1_400 {
            sketch.record(key);
            sketch.record(key);
        }
        assert!(sketch.estimate(1) < before / 2, "{}", sketch.estimate(1));
    }
}
