//! The MD5s of several parts at once, in the vector lanes of one core.
//!
//! MD5 is one long chain of dependent steps: a core hashing one part
//! waits on each step and leaves its vector units idle, so a part costs
//! as much CPU as the chain is long. Parts are independent, so with AVX2
//! (or AVX-512VL, whose rotate and three-input logic shorten the chain)
//! eight of them advance together, one per 32-bit lane, for about the
//! CPU of one. Writers hand a part to the one hasher thread
//! ([`submit`]) when its send starts and ask for the result
//! ([`PendingMd5::hex`]) when the server has answered; parts gather in
//! between (the send takes longer than the hash), so the lanes fill, and
//! a part that arrives while others are being hashed joins at the next
//! block. This is the multi-buffer hashing storage systems use for the
//! same reason (ISA-L's `md5_mb`). Without AVX2 each part is hashed on
//! its own with md-5, on a blocking thread.

use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Parts hashed together: one per 32-bit lane of a 256-bit register.
const LANES: usize = 8;

/// The longest a part waits for others before it is hashed alone.
const MAX_WAIT: Duration = Duration::from_millis(300);

/// Blocks hashed between two looks at the queue (64 KiB per lane).
const BLOCKS_PER_TURN: usize = 1024;

/// MD5's initial state (A, B, C, D).
const INIT: [u32; 4] = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476];

/// A part's MD5 being computed: [`PendingMd5::hex`] gives it.
pub(crate) struct PendingMd5 {
    data: Bytes,
    /// The part's number with the hasher, and where its MD5 comes.
    answer: Option<(u64, oneshot::Receiver<[u8; 16]>)>,
}

/// Hands `data` to the hasher. `in_flight` is how many parts its upload
/// has in flight now, this one included: the lanes run once that many
/// parts are there (at once for 1), or when a caller needs a result.
pub(crate) fn submit(data: Bytes, in_flight: usize) -> PendingMd5 {
    static IDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let answer = hasher().and_then(|tx| {
        let (answer, rx) = oneshot::channel();
        let id = IDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let job = Job {
            id,
            data: data.clone(),
            answer,
            since: Instant::now(),
            in_flight,
        };
        tx.send(Message::Hash(job)).ok()?;
        Some((id, rx))
    });
    PendingMd5 { data, answer }
}

impl PendingMd5 {
    /// The part's MD5 as lowercase hex (what S3 answers as its ETag),
    /// hashed now if it is not yet.
    pub(crate) async fn hex(self) -> String {
        if let Some((id, mut rx)) = self.answer {
            // Hashed already: no need to make the lanes run.
            if let Ok(digest) = rx.try_recv() {
                return hex(&digest);
            }
            if let Some(tx) = hasher() {
                let _ = tx.send(Message::Want(id));
            }
            if let Ok(digest) = rx.await {
                return hex(&digest);
            }
        }
        crate::writes::md5_hex(self.data).await
    }
}

fn hex(digest: &[u8; 16]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A part to hash and where its MD5 goes.
struct Job {
    id: u64,
    data: Bytes,
    answer: oneshot::Sender<[u8; 16]>,
    /// When it was handed over.
    since: Instant,
    /// Parts its writer keeps in flight.
    in_flight: usize,
}

/// What the hasher thread is told.
enum Message {
    /// Hash this part.
    Hash(Job),
    /// A caller waits for this part's MD5: hash it now.
    Want(u64),
}

/// The hasher thread's queue, started on first use; `None` without AVX2
/// or when no thread can be started (the caller hashes with md-5).
fn hasher() -> Option<&'static mpsc::Sender<Message>> {
    static HASHER: OnceLock<Option<mpsc::Sender<Message>>> = OnceLock::new();
    HASHER
        .get_or_init(|| {
            let simd = simd::Simd::detect()?;
            let (tx, rx) = mpsc::channel();
            std::thread::Builder::new()
                .name("stowage-md5".into())
                .spawn(move || serve(rx, simd))
                .ok()?;
            Some(tx)
        })
        .as_ref()
}

