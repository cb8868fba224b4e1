//! How fast the resumable SHA-256 every upload chunk goes through is next to
//! `sha2::Sha256` (the same compression function, without a serializable
//! state). Rounds interleave the two; the median ratio is printed.
//!
//!   cargo bench -p stowage-core --bench resumable_sha256 [-- ROUNDS]

use std::hint::black_box;
use std::time::{Duration, Instant};

use sha2::Digest;
use stowage_core::upload::ResumableSha256;

const PIECE: usize = 1 << 20;
const PIECES: usize = 256;

fn time(f: impl FnOnce()) -> Duration {
    let start = Instant::now();
    f();
    start.elapsed()
}

fn main() {
    let rounds: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(7)
        .max(1);
    // Odd piece lengths leave bytes pending between calls, as network reads do.
    let data: Vec<u8> = (0..PIECE + 17).map(|i| (i % 251) as u8).collect();
    let mut ratios = Vec::new();
    for round in 1..=rounds {
        let plain = time(|| {
            let mut h = sha2::Sha256::new();
            for _ in 0..PIECES {
                h.update(black_box(&data));
            }
            black_box(h.finalize());
        });
        let resumable = time(|| {
            let mut h = ResumableSha256::default();
            for _ in 0..PIECES {
                h.update(black_box(&data));
            }
            black_box(h.digest());
        });
        let ratio = plain.as_secs_f64() / resumable.as_secs_f64();
        let mib = (PIECES * data.len()) as f64 / f64::from(1 << 20);
        println!(
            "round {round}: sha2 {:.0} MiB/s, resumable {:.0} MiB/s, ratio {ratio:.3}",
            mib / plain.as_secs_f64(),
            mib / resumable.as_secs_f64()
        );
        ratios.push(ratio);
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "median speed of ResumableSha256 relative to sha2::Sha256: {:.3}x over {rounds} rounds",
        ratios[rounds / 2]
    );
}
