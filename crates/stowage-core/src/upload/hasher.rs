//! A SHA-256 whose running state is serializable, so the digest of a
//! resumable upload can be checked at completion without reading it back,
//! even when its chunks arrived at different processes.

use serde::{Deserialize, Serialize};
use sha2::digest::consts::U64;
use sha2::digest::generic_array::GenericArray;

use crate::Sha256Digest;

const INITIAL_STATE: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

/// One 64-byte SHA-256 block.
type Block = GenericArray<u8, U64>;

/// Blocks hashed per call of `compress256`.
const BATCH_BLOCKS: usize = 64;

/// SHA-256 over data fed in pieces, with a state of 32 + at most 63 + 8 bytes
/// that serializes to JSON.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumableSha256 {
    state: [u32; 8],
    #[serde(with = "hex_bytes")]
    pending: Vec<u8>,
    length: u64,
}

impl Default for ResumableSha256 {
    fn default() -> Self {
        Self {
            state: INITIAL_STATE,
            pending: Vec::new(),
            length: 0,
        }
    }
}

impl std::fmt::Debug for ResumableSha256 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResumableSha256")
            .field("length", &self.length)
            .finish_non_exhaustive()
    }
}

impl ResumableSha256 {
    /// Feeds `data`.
    pub fn update(&mut self, mut data: &[u8]) {
        self.length += data.len() as u64;
        if !self.pending.is_empty() {
            let take = (64 - self.pending.len()).min(data.len());
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.pending.len() < 64 {
                return;
            }
            let block = GenericArray::clone_from_slice(&self.pending);
            sha2::compress256(&mut self.state, &[block]);
            self.pending.clear();
        }
        let full = data.len() / 64 * 64;
        // `compress256` wants a slice of block arrays; the blocks go through
        // a 4 KiB buffer on the stack (it stays in L1), which costs about 2%
        // over hashing in place, where collecting them into a Vec halved the
        // speed.
        if full == 0 {
            self.pending.extend_from_slice(data);
            return;
        }
        let mut batch = [Block::default(); BATCH_BLOCKS];
        for piece in data[..full].chunks(64 * BATCH_BLOCKS) {
            let n = piece.len() / 64;
            for (block, bytes) in batch.iter_mut().zip(piece.chunks_exact(64)) {
                block.copy_from_slice(bytes);
            }
            sha2::compress256(&mut self.state, &batch[..n]);
        }
        self.pending.extend_from_slice(&data[full..]);
    }

    /// Bytes fed so far.
    pub fn len(&self) -> u64 {
        self.length
    }

    /// Whether nothing was fed.
    pub fn is_empty(&self) -> bool {
        self.length == 0
    }

    /// The digest of everything fed so far (the state is left as it is).
    pub fn digest(&self) -> Sha256Digest {
        let mut state = self.state;
        let mut tail = self.pending.clone();
        tail.push(0x80);
        while tail.len() % 64 != 56 {
            tail.push(0);
        }
        tail.extend_from_slice(&(self.length.wrapping_mul(8)).to_be_bytes());
        let blocks: Vec<_> = tail
            .chunks_exact(64)
            .map(GenericArray::clone_from_slice)
            .collect();
        sha2::compress256(&mut state, &blocks);
        let mut out = [0u8; 32];
        for (chunk, word) in out.chunks_exact_mut(4).zip(state) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        Sha256Digest::from_bytes(out)
    }

    /// Whether a deserialized state is internally consistent.
    pub(crate) fn is_consistent(&self) -> bool {
        self.pending.len() < 64 && (self.length % 64) as usize == self.pending.len()
    }
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        hex::decode(s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn matches_sha2_for_every_split_and_survives_serialization() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for len in [0usize, 1, 55, 56, 63, 64, 65, 127, 128, 1000, 4099] {
            let data: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            let expected = Sha256Digest::of(&data);
            let mut h = ResumableSha256::default();
            let mut rest = &data[..];
            while !rest.is_empty() {
                let n = rng.gen_range(1..=rest.len().min(150));
                h.update(&rest[..n]);
                rest = &rest[n..];
                let json = serde_json::to_string(&h).unwrap();
                h = serde_json::from_str(&json).unwrap();
                assert!(h.is_consistent());
            }
            assert_eq!(h.digest(), expected, "length {len}");
            assert_eq!(h.len(), len as u64);
        }
    }

    #[test]
    fn matches_sha2_for_pieces_spanning_several_batches() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(8);
        let data: Vec<u8> = (0..1_000_003).map(|_| rng.gen()).collect();
        // Pieces of exactly one batch, of several batches and a partial one,
        // and odd sizes that leave bytes pending between calls.
        for sizes in [
            vec![64 * BATCH_BLOCKS],
            vec![300_001, 17],
            vec![4095, 4097, 1 << 20],
        ] {
            let mut h = ResumableSha256::default();
            let mut rest = &data[..];
            for n in sizes.iter().cycle() {
                if rest.is_empty() {
                    break;
                }
                let n = (*n).min(rest.len());
                h.update(&rest[..n]);
                rest = &rest[n..];
            }
            assert_eq!(h.digest(), Sha256Digest::of(&data), "pieces of {sizes:?}");
        }
    }
}