/// The hasher thread. The lanes run only while a caller waits for a
/// result, while as many parts are there as their upload has in flight
/// (or the lanes are full), or once a part has waited [`MAX_WAIT`];
/// otherwise parts stay where they are, half hashed or not begun, until
/// company comes. So the CPU goes to full lanes; a caller that asks makes
/// the lanes run at once, its part first, so its result waits at most for
/// its own hashing.
fn serve(rx: mpsc::Receiver<Message>, simd: simd::Simd) {
    let mut waiting: VecDeque<Job> = VecDeque::new();
    let mut wanted: Vec<u64> = Vec::new();
    let mut lanes = Lanes::new(simd);
    loop {
        // Parts whose caller gave up (its send failed) need no result.
        waiting.retain(|job| !job.answer.is_closed());
        // A result asked for after it was sent is wanted no more.
        let here: Vec<u64> = lanes.jobs().chain(waiting.iter()).map(|j| j.id).collect();
        wanted.retain(|id| here.contains(id));
        let present = || lanes.jobs().chain(waiting.iter());
        let Some(oldest) = present().map(|job| job.since).min() else {
            wanted.clear();
            match rx.recv() {
                Ok(message) => take(message, &mut waiting, &mut wanted),
                Err(_) => return,
            }
            continue;
        };
        let company = present().map(|job| job.in_flight).min().unwrap_or(1);
        let due = !wanted.is_empty()
            || here.len() >= company.clamp(1, LANES)
            || oldest.elapsed() >= MAX_WAIT;
        if !due {
            match rx.recv_timeout(MAX_WAIT.saturating_sub(oldest.elapsed())) {
                Ok(message) => take(message, &mut waiting, &mut wanted),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
            continue;
        }
        // Parts a caller waits for take the free lanes first.
        if !wanted.is_empty() {
            let (first, rest): (VecDeque<Job>, VecDeque<Job>) =
                waiting.drain(..).partition(|job| wanted.contains(&job.id));
            waiting = first;
            waiting.extend(rest);
        }
        while lanes.has_room() {
            let Some(job) = waiting.pop_front() else {
                break;
            };
            lanes.start(job);
        }
        lanes.run(BLOCKS_PER_TURN);
        while let Ok(message) = rx.try_recv() {
            take(message, &mut waiting, &mut wanted);
        }
    }
}

/// Queues a message for [`serve`].
fn take(message: Message, waiting: &mut VecDeque<Job>, wanted: &mut Vec<u64>) {
    match message {
        Message::Hash(job) => waiting.push_back(job),
        Message::Want(id) => wanted.push(id),
    }
}

/// A part in a lane: its full blocks, then its padded tail.
struct Lane {
    job: Job,
    /// Offset of the next full block in `job.data`.
    at: usize,
    /// The last bytes, the 0x80, zeros and the bit length: one or two
    /// blocks.
    tail: [u8; 128],
    tail_blocks: usize,
    tail_at: usize,
}

impl Lane {
    fn new(job: Job) -> Lane {
        let len = job.data.len();
        let full = len - len % 64;
        let rest = &job.data[full..];
        let mut tail = [0u8; 128];
        tail[..rest.len()].copy_from_slice(rest);
        tail[rest.len()] = 0x80;
        let tail_blocks = if rest.len() < 56 { 1 } else { 2 };
        let bits = (len as u64).wrapping_mul(8).to_le_bytes();
        tail[tail_blocks * 64 - 8..tail_blocks * 64].copy_from_slice(&bits);
        Lane {
            job,
            at: 0,
            tail,
            tail_blocks,
            tail_at: 0,
        }
    }

    /// Blocks left to hash.
    fn left(&self) -> usize {
        (self.job.data.len() - self.at) / 64 + self.tail_blocks - self.tail_at
    }

    /// Whole blocks of the part left to hash (the tail not counted).
    fn whole_left(&self) -> usize {
        (self.job.data.len() - self.at) / 64
    }

    /// Where the next block is, and moves past it.
    fn advance(&mut self) -> Block {
        if self.at + 64 <= self.job.data.len() {
            self.at += 64;
            Block::Data(self.at - 64)
        } else {
            self.tail_at += 1;
            Block::Tail(self.tail_at - 1)
        }
    }

    /// The 64 bytes of `block`.
    fn block(&self, block: Block) -> &[u8; 64] {
        let bytes = match block {
            Block::Data(at) => self.job.data.get(at..),
            Block::Tail(i) => self.tail.get(i * 64..),
        };
        bytes.and_then(|b| b.first_chunk()).unwrap_or(&ZERO_BLOCK)
    }
}

/// Where a lane's next block comes from.
#[derive(Clone, Copy)]
enum Block {
    /// At this offset of the part.
    Data(usize),
    /// The padded tail's first or second block.
    Tail(usize),
}

/// What idle lanes hash (their results are never read).
static ZERO_BLOCK: [u8; 64] = [0; 64];

/// Up to [`LANES`] parts and their MD5 states, lane by lane.
struct Lanes {
    /// A, B, C and D of every lane.
    state: [[u32; LANES]; 4],
    lanes: [Option<Lane>; LANES],
    simd: simd::Simd,
}

impl Lanes {
    fn new(simd: simd::Simd) -> Lanes {
        Lanes {
            state: [[0; LANES]; 4],
            lanes: Default::default(),
            simd,
        }
    }

    /// The parts in the lanes.
    fn jobs(&self) -> impl Iterator<Item = &Job> {
        self.lanes.iter().flatten().map(|lane| &lane.job)
    }

    fn has_room(&self) -> bool {
        self.lanes.iter().any(Option::is_none)
    }

    /// Puts `job` in a free lane (the caller checked there is one).
    fn start(&mut self, job: Job) {
        if let Some(i) = self.lanes.iter().position(Option::is_none) {
            for (word, init) in INIT.iter().enumerate() {
                self.state[word][i] = *init;
            }
            self.lanes[i] = Some(Lane::new(job));
        }
    }

    /// Hashes up to `most` blocks in every busy lane, stopping early when
    /// a part is done, and sends the finished parts' MD5s.
    fn run(&mut self, most: usize) {
        // Whole blocks of every busy lane in one call while they last,
        // the state kept in registers; then the tails, a block at a time.
        let whole = self
            .lanes
            .iter()
            .flatten()
            .map(Lane::whole_left)
            .min()
            .unwrap_or(0)
            .min(most);
        if whole > 0 {
            let blocks: [&[u8]; LANES] = std::array::from_fn(|i| match &self.lanes[i] {
                Some(lane) => lane
                    .job
                    .data
                    .get(lane.at..lane.at + 64 * whole)
                    .unwrap_or(&ZERO_BLOCK),
                None => &ZERO_BLOCK,
            });
            self.simd.compress(&mut self.state, &blocks, whole);
            for lane in self.lanes.iter_mut().flatten() {
                lane.at += 64 * whole;
            }
        } else if self.lanes.iter().any(Option::is_some) {
            let mut at = [None; LANES];
            for (i, lane) in self.lanes.iter_mut().enumerate() {
                at[i] = lane.as_mut().map(Lane::advance);
            }
            let blocks: [&[u8]; LANES] = std::array::from_fn(|i| match (&self.lanes[i], at[i]) {
                (Some(lane), Some(block)) => &lane.block(block)[..],
                _ => &ZERO_BLOCK[..],
            });
            self.simd.compress(&mut self.state, &blocks, 1);
        }
        for (i, slot) in self.lanes.iter_mut().enumerate() {
            if slot.as_ref().is_some_and(|lane| lane.left() == 0) {
                if let Some(lane) = slot.take() {
                    let mut digest = [0u8; 16];
                    for (word, out) in digest.chunks_exact_mut(4).enumerate() {
                        out.copy_from_slice(&self.state[word][i].to_le_bytes());
                    }
                    let _ = lane.job.answer.send(digest);
                }
            }
        }
    }
}

/// One MD5 block in each of the [`LANES`] lanes.
#[cfg(target_arch = "x86_64")]
mod simd {
    use super::LANES;
    use std::arch::x86_64::*;

    /// Proof of the vector instructions this CPU has: only
    /// [`Simd::detect`] makes one.
    #[derive(Clone, Copy)]
    pub(in crate::md5_lanes) struct Simd(Kind);

    #[derive(Clone, Copy)]
    enum Kind {
        Avx2,
        Avx512,
    }

    impl Simd {
        /// AVX-512 (F and VL) where the CPU has it, else AVX2, else `None`.
        pub(in crate::md5_lanes) fn detect() -> Option<Simd> {
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512vl")
            {
                Some(Simd(Kind::Avx512))
            } else if std::arch::is_x86_feature_detected!("avx2") {
                Some(Simd(Kind::Avx2))
            } else {
                None
            }
        }

        /// Hashes one block per lane into `state`.
        /// `blocks[l]` holds `turns` blocks for lane `l`, or one block
        /// hashed `turns` times (an idle lane, whose state is not read);
        /// a lane with less than one block makes the call do nothing.
        pub(in crate::md5_lanes) fn compress(
            self,
            state: &mut [[u32; LANES]; 4],
            blocks: &[&[u8]; LANES],
            turns: usize,
        ) {
            let Some(bytes) = turns.checked_mul(64) else {
                return;
            };
            let mut strides = [0usize; LANES];
            for (stride, block) in strides.iter_mut().zip(blocks) {
                if block.len() >= bytes {
                    *stride = 64;
                } else if block.len() < 64 {
                    return;
                }
            }
            // SAFETY: a `Simd` exists only where the CPU has what its kind
            // names (AVX-512 implies AVX2); every lane's slice holds the
            // 64 bytes at `stride * t` for every turn `t` (checked above).
            unsafe {
                match self.0 {
                    Kind::Avx2 => compress_avx2(state, blocks, &strides, turns),
                    Kind::Avx512 => compress_avx512(state, blocks, &strides, turns),
                }
            }
        }

        /// The AVX2 code on a CPU that also has AVX-512 (tests).
        #[cfg(test)]
        pub(in crate::md5_lanes) fn avx2_only(self) -> Simd {
            Simd(Kind::Avx2)
        }
    }

    macro_rules! rotl {
        ($x:expr, $s:literal) => {
            _mm256_or_si256(
                _mm256_slli_epi32::<$s>($x),
                _mm256_srli_epi32::<{ 32 - $s }>($x),
            )
        };
    }
    macro_rules! f {
        ($b:expr, $c:expr, $d:expr) => {
            _mm256_xor_si256($d, _mm256_and_si256($b, _mm256_xor_si256($c, $d)))
        };
    }
    macro_rules! g {
        ($b:expr, $c:expr, $d:expr) => {
            _mm256_xor_si256($c, _mm256_and_si256($d, _mm256_xor_si256($b, $c)))
        };
    }
    macro_rules! h {
        ($b:expr, $c:expr, $d:expr) => {
            _mm256_xor_si256(_mm256_xor_si256($b, $c), $d)
        };
    }
    macro_rules! i {
        ($b:expr, $c:expr, $d:expr) => {
            _mm256_xor_si256(
                $c,
                _mm256_or_si256($b, _mm256_xor_si256($d, _mm256_set1_epi32(-1))),
            )
        };
    }
    macro_rules! step {
        ($rotl:ident, $f:ident, $a:ident, $b:ident, $c:ident, $d:ident, $w:expr, $k:literal, $s:literal) => {
            let t = _mm256_add_epi32(
                _mm256_add_epi32($a, _mm256_add_epi32($w, _mm256_set1_epi32($k as i32))),
                $f!($b, $c, $d),
            );
            $a = _mm256_add_epi32($b, $rotl!(t, $s));
        };
    }

    // With AVX-512VL: one rotate and one three-input logic instruction
    // where AVX2 needs three and two, a shorter chain per step.
    macro_rules! rotl512 {
        ($x:expr, $s:literal) => {
            _mm256_rol_epi32::<$s>($x)
        };
    }
    macro_rules! f512 {
        ($b:expr, $c:expr, $d:expr) => {
            _mm256_ternarylogic_epi32::<0xca>($b, $c, $d)
        };
    }
    macro_rules! g512 {
        ($b:expr, $c:expr, $d:expr) => {
            _mm256_ternarylogic_epi32::<0xe4>($b, $c, $d)
        };
    }
    macro_rules! h512 {
        ($b:expr, $c:expr, $d:expr) => {
            _mm256_ternarylogic_epi32::<0x96>($b, $c, $d)
        };
    }
    macro_rules! i512 {
        ($b:expr, $c:expr, $d:expr) => {
            _mm256_ternarylogic_epi32::<0x39>($b, $c, $d)
        };
    }

    /// Rows of eight 32-bit words to columns: `out[j]` holds word `j` of
    /// every row, row `l` in lane `l`.
    #[target_feature(enable = "avx2")]
    fn transpose(r: [__m256i; LANES]) -> [__m256i; LANES] {
        let t0 = _mm256_unpacklo_epi32(r[0], r[1]);
        let t1 = _mm256_unpackhi_epi32(r[0], r[1]);
        let t2 = _mm256_unpacklo_epi32(r[2], r[3]);
        let t3 = _mm256_unpackhi_epi32(r[2], r[3]);
        let t4 = _mm256_unpacklo_epi32(r[4], r[5]);
        let t5 = _mm256_unpackhi_epi32(r[4], r[5]);
        let t6 = _mm256_unpacklo_epi32(r[6], r[7]);
        let t7 = _mm256_unpackhi_epi32(r[6], r[7]);
        let u0 = _mm256_unpacklo_epi64(t0, t2);
        let u1 = _mm256_unpackhi_epi64(t0, t2);
        let u2 = _mm256_unpacklo_epi64(t1, t3);
        let u3 = _mm256_unpackhi_epi64(t1, t3);
        let u4 = _mm256_unpacklo_epi64(t4, t6);
        let u5 = _mm256_unpackhi_epi64(t4, t6);
        let u6 = _mm256_unpacklo_epi64(t5, t7);
        let u7 = _mm256_unpackhi_epi64(t5, t7);
        [
            _mm256_permute2x128_si256::<0x20>(u0, u4),
            _mm256_permute2x128_si256::<0x20>(u1, u5),
            _mm256_permute2x128_si256::<0x20>(u2, u6),
            _mm256_permute2x128_si256::<0x20>(u3, u7),
            _mm256_permute2x128_si256::<0x31>(u0, u4),
            _mm256_permute2x128_si256::<0x31>(u1, u5),
            _mm256_permute2x128_si256::<0x31>(u2, u6),
            _mm256_permute2x128_si256::<0x31>(u3, u7),
        ]
    }

    /// A function hashing one block per lane with the given operations.
    macro_rules! block_fn {
        ($name:ident, $features:literal, $rotl:ident, $f:ident, $g:ident, $h:ident, $i:ident) => {
            #[target_feature(enable = $features)]
            /// # Safety
            /// The CPU has the features; `blocks[l]` holds 64 bytes at
            /// `strides[l] * t` for every `t < turns`.
            unsafe fn $name(
                state: &mut [[u32; LANES]; 4],
                blocks: &[&[u8]; LANES],
                strides: &[usize; LANES],
                turns: usize,
            ) {
                // SAFETY: the state's loads and stores are of whole
                // `[u32; 8]`s; the blocks' are within the bytes the caller
                // vouches for.
                unsafe {
                    let load = |x: &[u32; LANES]| _mm256_loadu_si256(x.as_ptr().cast());
                    let (mut a0, mut b0, mut c0, mut d0) = (
                        load(&state[0]),
                        load(&state[1]),
                        load(&state[2]),
                        load(&state[3]),
                    );
                    for turn in 0..turns {
                        // Each lane's block as two rows of eight words, turned
                        // into sixteen registers of word j of every lane.
                        let row = |l: usize, half: usize| {
                            _mm256_loadu_si256(
                                blocks[l].as_ptr().add(strides[l] * turn + half).cast(),
                            )
                        };
                        let low = transpose(std::array::from_fn(|l| row(l, 0)));
                        let high = transpose(std::array::from_fn(|l| row(l, 32)));
                        let w: [__m256i; 16] =
                            std::array::from_fn(|j| if j < 8 { low[j] } else { high[j - 8] });
                        let (mut a, mut b, mut c, mut d) = (a0, b0, c0, d0);
                        step!($rotl, $f, a, b, c, d, w[0], 0xd76aa478u32, 7);
                        step!($rotl, $f, d, a, b, c, w[1], 0xe8c7b756u32, 12);
                        step!($rotl, $f, c, d, a, b, w[2], 0x242070dbu32, 17);
                        step!($rotl, $f, b, c, d, a, w[3], 0xc1bdceeeu32, 22);
                        step!($rotl, $f, a, b, c, d, w[4], 0xf57c0fafu32, 7);
                        step!($rotl, $f, d, a, b, c, w[5], 0x4787c62au32, 12);
                        step!($rotl, $f, c, d, a, b, w[6], 0xa8304613u32, 17);
                        step!($rotl, $f, b, c, d, a, w[7], 0xfd469501u32, 22);
                        step!($rotl, $f, a, b, c, d, w[8], 0x698098d8u32, 7);
                        step!($rotl, $f, d, a, b, c, w[9], 0x8b44f7afu32, 12);
                        step!($rotl, $f, c, d, a, b, w[10], 0xffff5bb1u32, 17);
                        step!($rotl, $f, b, c, d, a, w[11], 0x895cd7beu32, 22);
                        step!($rotl, $f, a, b, c, d, w[12], 0x6b901122u32, 7);
                        step!($rotl, $f, d, a, b, c, w[13], 0xfd987193u32, 12);
                        step!($rotl, $f, c, d, a, b, w[14], 0xa679438eu32, 17);
                        step!($rotl, $f, b, c, d, a, w[15], 0x49b40821u32, 22);
                        step!($rotl, $g, a, b, c, d, w[1], 0xf61e2562u32, 5);
                        step!($rotl, $g, d, a, b, c, w[6], 0xc040b340u32, 9);
                        step!($rotl, $g, c, d, a, b, w[11], 0x265e5a51u32, 14);
                        step!($rotl, $g, b, c, d, a, w[0], 0xe9b6c7aau32, 20);
                        step!($rotl, $g, a, b, c, d, w[5], 0xd62f105du32, 5);
                        step!($rotl, $g, d, a, b, c, w[10], 0x02441453u32, 9);
                        step!($rotl, $g, c, d, a, b, w[15], 0xd8a1e681u32, 14);
                        step!($rotl, $g, b, c, d, a, w[4], 0xe7d3fbc8u32, 20);
                        step!($rotl, $g, a, b, c, d, w[9], 0x21e1cde6u32, 5);
                        step!($rotl, $g, d, a, b, c, w[14], 0xc33707d6u32, 9);
                        step!($rotl, $g, c, d, a, b, w[3], 0xf4d50d87u32, 14);
                        step!($rotl, $g, b, c, d, a, w[8], 0x455a14edu32, 20);
                        step!($rotl, $g, a, b, c, d, w[13], 0xa9e3e905u32, 5);
                        step!($rotl, $g, d, a, b, c, w[2], 0xfcefa3f8u32, 9);
                        step!($rotl, $g, c, d, a, b, w[7], 0x676f02d9u32, 14);
                        step!($rotl, $g, b, c, d, a, w[12], 0x8d2a4c8au32, 20);
                        step!($rotl, $h, a, b, c, d, w[5], 0xfffa3942u32, 4);
                        step!($rotl, $h, d, a, b, c, w[8], 0x8771f681u32, 11);
                        step!($rotl, $h, c, d, a, b, w[11], 0x6d9d6122u32, 16);
                        step!($rotl, $h, b, c, d, a, w[14], 0xfde5380cu32, 23);
                        step!($rotl, $h, a, b, c, d, w[1], 0xa4beea44u32, 4);
                        step!($rotl, $h, d, a, b, c, w[4], 0x4bdecfa9u32, 11);
                        step!($rotl, $h, c, d, a, b, w[7], 0xf6bb4b60u32, 16);
                        step!($rotl, $h, b, c, d, a, w[10], 0xbebfbc70u32, 23);
                        step!($rotl, $h, a, b, c, d, w[13], 0x289b7ec6u32, 4);
                        step!($rotl, $h, d, a, b, c, w[0], 0xeaa127fau32, 11);
                        step!($rotl, $h, c, d, a, b, w[3], 0xd4ef3085u32, 16);
                        step!($rotl, $h, b, c, d, a, w[6], 0x04881d05u32, 23);
                        step!($rotl, $h, a, b, c, d, w[9], 0xd9d4d039u32, 4);
                        step!($rotl, $h, d, a, b, c, w[12], 0xe6db99e5u32, 11);
                        step!($rotl, $h, c, d, a, b, w[15], 0x1fa27cf8u32, 16);
                        step!($rotl, $h, b, c, d, a, w[2], 0xc4ac5665u32, 23);
                        step!($rotl, $i, a, b, c, d, w[0], 0xf4292244u32, 6);
                        step!($rotl, $i, d, a, b, c, w[7], 0x432aff97u32, 10);
                        step!($rotl, $i, c, d, a, b, w[14], 0xab9423a7u32, 15);
                        step!($rotl, $i, b, c, d, a, w[5], 0xfc93a039u32, 21);
                        step!($rotl, $i, a, b, c, d, w[12], 0x655b59c3u32, 6);
                        step!($rotl, $i, d, a, b, c, w[3], 0x8f0ccc92u32, 10);
                        step!($rotl, $i, c, d, a, b, w[10], 0xffeff47du32, 15);
                        step!($rotl, $i, b, c, d, a, w[1], 0x85845dd1u32, 21);
                        step!($rotl, $i, a, b, c, d, w[8], 0x6fa87e4fu32, 6);
                        step!($rotl, $i, d, a, b, c, w[15], 0xfe2ce6e0u32, 10);
                        step!($rotl, $i, c, d, a, b, w[6], 0xa3014314u32, 15);
                        step!($rotl, $i, b, c, d, a, w[13], 0x4e0811a1u32, 21);
                        step!($rotl, $i, a, b, c, d, w[4], 0xf7537e82u32, 6);
                        step!($rotl, $i, d, a, b, c, w[11], 0xbd3af235u32, 10);
                        step!($rotl, $i, c, d, a, b, w[2], 0x2ad7d2bbu32, 15);
                        step!($rotl, $i, b, c, d, a, w[9], 0xeb86d391u32, 21);
                        a0 = _mm256_add_epi32(a, a0);
                        b0 = _mm256_add_epi32(b, b0);
                        c0 = _mm256_add_epi32(c, c0);
                        d0 = _mm256_add_epi32(d, d0);
                    }
                    for (word, v) in [a0, b0, c0, d0].into_iter().enumerate() {
                        _mm256_storeu_si256(state[word].as_mut_ptr().cast(), v);
                    }
                }
            }
        };
    }

    block_fn!(compress_avx2, "avx2", rotl, f, g, h, i);
    block_fn!(
        compress_avx512,
        "avx2,avx512f,avx512vl",
        rotl512,
        f512,
        g512,
        h512,
        i512
    );
}

/// Elsewhere there is no [`simd::Simd`], so the hasher thread is never started.
#[cfg(not(target_arch = "x86_64"))]
mod simd {
    use super::LANES;

    /// Never made: no lanes on this architecture.
    #[derive(Clone, Copy)]
    pub(in crate::md5_lanes) enum Simd {}

    impl Simd {
        /// Always `None`.
        pub(in crate::md5_lanes) fn detect() -> Option<Simd> {
            None
        }

        /// Never called: there is no `Simd`.
        pub(in crate::md5_lanes) fn compress(
            self,
            _: &mut [[u32; LANES]; 4],
            _: &[&[u8]; LANES],
            _: usize,
        ) {
            match self {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use md5::Digest as _;
    use rand::{Rng as _, SeedableRng as _};

    fn md5_hex(data: &[u8]) -> String {
        hex(&md5::Md5::digest(data).into())
    }

    /// The driver's default write keeps as many parts in flight as there
    /// are lanes, so a write's checksums are hashed together (the
    /// default's CPU cost, docs/s3.md, rests on it), with the parts
    /// buffered no larger than before (8 x 8 MiB).
    #[test]
    fn default_writes_fill_the_lanes() {
        let defaults = crate::S3Config::new("bucket");
        assert_eq!(defaults.upload_concurrency, LANES);
        assert_eq!(
            defaults.part_size * defaults.upload_concurrency as u64,
            64 << 20
        );
    }

    /// Every length around the padding's edges, several parts in the lanes at once.
    #[tokio::test]
    async fn lanes_agree_with_md5_at_every_padding_edge() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let mut all: Vec<Bytes> = Vec::new();
        for len in (0..200).chain([447, 448, 449, 511, 512, 513, 4096, 65_536, 1_000_003]) {
            let mut data = vec![0u8; len];
            rng.fill(&mut data[..]);
            all.push(Bytes::from(data));
        }
        let pending: Vec<_> = all.iter().map(|d| submit(d.clone(), 8)).collect();
        for (data, pending) in all.iter().zip(pending) {
            assert_eq!(pending.hex().await, md5_hex(data), "length {}", data.len());
        }
    }

    /// Parts submitted from many tasks at different moments (joining
    /// lanes that are already busy, some alone, some dropped) all get
    /// their own MD5.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn parts_joining_busy_lanes_get_their_own_md5() {
        let mut tasks = Vec::new();
        for task in 0..24u64 {
            tasks.push(tokio::spawn(async move {
                let mut rng = rand::rngs::StdRng::seed_from_u64(task);
                for round in 0..4 {
                    let len = rng.gen_range(0..3_000_000);
                    let mut data = vec![0u8; len];
                    rng.fill(&mut data[..]);
                    let data = Bytes::from(data);
                    let pending = submit(data.clone(), (task % 5) as usize);
                    if (task + round) % 7 == 0 {
                        drop(pending);
                        continue;
                    }
                    tokio::time::sleep(Duration::from_millis(rng.gen_range(0..20))).await;
                    assert_eq!(
                        pending.hex().await,
                        md5_hex(&data),
                        "task {task} round {round}"
                    );
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
    }

    /// The lanes themselves, fed directly: parts of different lengths in
    /// all eight lanes finish at different turns with the right MD5s.
    #[test]
    fn eight_lanes_of_different_lengths() {
        let Some(simd) = simd::Simd::detect() else {
            return;
        };
        // The best kind this CPU has, and AVX2's code beside it.
        for simd in [simd, simd.avx2_only()] {
            eight_lanes_with(simd);
        }
    }

    fn eight_lanes_with(simd: simd::Simd) {
        let mut lanes = Lanes::new(simd);
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        let mut expected = Vec::new();
        let mut answers = Vec::new();
        for len in [0usize, 55, 56, 64, 120, 1000, 70_000, 333_333] {
            let mut data = vec![0u8; len];
            rng.fill(&mut data[..]);
            expected.push(md5_hex(&data));
            let (answer, rx) = oneshot::channel();
            lanes.start(Job {
                id: len as u64,
                data: Bytes::from(data),
                answer,
                since: Instant::now(),
                in_flight: 8,
            });
            answers.push(rx);
        }
        assert!(!lanes.has_room());
        while lanes.jobs().next().is_some() {
            lanes.run(7);
        }
        for (mut rx, expected) in answers.into_iter().zip(expected) {
            assert_eq!(hex(&rx.try_recv().unwrap()), expected);
        }
    }
}
