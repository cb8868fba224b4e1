//! Planning multipart copies inside S3's limits: at most 10,000 parts of at
//! most 5 GiB each (all but the last at least the minimum part size), and
//! objects of at most 5 TiB. A chunked upload whose chunks would need more
//! parts than that is assembled in stages: groups of chunks into
//! intermediate objects, then those into the blob. Pure functions, tested
//! on the numbers without moving a byte.

use stowage_core::{Error, Result};

/// The most parts one multipart upload may have.
pub(crate) const MAX_PARTS: u64 = 10_000;
/// The largest part (and the largest single CopyObject source).
pub(crate) const MAX_PART_SIZE: u64 = 5 << 30;
/// The largest object S3 stores.
pub(crate) const MAX_OBJECT_SIZE: u64 = 5 << 40;

/// One part of an assembled object: bytes `start..end` of source `source`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PiecePlan {
    /// Index of the source (chunk, or intermediate object of the previous
    /// stage).
    pub(crate) source: usize,
    /// First byte of the range.
    pub(crate) start: u64,
    /// End (exclusive) of the range.
    pub(crate) end: u64,
}

/// One stage: each group of consecutive sources becomes one object (the
/// next stage's sources; the last stage has one group, the blob).
pub(crate) type Stage = Vec<std::ops::Range<usize>>;

/// The byte ranges of a multipart copy of `size` bytes in parts of
/// `preferred` bytes, grown so that there are at most [`MAX_PARTS`] and
/// capped at [`MAX_PART_SIZE`].
pub(crate) fn copy_ranges(size: u64, preferred: u64) -> Vec<(u64, u64)> {
    let part = preferred
        .max(size.div_ceil(MAX_PARTS))
        .clamp(1, MAX_PART_SIZE);
    (0..size.div_ceil(part).max(1))
        .map(|i| (i * part, ((i + 1) * part).min(size)))
        .collect()
}

/// The parts of one object assembled from sources of `sizes`: each source
/// in the fewest balanced ranges of at most `max_part` bytes (one empty
/// range for an empty source).
pub(crate) fn pieces(sizes: &[u64], max_part: u64) -> Vec<PiecePlan> {
    sizes
        .iter()
        .enumerate()
        .flat_map(|(source, &size)| {
            split_balanced(size, max_part)
                .into_iter()
                .map(move |(start, end)| PiecePlan { source, start, end })
        })
        .collect()
}

/// How many parts [`pieces`] makes of one source.
fn piece_count(size: u64, max_part: u64) -> u64 {
    size.div_ceil(max_part).max(1)
}

/// `size` bytes as the fewest ranges of at most `max` bytes, of balanced
/// sizes (each above `max / 2`); one empty range for an empty object.
pub(crate) fn split_balanced(size: u64, max: u64) -> Vec<(u64, u64)> {
    if size == 0 {
        return vec![(0, 0)];
    }
    let n = size.div_ceil(max);
    (0..n)
        .map(|i| {
            (
                (i as u128 * size as u128 / n as u128) as u64,
                ((i + 1) as u128 * size as u128 / n as u128) as u64,
            )
        })
        .collect()
}

