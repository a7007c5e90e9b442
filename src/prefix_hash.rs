//! A checksum of the bytes of a file consumed so far, that a checkpoint can store and a resume can
//! both verify and continue.
//!
//! Why not one streaming xxh3: its state cannot be saved. Instead the bytes are cut into 64 KiB
//! chunks at fixed offsets from the file's start; complete chunks are chained
//! (`chain = xxh3(chunk, seed = chain)`) and the partial last chunk is kept as bytes (under 64 KiB,
//! stored in the checkpoint). The result depends only on the bytes, never on how they were handed
//! over (batch sizes, thread counts), so the reader of a resumed run can recompute it over the
//! prefix it re-decodes and compare.

use xxhash_rust::xxh3::xxh3_64_with_seed;

const CHUNK: usize = 64 << 10;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrefixHash {
    /// Bytes consumed.
    pub len: u64,
    /// Chain over the complete chunks.
    pub chain: u64,
    /// The bytes after the last complete chunk.
    pub tail: Vec<u8>,
}

impl PrefixHash {
    pub fn update(&mut self, mut bytes: &[u8]) {
        self.len += bytes.len() as u64;
        if !self.tail.is_empty() {
            let take = (CHUNK - self.tail.len()).min(bytes.len());
            self.tail.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.tail.len() < CHUNK {
                return;
            }
            self.chain = xxh3_64_with_seed(&self.tail, self.chain);
            self.tail.clear();
        }
        let mut chunks = bytes.chunks_exact(CHUNK);
        for c in &mut chunks {
            self.chain = xxh3_64_with_seed(c, self.chain);
        }
        self.tail.extend_from_slice(chunks.remainder());
    }

    pub fn encode(&self, w: &mut crate::checkpoint::Writer) {
        w.u64(self.len);
        w.u64(self.chain);
        w.bytes(&self.tail);
    }

    pub fn decode(r: &mut crate::checkpoint::Reader) -> crate::Result<PrefixHash> {
        Ok(PrefixHash {
            len: r.u64()?,
            chain: r.u64()?,
            tail: r.bytes()?.to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn independent_of_how_the_bytes_are_split() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut whole = PrefixHash::default();
        whole.update(&data);
        for step in [1usize, 1000, 65_535, 65_536, 65_537, 200_000] {
            let mut h = PrefixHash::default();
            for c in data.chunks(step) {
                h.update(c);
            }
            assert_eq!(h, whole, "step {step}");
        }
        assert_eq!(whole.len, 300_000);
        assert_eq!(whole.tail.len(), 300_000 % CHUNK);
        let mut other = data.clone();
        other[12_345] ^= 1;
        let mut h = PrefixHash::default();
        h.update(&other);
        assert_ne!(h, whole);
    }
}