/// The stages that assemble sources of `sizes` into one object with parts
/// of at most `max_part` bytes: one stage when the parts fit in
/// [`MAX_PARTS`], else groups of consecutive sources, each within the
/// limit and of about the same number of parts, assembled first, and the
/// plan repeated on the groups. Every group but the last holds at least
/// one whole source, so every intermediate object is at least as large as
/// a source (a chunk of at least the minimum part size).
///
/// # Errors
/// The total is above [`MAX_OBJECT_SIZE`].
pub(crate) fn assembly_stages(sizes: &[u64], max_part: u64) -> Result<Vec<Stage>> {
    let total: u64 = sizes.iter().sum();
    if total > MAX_OBJECT_SIZE {
        return Err(Error::InvalidUploadState {
            reason: format!(
                "the upload has {total} bytes; S3 stores objects of at most {MAX_OBJECT_SIZE} \
                 bytes (5 TiB)"
            ),
        });
    }
    let max_part = max_part.clamp(1, MAX_PART_SIZE);
    let mut stages = Vec::new();
    let mut current: Vec<u64> = sizes.to_vec();
    loop {
        let counts: Vec<u64> = current.iter().map(|&s| piece_count(s, max_part)).collect();
        let parts: u64 = counts.iter().sum();
        if parts <= MAX_PARTS || current.len() <= 1 {
            stages.push(std::iter::once(0..current.len()).collect());
            return Ok(stages);
        }
        let groups = parts.div_ceil(MAX_PARTS);
        let target = parts.div_ceil(groups);
        let mut stage: Stage = Vec::new();
        let mut start = 0;
        let mut in_group = 0u64;
        for (i, &c) in counts.iter().enumerate() {
            if in_group > 0 && in_group + c > target {
                stage.push(start..i);
                start = i;
                in_group = 0;
            }
            in_group += c;
        }
        stage.push(start..current.len());
        current = stage
            .iter()
            .map(|g| current[g.clone()].iter().sum())
            .collect();
        stages.push(stage);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;
    const TIB: u64 = 1 << 40;

    /// Checks that `stages` assemble `sizes` inside every S3 limit and
    /// cover each byte once; returns the number of stages.
    fn check(sizes: &[u64], max_part: u64, min_part: u64) -> usize {
        let stages = assembly_stages(sizes, max_part).unwrap();
        let mut current = sizes.to_vec();
        for stage in &stages {
            // Groups cover the sources once, in order.
            assert_eq!(stage.first().unwrap().start, 0);
            assert_eq!(stage.last().unwrap().end, current.len());
            assert!(stage.windows(2).all(|w| w[0].end == w[1].start));
            let mut next = Vec::new();
            for group in stage {
                let group_sizes = &current[group.clone()];
                let parts = pieces(group_sizes, max_part);
                assert!(parts.len() as u64 <= MAX_PARTS, "{} parts", parts.len());
                for (i, p) in parts.iter().enumerate() {
                    assert!(p.end - p.start <= MAX_PART_SIZE);
                    if i + 1 < parts.len() {
                        assert!(p.end - p.start >= min_part, "part {i} too small");
                    }
                }
                let covered: u64 = parts.iter().map(|p| p.end - p.start).sum();
                assert_eq!(covered, group_sizes.iter().sum::<u64>());
                next.push(covered);
            }
            current = next;
        }
        assert_eq!(current.len(), 1);
        assert_eq!(current[0], sizes.iter().sum::<u64>());
        stages.len()
    }

    #[test]
    fn ten_thousand_and_one_chunks_of_5_mib_assemble_in_two_stages() {
        let sizes = vec![5 * MIB; 10_001];
        assert_eq!(check(&sizes, 5 * GIB, 5 * MIB), 2);
    }

    #[test]
    fn three_chunks_of_6_gib_split_into_parts_under_5_gib() {
        assert_eq!(check(&[6 * GIB; 3], 5 * GIB, 5 * MIB), 1);
        assert_eq!(pieces(&[6 * GIB; 3], 5 * GIB).len(), 6);
    }

    #[test]
    fn one_chunk_of_5_tib_copies_in_at_most_10000_parts() {
        assert_eq!(check(&[5 * TIB], 5 * GIB, 5 * MIB), 1);
        let ranges = copy_ranges(5 * TIB, 64 * MIB);
        assert!(ranges.len() as u64 <= MAX_PARTS);
        assert!(ranges.iter().all(|(a, b)| b - a <= MAX_PART_SIZE));
        assert_eq!(ranges.last().unwrap().1, 5 * TIB);
    }

    #[test]
    fn many_small_chunks_with_a_short_tail_and_huge_counts() {
        let mut sizes = vec![5 * MIB; 25_000];
        sizes.push(1);
        check(&sizes, 5 * GIB, 5 * MIB);
        // A million chunks of 5 MiB would be 4.8 TiB: three stages at most.
        let sizes = vec![5 * MIB; 1_000_000];
        assert!(check(&sizes, 5 * GIB, 5 * MIB) <= 3);
    }

    #[test]
    fn past_5_tib_is_refused_before_any_byte_moves() {
        let e = assembly_stages(&[5 * TIB, 1], 5 * GIB).unwrap_err();
        assert!(e.to_string().contains("5 TiB"), "{e}");
    }

    #[test]
    fn copy_ranges_keep_the_preferred_size_when_it_fits() {
        assert_eq!(copy_ranges(11, 5), vec![(0, 5), (5, 10), (10, 11)]);
        assert_eq!(copy_ranges(0, 5), vec![(0, 0)]);
    }
}
