//! Synthetic workload generator (`abacus generate`).
//!
//! Why it exists: benchmarks and end-to-end tests need event logs that look like the real thing —
//! big, skewed, a little dirty — without shipping gigabytes of customer data. This module writes
//! such a log, deterministically, from a seed: the same [`GenerateOptions`] give byte-identical
//! files on every platform and build (a hand-written xoshiro256** PRNG, integer-only sampling, no
//! libm calls on the data path).
//!
//! What the workload models: an e-commerce marketing platform's event stream, one JSON object per
//! line. Every line carries
//! `"id"` (unique per original event), `"type"`, `"email"` (the user), `"timestamp"`, and usually
//! `"message_id"` (which campaign message caused it) and `"browser"`, plus filler fields (`"ip"`,
//! `"ua"`, a nested `"context"` object, `"revenue"` on orders, a nested `"item"` (product, color,
//! quantity) on carts and orders, `"query"` on searches) so lines are
//! 200–380 bytes (~330 on average) like real ones. The imperfections a counting engine must cope with are all there,
//! at fixed rates (see the constants below):
//!
//! - user popularity is Zipf-like (weight `1 / (rank + 10)`, exponent 1); each user has one stable,
//!   unique email string (gmail ~40% of users, then big webmail, corporate domains and a long tail
//!   of ISPs); ~3% of users have a mixed-case domain (`@GMail.com`), so `email_domain` must
//!   lowercase;
//! - ~20 common event types with skewed frequencies plus ~3% spread over 200 `custom_event_NNN`;
//! - ~15% of events have no `message_id`, ~5% have one that the campaigns CSV does not know;
//! - ~8% have no `browser` field and ~2% have `"browser": null`;
//! - timestamps follow a clock running at `rate` events/s with a few minutes of jitter; 0.3% come
//!   from skewed clocks (±8 h), 0.01% are "ancient" (1–5 years in the past); ~1% are written as
//!   unix seconds and ~1% as RFC 3339 strings, the rest as unix milliseconds;
//! - ~1% of lines are re-deliveries: byte-identical copies of an earlier line, mostly seconds to
//!   minutes later in the stream, some hours later; ancient events are re-delivered more often.
//!
//! The output is a sequence of independent zstd frames of about `frame_bytes` uncompressed bytes,
//! each ending at a line boundary and carrying its content size, so a reader may decode frames in
//! parallel; the file as a whole is an ordinary `.zst` any zstd tool decodes. A `key,value` CSV
//! mapping every known message id to its campaign name is written next to it.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// Default size of the user population.
pub const DEFAULT_USERS: u64 = 100_000;
/// Default mean event rate, events per second of event time.
pub const DEFAULT_RATE: f64 = 10.0;
/// Default event time of the first line: 2024-01-01T00:00:00Z.
pub const DEFAULT_START_MS: i64 = 1_704_067_200_000;
/// Default uncompressed bytes per zstd frame.
pub const DEFAULT_FRAME_BYTES: usize = 4 << 20;
/// Default zstd level.
pub const DEFAULT_LEVEL: i32 = 3;
/// Largest accepted `users`: the popularity table costs 8 bytes per user.
pub const MAX_USERS: u64 = 100_000_000;
/// Largest accepted `frame_bytes`: a frame is held in memory twice (raw and compressed).
pub const MAX_FRAME_BYTES: usize = 1 << 30;

// ---- workload rates, in parts per million ------------------------------------------------------

/// Share of fresh events whose clock is skewed by up to ±8 h.
const SKEWED_PPM: u64 = 3_000;
/// Share of fresh events that are 1–5 years old.
const ANCIENT_PPM: u64 = 100;
/// Share of timestamps written as integer unix seconds.
const SECONDS_FORMAT_PPM: u64 = 10_000;
/// Share of timestamps written as RFC 3339 strings.
const RFC3339_FORMAT_PPM: u64 = 10_000;
/// Share of events without a `message_id` field.
const NO_MESSAGE_PPM: u64 = 150_000;
/// Share of events whose `message_id` is not in the campaigns CSV.
const UNKNOWN_MESSAGE_PPM: u64 = 50_000;
/// Share of events without a `browser` field.
const NO_BROWSER_PPM: u64 = 80_000;
/// Share of events with `"browser": null`.
const NULL_BROWSER_PPM: u64 = 20_000;
/// Share of users whose email domain is written in mixed case.
const MIXED_CASE_DOMAIN_PPM: u64 = 30_000;
/// Share of events sent from a browser other than the user's usual one.
const OTHER_BROWSER_PPM: u64 = 150_000;
/// Share of fresh (normal or skewed) events that get re-delivered. With 10% of those delivered
/// twice, re-deliveries make up ~1% of all lines: 0.009183 · 1.1 / (1 + 0.009183 · 1.1) ≈ 1%.
const REDELIVER_PPM: u64 = 9_183;
/// Share of ancient events that get re-delivered (old batches tend to be replayed).
const ANCIENT_REDELIVER_PPM: u64 = 250_000;
/// Share of re-delivered events that are delivered a second time as well.
const TWICE_PPM: u64 = 100_000;

// ---- time constants ----------------------------------------------------------------------------

const SECOND_MS: i64 = 1_000;
const MINUTE_MS: i64 = 60 * SECOND_MS;
const HOUR_MS: i64 = 60 * MINUTE_MS;
const DAY_MS: i64 = 24 * HOUR_MS;
const YEAR_MS: i64 = 365 * DAY_MS;
/// Largest clock jitter, either direction.
const MAX_JITTER_MS: i64 = 3 * MINUTE_MS;
/// Largest skew of a skewed source, either direction.
const MAX_SKEW_MS: i64 = 8 * HOUR_MS;
/// Ancient events are this far in the past, at least and at most.
const ANCIENT_MIN_MS: i64 = YEAR_MS;
const ANCIENT_MAX_MS: i64 = 5 * YEAR_MS;
/// Every written time must be at least this (1e11 ms, March 1973): below it, `time_format = "auto"`
/// would read a millisecond value as seconds.
const TIME_FLOOR_MS: i64 = 100_000_000_000;
/// Every written time must be below this (2100-01-01T00:00:00Z, the engine's default `time_max`).
const TIME_CEILING_MS: i64 = 4_102_444_800_000;

// ---- public interface --------------------------------------------------------------------------

/// What to generate and where.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    /// Number of event lines to write (re-deliveries included).
    pub events: u64,
    /// Seed: the same options give byte-identical files.
    pub seed: u64,
    /// The `.ndjson.zst` output file.
    pub out: PathBuf,
    /// The campaigns CSV (`key,value`: message id → campaign name).
    pub lookup: PathBuf,
    /// Size of the user population.
    pub users: u64,
    /// Mean events per second of event time: the log spans `events / rate` seconds.
    pub rate: f64,
    /// Event time (unix ms) of the clock at the first line.
    pub start_ms: i64,
    /// Uncompressed bytes per independent zstd frame (a frame holds at least one line).
    pub frame_bytes: usize,
    /// zstd compression level.
    pub level: i32,
}

impl GenerateOptions {
    /// Options with the defaults; the lookup CSV goes next to `out` as `campaigns.csv`.
    pub fn new(events: u64, seed: u64, out: PathBuf) -> Self {
        let dir = out.parent().map(Path::to_path_buf).unwrap_or_default();
        GenerateOptions {
            events,
            seed,
            lookup: dir.join("campaigns.csv"),
            out,
            users: DEFAULT_USERS,
            rate: DEFAULT_RATE,
            start_ms: DEFAULT_START_MS,
            frame_bytes: DEFAULT_FRAME_BYTES,
            level: DEFAULT_LEVEL,
        }
    }
}

/// What was written.
#[derive(Debug, Clone, Default)]
pub struct GenerateReport {
    /// Lines written (= `events`).
    pub lines: u64,
    /// Lines that are byte-identical re-deliveries of an earlier line.
    pub duplicates: u64,
    /// Lines (re-deliveries included) whose time comes from a skewed clock (±8 h).
    pub skewed: u64,
    /// Lines (re-deliveries included) whose time is 1–5 years in the past.
    pub ancient: u64,
    /// Uncompressed bytes written (all lines, newlines included).
    pub bytes_raw: u64,
    /// Size of the compressed output file.
    pub bytes_written: u64,
    /// Number of zstd frames in the output file.
    pub frames: u64,
    /// Smallest event time (unix ms, as the engine parses it) among the lines that are not
    /// ancient; 0 when there are none.
    pub first_ms: i64,
    /// Largest event time (unix ms, as the engine parses it) among the lines that are not
    /// ancient; 0 when there are none.
    pub last_ms: i64,
}

/// Why generation failed.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// The options make no sense (or would produce times the engine cannot read back).
    #[error("invalid generate options: {0}")]
    InvalidOptions(String),
    /// Reading or writing a file failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Writes the campaigns CSV to `opts.lookup`, then the event log to `opts.out`, each atomically
/// (to `<path>.tmp`, then renamed), creating parent directories as needed.
pub fn generate(opts: &GenerateOptions) -> Result<GenerateReport, GenerateError> {
    validate(opts)?;
    let model = Model::new(opts);
    write_atomically(&opts.lookup, |w| model.write_lookup(w))?;
    let mut report = write_atomically(&opts.out, |w| write_events(opts, &model, w))?;
    report.bytes_written = fs::metadata(&opts.out)
        .map_err(|source| io_error("reading metadata of", &opts.out, source))?
        .len();
    Ok(report)
}

// ---- validation and file handling --------------------------------------------------------------

fn validate(opts: &GenerateOptions) -> Result<(), GenerateError> {
    let invalid = |msg: String| Err(GenerateError::InvalidOptions(msg));
    if opts.users == 0 || opts.users > MAX_USERS {
        return invalid(format!(
            "users must be in 1..={MAX_USERS}, got {}",
            opts.users
        ));
    }
    if !(opts.rate.is_finite() && opts.rate > 0.0) {
        return invalid(format!("rate must be a positive number, got {}", opts.rate));
    }
    if opts.frame_bytes == 0 || opts.frame_bytes > MAX_FRAME_BYTES {
        return invalid(format!(
            "frame_bytes must be in 1..={MAX_FRAME_BYTES}, got {}",
            opts.frame_bytes
        ));
    }
    let levels = zstd::compression_level_range();
    if !levels.contains(&opts.level) {
        return invalid(format!(
            "zstd level must be in {}..={}, got {}",
            levels.start(),
            levels.end(),
            opts.level
        ));
    }
    if opts.out == opts.lookup {
        return invalid(format!(
            "out and lookup are the same file: {}",
            opts.out.display()
        ));
    }
    // Every time the generator can write must read back the same under `time_format = "auto"`
    // and lie inside the engine's default time limits.
    let span_ms = opts.events as f64 * (1000.0 / opts.rate);
    let lowest = opts.start_ms as f64 - (ANCIENT_MAX_MS + MAX_SKEW_MS + MAX_JITTER_MS) as f64;
    let highest = opts.start_ms as f64 + span_ms + (MAX_SKEW_MS + MAX_JITTER_MS) as f64;
    if !(lowest >= TIME_FLOOR_MS as f64 && highest < TIME_CEILING_MS as f64) {
        return invalid(format!(
            "event times would leave [{TIME_FLOOR_MS}, {TIME_CEILING_MS}) ms: start_ms {} \
             minus 5 years and 8 hours, plus events / rate ({} s) and 8 hours",
            opts.start_ms,
            span_ms / 1000.0
        ));
    }
    Ok(())
}

fn io_error(action: &'static str, path: &Path, source: io::Error) -> GenerateError {
    GenerateError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `path` via `<path>.tmp` and a rename, so a reader never sees a half-written file.
/// `body`'s I/O errors are reported against `path`.
fn write_atomically<T>(
    path: &Path,
    body: impl FnOnce(&mut BufWriter<File>) -> io::Result<T>,
) -> Result<T, GenerateError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(|e| io_error("creating directory", dir, e))?;
    }
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    let file = File::create(&tmp).map_err(|e| io_error("creating", &tmp, e))?;
    let mut writer = BufWriter::with_capacity(1 << 20, file);
    let result = body(&mut writer)
        .and_then(|value| writer.flush().map(|()| value))
        .and_then(|value| writer.get_ref().sync_all().map(|()| value));
    drop(writer);
    match result {
        Ok(value) => {
            fs::rename(&tmp, path).map_err(|e| io_error("renaming into", path, e))?;
            Ok(value)
        }
        Err(e) => {
            // Best effort: the error being reported matters more than a stray temp file.
            let _ = fs::remove_file(&tmp);
            Err(io_error("writing", path, e))
        }
    }
}

// ---- random numbers ----------------------------------------------------------------------------

/// The splitmix64 output function: a bijection on `u64` that scrambles every bit.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// splitmix64: a tiny generator, used to seed xoshiro and to derive per-user attributes.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix64(self.0)
    }
}

/// Uniform draws shared by both generators.
trait Draw {
    fn next_u64(&mut self) -> u64;

    /// Uniform in `0..n` (multiply-shift; the bias is below 2^-40 for every `n` used here).
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `lo..=hi`.
    fn between(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo) as u64 + 1) as i64
    }

    /// True with probability `ppm` / 1e6.
    fn chance(&mut self, ppm: u64) -> bool {
        self.below(1_000_000) < ppm
    }
}

impl Draw for SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        SplitMix64::next_u64(self)
    }
}

/// xoshiro256**: the main stream generator (fast, and the same bits on every platform).
struct Xoshiro256 {
    s: [u64; 4],
}

impl Xoshiro256 {
    fn new(seed: u64) -> Self {
        let mut sm = SplitMix64(seed);
        Xoshiro256 {
            s: [sm.next_u64(), sm.next_u64(), sm.next_u64(), sm.next_u64()],
        }
    }
}

impl Draw for Xoshiro256 {
    fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }
}

/// Sampling from integer weights through a cumulative table (exact, so platform independent).
struct Weighted {
    cumulative: Vec<u64>,
}

impl Weighted {
    fn new(weights: impl IntoIterator<Item = u64>) -> Self {
        let mut total = 0u64;
        let cumulative = weights
            .into_iter()
            .map(|w| {
                total += w;
                total
            })
            .collect();
        Weighted { cumulative }
    }

    fn total(&self) -> u64 {
        self.cumulative.last().copied().unwrap_or(0)
    }

    /// An index drawn with probability proportional to its weight.
    fn sample(&self, rng: &mut impl Draw) -> usize {
        let x = rng.below(self.total());
        self.cumulative.partition_point(|&c| c <= x)
    }
}

/// Zipf–Mandelbrot weights with exponent 1 for ranks `0..n`: rank `k` weighs
/// `2^40 / (k + offset)`. An exponent of exactly 1 keeps the table to exact integer division (a
/// fractional exponent would need libm's `pow`, which may differ in the last bit across platforms).
fn zipf(n: u64, offset: u64) -> Weighted {
    Weighted::new((0..n).map(|k| (1u64 << 40) / (k + offset)))
}

// ---- the static vocabulary ---------------------------------------------------------------------

/// Where an event type comes from, written as `context.channel`.
#[derive(Clone, Copy)]
enum Channel {
    Email,
    Sms,
    Push,
    /// Web or app, depending on the user.
    Site,
}

/// The common event types, with weights per million events (they sum to 970 000; the other
/// 30 000 go to the custom types).
const EVENT_TYPES: &[(&str, u64, Channel)] = &[
    ("email_send", 250_000, Channel::Email),
    ("page_view", 162_000, Channel::Site),
    ("email_open", 140_000, Channel::Email),
    ("product_view", 90_000, Channel::Site),
    ("push_send", 60_000, Channel::Push),
    ("email_click", 45_000, Channel::Email),
    ("sms_send", 40_000, Channel::Sms),
    ("login", 40_000, Channel::Site),
    ("search", 35_000, Channel::Site),
    ("add_to_cart", 30_000, Channel::Site),
    ("push_open", 25_000, Channel::Push),
    ("checkout_start", 12_000, Channel::Site),
    ("order_placed", 9_000, Channel::Site),
    ("wishlist_add", 8_000, Channel::Site),
    ("sms_click", 7_000, Channel::Sms),
    ("email_bounce", 6_000, Channel::Email),
    ("signup", 4_000, Channel::Site),
    ("coupon_redeem", 3_500, Channel::Site),
    ("email_unsubscribe", 2_000, Channel::Email),
    ("review_submit", 1_500, Channel::Site),
];
/// Number of `custom_event_NNN` types in the long tail.
const CUSTOM_TYPES: u64 = 200;
/// Custom type `k` weighs `CUSTOM_ZIPF / (k + 1)`; the 200 weights sum to ~30 000 (3%).
const CUSTOM_ZIPF: u64 = 5_104;
const ORDER_PLACED: usize = 12;
const SEARCH: usize = 8;
const ADD_TO_CART: usize = 9;

/// Products of the nested `item` object on carts and orders (what filters such as "black
/// chargers" select on).
const PRODUCTS: &[&str] = &[
    "iPhone charger",
    "USB-C cable",
    "wireless charger",
    "phone case",
    "screen protector",
    "power bank",
    "AirPods case",
    "laptop sleeve",
];
const COLORS: &[&str] = &["black", "white", "jet black", "blue", "red", "silver"];

#[rustfmt::skip]
const FIRST_NAMES: &[&str] = &[
    "james", "mary", "john", "patricia", "robert", "jennifer", "michael", "linda", "william",
    "elizabeth", "david", "barbara", "richard", "susan", "joseph", "jessica", "thomas", "sarah",
    "charles", "karen", "daniel", "nancy", "matthew", "lisa", "anthony", "betty", "mark",
    "margaret", "paul", "sandra", "steven", "ashley", "andrew", "emily", "kevin", "donna", "brian",
    "michelle", "george", "carol", "lucas", "amanda", "noah", "melissa", "liam", "sophie", "mateo",
    "chloe", "hiroshi", "yuki", "lukas", "lena", "pierre", "camille", "giulia", "marco", "sofia",
    "ahmed", "fatima", "raj", "priya", "wei", "mei", "olga",
];
#[rustfmt::skip]
const LAST_NAMES: &[&str] = &[
    "smith", "johnson", "williams", "brown", "jones", "garcia", "miller", "davis", "rodriguez",
    "martinez", "hernandez", "lopez", "gonzalez", "wilson", "anderson", "thomas", "taylor", "moore",
    "jackson", "martin", "lee", "perez", "thompson", "white", "harris", "sanchez", "clark",
    "ramirez", "lewis", "robinson", "walker", "young", "allen", "king", "wright", "scott", "torres",
    "nguyen", "hill", "flores", "green", "adams", "nelson", "baker", "hall", "rivera", "campbell",
    "mitchell", "carter", "roberts", "mueller", "schmidt", "schneider", "dubois", "moreau",
    "rossi", "russo", "tanaka", "suzuki", "kim", "park", "patel", "singh", "chen",
];
/// Email providers with weights per 10 000 users: gmail 40%, big webmail, corporate domains, a
/// long tail of ISPs.
const PROVIDERS: &[(&str, u64)] = &[
    ("gmail.com", 4_000),
    ("yahoo.com", 1_100),
    ("hotmail.com", 900),
    ("outlook.com", 800),
    ("icloud.com", 700),
    ("aol.com", 250),
    ("live.com", 150),
    ("protonmail.com", 150),
    ("gmx.de", 150),
    ("comcast.net", 150),
    ("msn.com", 100),
    ("me.com", 100),
    ("acme-corp.com", 120),
    ("globex.com", 100),
    ("initech.io", 80),
    ("umbrella-corp.com", 70),
    ("hooli.com", 60),
    ("yandex.ru", 80),
    ("mail.ru", 80),
    ("web.de", 80),
    ("orange.fr", 70),
    ("t-online.de", 60),
    ("libero.it", 60),
    ("qq.com", 60),
    ("163.com", 50),
    ("naver.com", 50),
    ("btinternet.com", 40),
    ("verizon.net", 40),
    ("att.net", 40),
    ("sbcglobal.net", 30),
    ("free.fr", 30),
    ("seznam.cz", 30),
    ("bigpond.com", 30),
    ("shaw.ca", 30),
    ("rediffmail.com", 30),
    ("wanadoo.fr", 20),
    ("telus.net", 20),
    ("optonline.net", 20),
];
/// Browsers with weights per 1 000 events that name one.
const BROWSERS: &[(&str, u64)] = &[
    ("chrome", 470),
    ("safari", 260),
    ("edge", 90),
    ("firefox", 60),
    ("samsung", 50),
    ("opera", 30),
    ("brave", 15),
    ("yandex", 10),
    ("uc", 10),
    ("vivaldi", 5),
];
/// A user agent per browser, in `BROWSERS` order.
const USER_AGENTS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.2210.91",
    "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
    "Mozilla/5.0 (Linux; Android 14; SM-S918B) SamsungBrowser/23.0 Chrome/115.0.0.0 Mobile",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/119.0.0.0 Safari/537.36 OPR/105.0.0.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 Chrome/120.0.0.0 Brave",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/118.0.0.0 YaBrowser/23.11.0 Safari/537.36",
    "Mozilla/5.0 (Linux; U; Android 10; en-US; RMX1911) UCBrowser/13.4.0.1306 Mobile Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0.0.0 Vivaldi/6.5.3206.48",
];
/// User agents of events that name no browser: mail proxies, apps, scripts.
const OTHER_AGENTS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)",
    "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html",
    "ShopApp/5.12.1 (iPhone; iOS 17.2; Scale/3.00)",
    "okhttp/4.12.0",
    "python-requests/2.31.0",
];
const LOCALES: &[(&str, u64)] = &[
    ("en-US", 450),
    ("en-GB", 100),
    ("de-DE", 80),
    ("fr-FR", 70),
    ("es-ES", 60),
    ("pt-BR", 60),
    ("it-IT", 40),
    ("en-CA", 30),
    ("nl-NL", 30),
    ("ja-JP", 30),
    ("ko-KR", 20),
    ("pl-PL", 20),
    ("sv-SE", 10),
];
/// Search queries; some need JSON escaping (quotes, backslash) or are non-ASCII UTF-8.
const QUERIES: &[&str] = &[
    "running shoes",
    "red summer dress",
    "wireless earbuds",
    "50\" tv",
    "kids' raincoat",
    "café table",
    "größe 42 schuhe",
    "usb-c cable 2m",
    "\"gift card\"",
    "c:\\ drive backup",
    "yoga mat",
    "マグカップ",
];
#[rustfmt::skip]
const CAMPAIGN_THEMES: &[&str] = &[
    "spring_sale", "summer_clearance", "back_to_school", "black_friday", "cyber_monday",
    "holiday_gift_guide", "new_year_deals", "valentines", "mothers_day", "welcome_series",
    "abandoned_cart", "winback", "loyalty_rewards", "birthday_offer", "price_drop",
    "restock_alert", "new_arrivals", "flash_sale", "weekly_newsletter", "vip_preview",
    "free_shipping", "review_request", "referral_bonus", "app_download", "survey",
];
/// User rank `k` weighs `1 / (k + USER_ZIPF_OFFSET)`: a Zipf tail with exponent 1, but the most
/// active user has ~1% of the events (at 100 000 users) rather than a pure Zipf law's 8%.
const USER_ZIPF_OFFSET: u64 = 10;
/// Number of campaigns in the lookup CSV (numbered from 1).
const CAMPAIGNS: u64 = 200;
/// First-octet pool for IP addresses (public ranges only).
#[rustfmt::skip]
const IP_FIRST_OCTETS: &[u8] = &[
    24, 31, 37, 46, 62, 66, 67, 68, 69, 70, 71, 72, 73, 75, 76, 77, 78, 79, 80, 81, 82, 84, 85,
    86, 88, 89, 90, 91, 92, 93, 94, 95, 98, 99, 104, 107, 108, 109, 110, 112, 115, 116, 118, 121,
    122, 124, 151, 173, 174, 176, 178, 185, 188, 190, 195, 203, 212, 213, 217,
];
const HEX: &[u8; 16] = b"0123456789abcdef";

// ---- the model: tables built once per run ------------------------------------------------------

/// Everything about the workload that is fixed for a run: popularity tables, campaign sizes and
/// the keys that derive per-user attributes and event ids from the seed.
struct Model {
    /// User popularity by rank, and the number of users.
    users: Weighted,
    user_count: u64,
    event_types: Weighted,
    campaigns: Weighted,
    /// Number of messages of campaign `c` (1-based) at index `c - 1`: 3..=20.
    campaign_messages: Vec<u64>,
    providers: Weighted,
    browsers: Weighted,
    locales: Weighted,
    /// Keys mixed into per-user hashes and event ids, derived from the seed.
    user_key: u64,
    id_key: u64,
    /// Multiplier and offset of the bijection rank → email number (see [`Model::email_number`]).
    number_mul: u64,
    number_add: u64,
}

/// Per-user attributes, derived from (seed, rank) alone so a user looks the same in every event.
struct User {
    first: &'static str,
    last: &'static str,
    style: u64,
    number: u64,
    domain: &'static str,
    /// 0 = as is; 1 = capitalised; 2 = upper case; 3 = random mix of cases.
    domain_case: u64,
    case_bits: u64,
    browser: usize,
    locale: &'static str,
    app: bool,
    ip: [u8; 3],
}

impl Model {
    fn new(opts: &GenerateOptions) -> Self {
        let mut keys = SplitMix64(opts.seed ^ 0x6162_6163_7573_2167); // "abacus!g"
        let user_key = keys.next_u64();
        let id_key = keys.next_u64();
        let mut campaign_rng = SplitMix64(keys.next_u64());
        let campaign_messages = (0..CAMPAIGNS).map(|_| 3 + campaign_rng.below(18)).collect();
        let n = opts.users;
        // Any multiplier coprime with n makes `rank * mul + add (mod n)` a bijection.
        let mut number_mul = (keys.next_u64() % n) | 1;
        while gcd(number_mul, n) != 1 {
            number_mul += 2;
        }
        let number_add = keys.next_u64() % n;
        let custom = (0..CUSTOM_TYPES).map(|k| CUSTOM_ZIPF / (k + 1));
        Model {
            users: zipf(n, USER_ZIPF_OFFSET),
            user_count: n,
            event_types: Weighted::new(EVENT_TYPES.iter().map(|t| t.1).chain(custom)),
            campaigns: zipf(CAMPAIGNS, 1),
            campaign_messages,
            providers: Weighted::new(PROVIDERS.iter().map(|p| p.1)),
            browsers: Weighted::new(BROWSERS.iter().map(|b| b.1)),
            locales: Weighted::new(LOCALES.iter().map(|l| l.1)),
            user_key,
            id_key,
            number_mul,
            number_add,
        }
    }

    /// The number in a user's email: a bijection of the popularity rank, so emails are unique
    /// without the most active users being `…0@`, `…1@`, ….
    fn email_number(&self, rank: u64) -> u64 {
        let n = u128::from(self.user_count);
        ((u128::from(rank) * u128::from(self.number_mul) + u128::from(self.number_add)) % n) as u64
    }

    fn user(&self, rank: u64) -> User {
        let mut h = SplitMix64(mix64(rank ^ self.user_key));
        let first = FIRST_NAMES[h.below(FIRST_NAMES.len() as u64) as usize];
        let last = LAST_NAMES[h.below(LAST_NAMES.len() as u64) as usize];
        let style = h.below(100);
        let domain = PROVIDERS[self.providers.sample(&mut h)].0;
        let domain_case = if h.chance(MIXED_CASE_DOMAIN_PPM) {
            1 + h.below(3)
        } else {
            0
        };
        let case_bits = h.next_u64();
        let browser = self.browsers.sample(&mut h);
        let locale = LOCALES[self.locales.sample(&mut h)].0;
        let app = h.chance(400_000);
        let ip_bits = h.next_u64();
        let ip = [
            IP_FIRST_OCTETS[(ip_bits % IP_FIRST_OCTETS.len() as u64) as usize],
            (ip_bits >> 16) as u8,
            (ip_bits >> 24) as u8,
        ];
        User {
            first,
            last,
            style,
            number: self.email_number(rank),
            domain,
            domain_case,
            case_bits,
            browser,
            locale,
            app,
            ip,
        }
    }

    fn campaign_name(c: u64) -> String {
        let theme = CAMPAIGN_THEMES[((c - 1) % CAMPAIGN_THEMES.len() as u64) as usize];
        format!("{theme}_{c}")
    }

    /// The lookup CSV: every known message id and its campaign name.
    fn write_lookup(&self, w: &mut impl Write) -> io::Result<()> {
        w.write_all(b"key,value\n")?;
        for (i, &messages) in self.campaign_messages.iter().enumerate() {
            let c = i as u64 + 1;
            let name = Self::campaign_name(c);
            for m in 1..=messages {
                writeln!(w, "m-{c}-{m},{name}")?;
            }
        }
        Ok(())
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

// ---- line formatting ---------------------------------------------------------------------------

fn push_u64(buf: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.extend_from_slice(&digits[i..]);
}

fn push_i64(buf: &mut Vec<u8>, n: i64) {
    if n < 0 {
        buf.push(b'-');
    }
    push_u64(buf, n.unsigned_abs());
}

/// `n` as exactly `width` digits (`n < 10^width`).
fn push_padded(buf: &mut Vec<u8>, n: u64, width: u32) {
    let mut div = 10u64.pow(width - 1);
    while div > 0 {
        buf.push(b'0' + (n / div % 10) as u8);
        div /= 10;
    }
}

fn push_hex(buf: &mut Vec<u8>, n: u64, digits: u32) {
    for i in (0..digits).rev() {
        buf.push(HEX[(n >> (4 * i)) as usize & 15]);
    }
}

/// A JSON string literal, escaped per RFC 8259.
fn push_json_str(buf: &mut Vec<u8>, s: &str) {
    buf.push(b'"');
    for &b in s.as_bytes() {
        match b {
            b'"' => buf.extend_from_slice(b"\\\""),
            b'\\' => buf.extend_from_slice(b"\\\\"),
            b'\n' => buf.extend_from_slice(b"\\n"),
            b'\t' => buf.extend_from_slice(b"\\t"),
            0..0x20 => {
                buf.extend_from_slice(b"\\u00");
                push_hex(buf, u64::from(b), 2);
            }
            _ => buf.push(b),
        }
    }
    buf.push(b'"');
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u64, u64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u64;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u64;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `"YYYY-MM-DDTHH:MM:SS.mmmZ"` for a time that validation keeps within years 1973..2100.
fn push_rfc3339(buf: &mut Vec<u8>, ms: i64) {
    let (year, month, day) = civil_from_days(ms.div_euclid(DAY_MS));
    let in_day = ms.rem_euclid(DAY_MS) as u64;
    buf.push(b'"');
    push_padded(buf, year as u64, 4);
    buf.push(b'-');
    push_padded(buf, month, 2);
    buf.push(b'-');
    push_padded(buf, day, 2);
    buf.push(b'T');
    push_padded(buf, in_day / 3_600_000, 2);
    buf.push(b':');
    push_padded(buf, in_day / 60_000 % 60, 2);
    buf.push(b':');
    push_padded(buf, in_day / 1_000 % 60, 2);
    buf.push(b'.');
    push_padded(buf, in_day % 1_000, 3);
    buf.extend_from_slice(b"Z\"");
}

fn push_email(buf: &mut Vec<u8>, user: &User) {
    buf.push(b'"');
    let first = user.first.as_bytes();
    let last = user.last.as_bytes();
    match user.style {
        0..60 => {
            buf.extend_from_slice(first);
            buf.push(b'.');
            buf.extend_from_slice(last);
        }
        60..75 => {
            buf.extend_from_slice(first);
            buf.push(b'_');
            buf.extend_from_slice(last);
        }
        75..90 => {
            buf.push(first[0]);
            buf.extend_from_slice(last);
        }
        _ => buf.extend_from_slice(first),
    }
    push_u64(buf, user.number);
    buf.push(b'@');
    for (i, &b) in user.domain.as_bytes().iter().enumerate() {
        let upper = match user.domain_case {
            1 => i == 0,
            2 => true,
            3 => i == 0 || (user.case_bits >> (i % 64)) & 1 == 1,
            _ => false,
        };
        buf.push(if upper { b.to_ascii_uppercase() } else { b });
    }
    buf.push(b'"');
}

// ---- the event stream --------------------------------------------------------------------------

/// How an event's time relates to the stream clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum TimeKind {
    Normal,
    Skewed,
    Ancient,
}

/// A copy of a line waiting for its re-delivery position. Ordered by `(due, seq)` (`seq` is unique,
/// so the remaining fields never decide the order).
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Redelivery {
    due: u64,
    seq: u64,
    kind: TimeKind,
    time_ms: i64,
    line: Vec<u8>,
}

/// Collects lines into frames of at most `frame_bytes` (or one line, if longer) and writes each as
/// an independent zstd frame with its content size in the header.
struct FrameWriter<'w, W: Write> {
    out: &'w mut W,
    compressor: zstd::bulk::Compressor<'static>,
    frame: Vec<u8>,
    compressed: Vec<u8>,
    frame_bytes: usize,
    frames: u64,
    raw_bytes: u64,
}

impl<'w, W: Write> FrameWriter<'w, W> {
    fn new(out: &'w mut W, frame_bytes: usize, level: i32) -> io::Result<Self> {
        let mut compressor = zstd::bulk::Compressor::new(level)?;
        compressor.include_contentsize(true)?;
        compressor.include_checksum(true)?;
        let capacity = frame_bytes.min(64 << 20) + 4096;
        Ok(FrameWriter {
            out,
            compressor,
            frame: Vec::with_capacity(capacity),
            compressed: Vec::new(),
            frame_bytes,
            frames: 0,
            raw_bytes: 0,
        })
    }

    fn push_line(&mut self, line: &[u8]) -> io::Result<()> {
        if !self.frame.is_empty() && self.frame.len() + line.len() > self.frame_bytes {
            self.flush_frame()?;
        }
        self.frame.extend_from_slice(line);
        self.raw_bytes += line.len() as u64;
        Ok(())
    }

    fn flush_frame(&mut self) -> io::Result<()> {
        self.compressed.clear();
        self.compressed
            .reserve(zstd::zstd_safe::compress_bound(self.frame.len()));
        self.compressor
            .compress_to_buffer(&self.frame, &mut self.compressed)?;
        self.out.write_all(&self.compressed)?;
        self.frames += 1;
        self.frame.clear();
        Ok(())
    }

    /// Writes the last frame and returns (frames, uncompressed bytes). An empty log still gets
    /// one (empty) frame: a zero-byte file is not valid zstd.
    fn finish(mut self) -> io::Result<(u64, u64)> {
        if !self.frame.is_empty() || self.frames == 0 {
            self.flush_frame()?;
        }
        Ok((self.frames, self.raw_bytes))
    }
}

/// Copies of earlier lines waiting for their re-delivery position.
struct Redeliveries {
    pending: BinaryHeap<Reverse<Redelivery>>,
    seq: u64,
    /// Stream lines per millisecond of event time, to turn delays into positions.
    lines_per_ms: f64,
    /// Number of lines in the log: copies due at or after it are never scheduled.
    end: u64,
}

impl Redeliveries {
    /// The earliest copy due at or before stream position `pos`, if any. Copies that fall due at
    /// the same position go out one per position, in the order they were scheduled.
    fn take_due(&mut self, pos: u64) -> Option<Redelivery> {
        if self.pending.peek().is_some_and(|Reverse(r)| r.due <= pos) {
            self.pending.pop().map(|Reverse(r)| r)
        } else {
            None
        }
    }

    /// Decides whether the fresh event just written at `pos` will be re-delivered, and when:
    /// 20% within a second, 40% within a minute, 30% within half an hour, 10% within 6 hours
    /// (of event time, converted to stream positions at the mean rate).
    fn maybe_schedule(
        &mut self,
        rng: &mut impl Draw,
        pos: u64,
        kind: TimeKind,
        time_ms: i64,
        line: &[u8],
    ) {
        let ppm = if kind == TimeKind::Ancient {
            ANCIENT_REDELIVER_PPM
        } else {
            REDELIVER_PPM
        };
        if !rng.chance(ppm) {
            return;
        }
        let copies = if rng.chance(TWICE_PPM) { 2 } else { 1 };
        for _ in 0..copies {
            let delay_ms = match rng.below(100) {
                0..20 => rng.between(1, SECOND_MS),
                20..60 => rng.between(SECOND_MS, MINUTE_MS),
                60..90 => rng.between(MINUTE_MS, 30 * MINUTE_MS),
                _ => rng.between(30 * MINUTE_MS, 6 * HOUR_MS),
            };
            let delay = ((delay_ms as f64 * self.lines_per_ms) as u64).max(1);
            let due = pos.saturating_add(delay);
            if due < self.end {
                let seq = self.seq;
                self.seq += 1;
                self.pending.push(Reverse(Redelivery {
                    due,
                    seq,
                    kind,
                    time_ms,
                    line: line.to_vec(),
                }));
            }
        }
    }
}

/// Writes `opts.events` lines as zstd frames to `out`. `bytes_written` is left to the caller.
fn write_events(
    opts: &GenerateOptions,
    model: &Model,
    out: &mut impl Write,
) -> io::Result<GenerateReport> {
    let mut frames = FrameWriter::new(out, opts.frame_bytes, opts.level)?;
    let mut rng = Xoshiro256::new(opts.seed);
    let ms_per_line = 1000.0 / opts.rate;
    let mut redeliveries = Redeliveries {
        pending: BinaryHeap::new(),
        seq: 0,
        lines_per_ms: opts.rate / 1000.0,
        end: opts.events,
    };
    let mut line = Vec::with_capacity(1024);
    let mut report = GenerateReport {
        lines: opts.events,
        ..GenerateReport::default()
    };
    let (mut first_ms, mut last_ms) = (i64::MAX, i64::MIN);
    let mut fresh = 0u64;

    for pos in 0..opts.events {
        let (kind, time_ms) = match redeliveries.take_due(pos) {
            Some(copy) => {
                report.duplicates += 1;
                frames.push_line(&copy.line)?;
                (copy.kind, copy.time_ms)
            }
            None => {
                // The stream clock: `events` lines spread evenly over `events / rate` seconds.
                let clock_ms = opts.start_ms + (pos as f64 * ms_per_line) as i64;
                line.clear();
                let (kind, time_ms) = write_event(model, &mut rng, fresh, clock_ms, &mut line);
                fresh += 1;
                redeliveries.maybe_schedule(&mut rng, pos, kind, time_ms, &line);
                frames.push_line(&line)?;
                (kind, time_ms)
            }
        };
        match kind {
            TimeKind::Normal => {}
            TimeKind::Skewed => report.skewed += 1,
            TimeKind::Ancient => report.ancient += 1,
        }
        if kind != TimeKind::Ancient {
            first_ms = first_ms.min(time_ms);
            last_ms = last_ms.max(time_ms);
        }
    }
    (report.frames, report.bytes_raw) = frames.finish()?;
    if first_ms <= last_ms {
        report.first_ms = first_ms;
        report.last_ms = last_ms;
    }
    Ok(report)
}

/// Clock jitter: 70% within ±2 s, 25% within ±30 s, 5% within ±3 min.
fn jitter(rng: &mut impl Draw) -> i64 {
    let max = match rng.below(100) {
        0..70 => 2 * SECOND_MS,
        70..95 => 30 * SECOND_MS,
        _ => MAX_JITTER_MS,
    };
    rng.between(-max, max)
}

/// Appends fresh event number `index` (its line, `\n` included) to `line`; returns its time kind
/// and its time in ms as the engine will parse it.
fn write_event(
    model: &Model,
    rng: &mut impl Draw,
    index: u64,
    clock_ms: i64,
    line: &mut Vec<u8>,
) -> (TimeKind, i64) {
    let user = model.user(model.users.sample(rng) as u64);

    // "id": a bijection of the event number, so ids are unique yet look random.
    line.extend_from_slice(b"{\"id\":\"e");
    push_hex(line, mix64(index.wrapping_add(model.id_key)), 16);
    line.extend_from_slice(b"\",");

    let type_index = model.event_types.sample(rng);
    line.extend_from_slice(b"\"type\":");
    let channel = match EVENT_TYPES.get(type_index) {
        Some(&(name, _, channel)) => {
            push_json_str(line, name);
            match channel {
                Channel::Email => "email",
                Channel::Sms => "sms",
                Channel::Push => "push",
                Channel::Site if user.app => "app",
                Channel::Site => "web",
            }
        }
        None => {
            line.extend_from_slice(b"\"custom_event_");
            push_padded(line, (type_index - EVENT_TYPES.len()) as u64, 3);
            line.push(b'"');
            "api"
        }
    };

    line.extend_from_slice(b",\"email\":");
    push_email(line, &user);

    let mut time_ms = clock_ms + jitter(rng);
    let kind = if rng.chance(ANCIENT_PPM) {
        time_ms -= rng.between(ANCIENT_MIN_MS, ANCIENT_MAX_MS);
        TimeKind::Ancient
    } else if rng.chance(SKEWED_PPM) {
        time_ms += rng.between(-MAX_SKEW_MS, MAX_SKEW_MS);
        TimeKind::Skewed
    } else {
        TimeKind::Normal
    };
    line.extend_from_slice(b",\"timestamp\":");
    let format = rng.below(1_000_000);
    if format < SECONDS_FORMAT_PPM {
        let seconds = time_ms.div_euclid(SECOND_MS);
        push_i64(line, seconds);
        time_ms = seconds * SECOND_MS;
    } else if format < SECONDS_FORMAT_PPM + RFC3339_FORMAT_PPM {
        push_rfc3339(line, time_ms);
    } else {
        push_i64(line, time_ms);
    }

    let message = rng.below(1_000_000);
    if message >= NO_MESSAGE_PPM {
        line.extend_from_slice(b",\"message_id\":\"m-");
        if message < NO_MESSAGE_PPM + UNKNOWN_MESSAGE_PPM {
            // Not in the lookup: half a retired message of a known campaign, half a campaign
            // newer than the lookup export.
            if rng.chance(500_000) {
                let c = 1 + model.campaigns.sample(rng) as u64;
                push_u64(line, c);
                line.push(b'-');
                push_u64(
                    line,
                    model.campaign_messages[c as usize - 1] + 1 + rng.below(5),
                );
            } else {
                push_u64(line, CAMPAIGNS + 1 + rng.below(50));
                line.push(b'-');
                push_u64(line, 1 + rng.below(10));
            }
        } else {
            let c = 1 + model.campaigns.sample(rng) as u64;
            push_u64(line, c);
            line.push(b'-');
            push_u64(line, 1 + rng.below(model.campaign_messages[c as usize - 1]));
        }
        line.push(b'"');
    }

    let presence = rng.below(1_000_000);
    let browser = if presence < NO_BROWSER_PPM {
        None
    } else if presence < NO_BROWSER_PPM + NULL_BROWSER_PPM {
        line.extend_from_slice(b",\"browser\":null");
        None
    } else {
        let b = if rng.chance(OTHER_BROWSER_PPM) {
            model.browsers.sample(rng)
        } else {
            user.browser
        };
        line.extend_from_slice(b",\"browser\":");
        push_json_str(line, BROWSERS[b].0);
        Some(b)
    };

    line.extend_from_slice(b",\"ip\":\"");
    for octet in user.ip {
        push_u64(line, u64::from(octet));
        line.push(b'.');
    }
    push_u64(line, 1 + rng.below(254));
    line.extend_from_slice(b"\",\"ua\":");
    let agent = match browser {
        Some(b) => USER_AGENTS[b],
        None => OTHER_AGENTS[rng.below(OTHER_AGENTS.len() as u64) as usize],
    };
    push_json_str(line, agent);

    line.extend_from_slice(b",\"context\":{\"channel\":");
    push_json_str(line, channel);
    line.extend_from_slice(b",\"locale\":");
    push_json_str(line, user.locale);
    line.extend_from_slice(b",\"session\":\"");
    let session = rng.next_u64();
    push_hex(line, session, 8);
    line.extend_from_slice(b"\"}");

    if type_index == ORDER_PLACED || type_index == ADD_TO_CART {
        // A nested item, drawn from the session's bits (not from `rng`, so every other field of
        // every line is what earlier versions wrote): quantity mostly 1, up to 4.
        let h = xxhash_rust::xxh3::xxh3_64(&session.to_le_bytes());
        let quantity = [1, 1, 1, 1, 2, 2, 3, 4][(h >> 16) as usize % 8];
        line.extend_from_slice(b",\"item\":{\"product\":");
        push_json_str(line, PRODUCTS[h as usize % PRODUCTS.len()]);
        line.extend_from_slice(b",\"color\":");
        push_json_str(line, COLORS[(h >> 8) as usize % COLORS.len()]);
        line.extend_from_slice(b",\"quantity\":");
        push_u64(line, quantity);
        line.push(b'}');
    }

    if type_index == ORDER_PLACED {
        // Order values in cents, skewed towards small baskets: 5.00 .. 500.00.
        let spread = 1 + rng.below(49_501);
        let cents = 500 + rng.below(spread);
        line.extend_from_slice(b",\"revenue\":");
        push_u64(line, cents / 100);
        line.push(b'.');
        push_padded(line, cents % 100, 2);
    } else if type_index == SEARCH {
        line.extend_from_slice(b",\"query\":");
        push_json_str(line, QUERIES[rng.below(QUERIES.len() as u64) as usize]);
    }
    line.extend_from_slice(b"}\n");
    (kind, time_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{HashMap, HashSet};

    fn options(dir: &Path, events: u64, seed: u64) -> GenerateOptions {
        let mut opts = GenerateOptions::new(events, seed, dir.join("events.ndjson.zst"));
        opts.users = 5_000;
        // Small frames, so the frame logic is exercised many times.
        opts.frame_bytes = 64 << 10;
        opts
    }

    /// Decodes the log frame by frame, checking each frame on the way; returns the lines.
    fn read_frames(opts: &GenerateOptions, report: &GenerateReport) -> Vec<Vec<u8>> {
        let data = fs::read(&opts.out).unwrap();
        assert_eq!(report.bytes_written, data.len() as u64);
        let mut offset = 0;
        let mut frames = 0;
        let mut raw = Vec::new();
        while offset < data.len() {
            let rest = &data[offset..];
            let size = zstd::zstd_safe::find_frame_compressed_size(rest).unwrap();
            let declared = zstd::zstd_safe::get_frame_content_size(rest).unwrap();
            let frame = zstd::decode_all(&rest[..size]).unwrap();
            assert_eq!(
                declared,
                Some(frame.len() as u64),
                "frame {frames} content size"
            );
            if report.lines > 0 {
                assert_eq!(frame.last(), Some(&b'\n'), "frame {frames} ends mid-line");
                let lines = frame.iter().filter(|&&b| b == b'\n').count();
                assert!(
                    frame.len() <= opts.frame_bytes || lines == 1,
                    "frame {frames} too big"
                );
            }
            raw.extend_from_slice(&frame);
            offset += size;
            frames += 1;
        }
        assert_eq!(frames, report.frames);
        assert_eq!(raw.len() as u64, report.bytes_raw);
        // The file as a whole is ordinary zstd, too.
        assert_eq!(zstd::decode_all(data.as_slice()).unwrap(), raw);
        raw.split_inclusive(|&b| b == b'\n')
            .map(<[u8]>::to_vec)
            .collect()
    }

    /// Event time in ms by the engine's `time_format = "auto"` rule.
    fn time_of(event: &serde_json::Value) -> i64 {
        match &event["timestamp"] {
            serde_json::Value::Number(n) => {
                let x = n.as_i64().unwrap();
                if x.abs() < 100_000_000_000 {
                    x * 1000
                } else {
                    x
                }
            }
            serde_json::Value::String(s) => parse_rfc3339_millis(s),
            other => panic!("bad timestamp {other}"),
        }
    }

    /// Just enough RFC 3339 for `YYYY-MM-DDTHH:MM:SS.mmmZ`, via day counting independent of the
    /// generator's `civil_from_days`.
    fn parse_rfc3339_millis(s: &str) -> i64 {
        assert_eq!(s.len(), 24, "{s}");
        assert!(s.ends_with('Z') && &s[10..11] == "T", "{s}");
        let num = |r: std::ops::Range<usize>| s[r].parse::<i64>().unwrap();
        let (year, month, day) = (num(0..4), num(5..7), num(8..10));
        let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        let mut days = (1970..year)
            .map(|y| if leap(y) { 366 } else { 365 })
            .sum::<i64>();
        let month_days = [
            31,
            if leap(year) { 29 } else { 28 },
            31,
            30,
            31,
            30,
            31,
            31,
            30,
            31,
            30,
            31,
        ];
        days += month_days[..month as usize - 1].iter().sum::<i64>() + day - 1;
        days * DAY_MS
            + num(11..13) * HOUR_MS
            + num(14..16) * MINUTE_MS
            + num(17..19) * SECOND_MS
            + num(20..23)
    }

    #[test]
    fn same_options_give_identical_files_and_other_seeds_differ() {
        let (a, b, c) = (
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
        );
        let ra = generate(&options(a.path(), 30_000, 7)).unwrap();
        let rb = generate(&options(b.path(), 30_000, 7)).unwrap();
        generate(&options(c.path(), 30_000, 8)).unwrap();
        let read = |d: &tempfile::TempDir, f: &str| fs::read(d.path().join(f)).unwrap();
        assert_eq!(read(&a, "events.ndjson.zst"), read(&b, "events.ndjson.zst"));
        assert_eq!(read(&a, "campaigns.csv"), read(&b, "campaigns.csv"));
        assert_ne!(read(&a, "events.ndjson.zst"), read(&c, "events.ndjson.zst"));
        assert_eq!(format!("{ra:?}"), format!("{rb:?}"));
        // Nothing left behind but the two outputs.
        let mut names: Vec<_> = fs::read_dir(a.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(names, ["campaigns.csv", "events.ndjson.zst"]);
    }

    /// Pins the decoded content for one seed, so accidental changes to the workload (or platform
    /// dependence) show up. Update the constant deliberately when the workload is changed.
    #[test]
    fn golden_content_hash() {
        let dir = tempfile::tempdir().unwrap();
        let opts = options(dir.path(), 3_000, 1);
        let report = generate(&opts).unwrap();
        let lines = read_frames(&opts, &report);
        // FNV-1a 64 over the decoded bytes.
        let hash = lines
            .iter()
            .flatten()
            .fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
                (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
            });
        assert_eq!(
            hash, 0x428a12a5da6b5bd8,
            "decoded content changed: {hash:#018x}"
        );
    }

    #[test]
    fn frames_decode_lines_are_json_and_report_adds_up() {
        let dir = tempfile::tempdir().unwrap();
        let opts = options(dir.path(), 200_000, 42);
        let report = generate(&opts).unwrap();
        let lines = read_frames(&opts, &report);
        assert_eq!(lines.len() as u64, report.lines);
        assert!(report.frames > 100, "{report:?}");

        let mut by_id: HashMap<String, &[u8]> = HashMap::new();
        let mut email_of_user: HashMap<String, String> = HashMap::new();
        let mut duplicates = 0;
        let (mut ancient, mut first, mut last) = (0, i64::MAX, i64::MIN);
        let (mut no_message, mut no_browser, mut null_browser, mut custom) = (0, 0, 0, 0);
        let (mut seconds, mut strings, mut mixed_case) = (0, 0, 0);
        for line in &lines {
            assert_eq!(line.last(), Some(&b'\n'));
            let event: serde_json::Value = serde_json::from_slice(line).unwrap();
            let obj = event.as_object().unwrap();
            let id = obj["id"].as_str().unwrap().to_owned();
            let email = obj["email"].as_str().unwrap();
            let kind = obj["type"].as_str().unwrap();
            assert!(!kind.is_empty() && email.contains('@'));
            match by_id.get(&id) {
                // An id seen before: the whole line is a byte-identical re-delivery.
                Some(&original) => {
                    assert_eq!(original, line.as_slice());
                    duplicates += 1;
                }
                None => {
                    by_id.insert(id, line);
                }
            }
            // A user (name + number) always has the same email string.
            let local = email.split('@').next().unwrap().to_owned();
            assert_eq!(
                email_of_user
                    .entry(local)
                    .or_insert_with(|| email.to_owned()),
                email
            );
            let t = time_of(&event);
            if t < DEFAULT_START_MS - 300 * DAY_MS {
                ancient += 1;
            } else {
                first = first.min(t);
                last = last.max(t);
            }
            match obj.get("browser") {
                None => no_browser += 1,
                Some(serde_json::Value::Null) => null_browser += 1,
                Some(b) => assert!(BROWSERS.iter().any(|&(name, _)| b == name)),
            }
            no_message += usize::from(!obj.contains_key("message_id"));
            custom += usize::from(kind.starts_with("custom_event_"));
            seconds += usize::from(
                obj["timestamp"]
                    .as_i64()
                    .is_some_and(|t| t < 100_000_000_000),
            );
            strings += usize::from(obj["timestamp"].is_string());
            let domain = email.rsplit('@').next().unwrap();
            mixed_case += usize::from(domain != domain.to_ascii_lowercase());
            if kind == "order_placed" {
                assert!(obj["revenue"].as_f64().unwrap() >= 5.0);
            }
            if kind == "order_placed" || kind == "add_to_cart" {
                let item = &obj["item"];
                assert!(PRODUCTS.contains(&item["product"].as_str().unwrap()));
                assert!(COLORS.contains(&item["color"].as_str().unwrap()));
                assert!((1..=4).contains(&item["quantity"].as_u64().unwrap()));
            } else {
                assert!(obj.get("item").is_none());
            }
        }
        assert_eq!(duplicates, report.duplicates);
        let distinct: HashSet<&Vec<u8>> = lines.iter().collect();
        assert_eq!(lines.len() - distinct.len(), duplicates as usize);
        assert_eq!(ancient, report.ancient);
        assert_eq!((first, last), (report.first_ms, report.last_ms));

        // The rates, loosely (users are Zipf-skewed, so per-user traits are noisy per event).
        let n = lines.len() as f64;
        let near = |count: usize, share: f64, tolerance: f64| {
            let got = count as f64 / n;
            assert!(
                (got - share).abs() <= tolerance,
                "share {got}, expected {share}"
            );
        };
        near(duplicates as usize, 0.01, 0.002);
        near(report.skewed as usize, 0.003, 0.001);
        near(no_message, 0.15, 0.01);
        near(no_browser, 0.08, 0.01);
        near(null_browser, 0.02, 0.005);
        near(custom, 0.03, 0.005);
        near(seconds, 0.01, 0.002);
        near(strings, 0.01, 0.002);
        assert!(mixed_case > 0);
        let span = (report.lines as f64 / opts.rate * 1000.0) as i64;
        assert!(report.last_ms >= DEFAULT_START_MS + span - HOUR_MS);
        assert!(report.first_ms >= DEFAULT_START_MS - MAX_SKEW_MS - MAX_JITTER_MS);
    }

    #[test]
    fn time_order_mostly_holds() {
        let dir = tempfile::tempdir().unwrap();
        let opts = options(dir.path(), 100_000, 3);
        let report = generate(&opts).unwrap();
        let times: Vec<i64> = read_frames(&opts, &report)
            .iter()
            .map(|l| time_of(&serde_json::from_slice(l).unwrap()))
            .collect();
        // Almost every event lies within a few minutes of the stream clock (the exceptions: skewed
        // and ancient sources, late re-deliveries).
        let ms_per_line = 1000.0 / opts.rate;
        let off_clock = times
            .iter()
            .enumerate()
            .filter(|&(pos, &t)| {
                let clock = opts.start_ms + (pos as f64 * ms_per_line) as i64;
                (t - clock).abs() > 10 * MINUTE_MS
            })
            .count();
        assert!(
            off_clock as f64 / (times.len() as f64) < 0.01,
            "{off_clock} off the clock"
        );
        // And neighbours are mostly in order, up to the jitter.
        let disordered = times
            .windows(2)
            .filter(|w| w[1] < w[0] - 2 * MAX_JITTER_MS)
            .count();
        assert!(
            disordered as f64 / (times.len() as f64) < 0.02,
            "{disordered} out of order"
        );
        let in_order = times.windows(2).filter(|w| w[1] >= w[0]).count();
        assert!(
            in_order as f64 / (times.len() as f64) > 0.45,
            "{in_order} in order"
        );
    }

    #[test]
    fn lookup_csv_is_well_formed_and_covers_most_message_ids() {
        let dir = tempfile::tempdir().unwrap();
        let opts = options(dir.path(), 50_000, 9);
        let report = generate(&opts).unwrap();
        let csv = fs::read_to_string(&opts.lookup).unwrap();
        let mut rows = csv.lines();
        assert_eq!(rows.next(), Some("key,value"));
        let mut lookup = HashMap::new();
        for row in rows {
            let (key, value) = row.split_once(',').unwrap();
            assert!(!value.is_empty() && !value.contains(','), "{row}");
            let parts: Vec<&str> = key.split('-').collect();
            assert_eq!(parts.len(), 3, "{row}");
            assert_eq!(parts[0], "m");
            assert!(value.ends_with(&format!("_{}", parts[1])), "{row}");
            assert!(
                lookup.insert(key.to_owned(), value.to_owned()).is_none(),
                "{key} twice"
            );
        }
        assert!((200 * 3..=200 * 20).contains(&lookup.len()));
        let (mut hits, mut misses) = (0, 0);
        for line in read_frames(&opts, &report) {
            let event: serde_json::Value = serde_json::from_slice(&line).unwrap();
            if let Some(m) = event.get("message_id") {
                if lookup.contains_key(m.as_str().unwrap()) {
                    hits += 1
                } else {
                    misses += 1
                }
            }
        }
        let n = report.lines as f64;
        assert!((f64::from(hits) / n - 0.80).abs() < 0.01, "{hits}");
        assert!((f64::from(misses) / n - 0.05).abs() < 0.01, "{misses}");
    }

    #[test]
    fn no_events_still_writes_valid_zstd() {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = options(dir.path(), 0, 1);
        opts.out = dir.path().join("a/b/empty.ndjson.zst");
        let report = generate(&opts).unwrap();
        assert_eq!((report.lines, report.frames, report.bytes_raw), (0, 1, 0));
        assert!(read_frames(&opts, &report).is_empty());
    }

    #[test]
    fn one_line_frames_and_a_second_run_replaces_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = options(dir.path(), 500, 5);
        opts.frame_bytes = 1;
        let report = generate(&opts).unwrap();
        assert_eq!(report.frames, 500);
        assert_eq!(read_frames(&opts, &report).len(), 500);
        opts.frame_bytes = 1 << 20;
        let report = generate(&opts).unwrap();
        assert_eq!(report.frames, 1);
        assert_eq!(read_frames(&opts, &report).len(), 500);
    }

    #[test]
    fn invalid_options_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let base = options(dir.path(), 10, 1);
        let refused = |change: &dyn Fn(&mut GenerateOptions)| {
            let mut opts = base.clone();
            change(&mut opts);
            assert!(matches!(
                generate(&opts),
                Err(GenerateError::InvalidOptions(_))
            ));
        };
        refused(&|o| o.users = 0);
        refused(&|o| o.rate = 0.0);
        refused(&|o| o.rate = f64::NAN);
        refused(&|o| o.frame_bytes = 0);
        refused(&|o| o.level = 1000);
        refused(&|o| o.start_ms = 0);
        refused(&|o| o.start_ms = TIME_CEILING_MS);
        refused(&|o| o.lookup = o.out.clone());
        refused(&|o| {
            o.events = u64::MAX;
            o.rate = 0.001;
        });
        assert!(
            fs::read_dir(dir.path()).unwrap().next().is_none(),
            "nothing written"
        );
    }

    #[test]
    fn io_errors_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        fs::write(&blocker, b"x").unwrap();
        let opts = options(&blocker.join("sub"), 10, 1);
        let err = generate(&opts).unwrap_err();
        assert!(matches!(err, GenerateError::Io { .. }));
        assert!(
            err.to_string().contains(&*blocker.to_string_lossy()),
            "{err}"
        );
    }

    #[test]
    fn defaults() {
        let opts = GenerateOptions::new(5, 1, PathBuf::from("data/x.ndjson.zst"));
        assert_eq!(opts.lookup, PathBuf::from("data/campaigns.csv"));
        let opts = GenerateOptions::new(5, 1, PathBuf::from("x.ndjson.zst"));
        assert_eq!(opts.lookup, PathBuf::from("campaigns.csv"));
        assert_eq!(
            (opts.users, opts.rate, opts.start_ms),
            (100_000, 10.0, 1_704_067_200_000)
        );
        assert_eq!((opts.frame_bytes, opts.level), (4 << 20, 3));
    }

    #[test]
    fn vocabulary_is_consistent() {
        assert_eq!(EVENT_TYPES[ORDER_PLACED].0, "order_placed");
        assert_eq!(EVENT_TYPES[SEARCH].0, "search");
        assert_eq!(EVENT_TYPES.iter().map(|t| t.1).sum::<u64>(), 970_000);
        let custom: u64 = (0..CUSTOM_TYPES).map(|k| CUSTOM_ZIPF / (k + 1)).sum();
        assert!((29_500..=30_500).contains(&custom), "{custom}");
        assert_eq!(BROWSERS.len(), USER_AGENTS.len());
        assert_eq!(PROVIDERS[0].0, "gmail.com");
        let providers: u64 = PROVIDERS.iter().map(|p| p.1).sum();
        assert!((PROVIDERS[0].1 as f64 / providers as f64 - 0.40).abs() < 0.01);
    }

    #[test]
    fn formatting_helpers() {
        let mut buf = Vec::new();
        for n in [0u64, 7, 10, 123_456_789, u64::MAX] {
            buf.clear();
            push_u64(&mut buf, n);
            assert_eq!(buf, n.to_string().as_bytes());
        }
        for n in [0i64, -1, i64::MIN, i64::MAX] {
            buf.clear();
            push_i64(&mut buf, n);
            assert_eq!(buf, n.to_string().as_bytes());
        }
        for s in QUERIES.iter().copied().chain(["a\u{1}b\n\t\\\"", ""]) {
            buf.clear();
            push_json_str(&mut buf, s);
            assert_eq!(serde_json::from_slice::<String>(&buf).unwrap(), s);
        }
        for (ms, text) in [
            (0, "1970-01-01T00:00:00.000Z"),
            (DEFAULT_START_MS + 3_723_004, "2024-01-01T01:02:03.004Z"),
            (951_782_400_000, "2000-02-29T00:00:00.000Z"),
            (4_102_444_799_999, "2099-12-31T23:59:59.999Z"),
        ] {
            buf.clear();
            push_rfc3339(&mut buf, ms);
            assert_eq!(buf, format!("\"{text}\"").as_bytes());
            assert_eq!(parse_rfc3339_millis(text), ms);
        }
    }

    #[test]
    fn emails_are_unique_per_user_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = options(dir.path(), 0, 11);
        opts.users = 20_000;
        let model = Model::new(&opts);
        let emails: HashSet<Vec<u8>> = (0..opts.users)
            .map(|rank| {
                let mut buf = Vec::new();
                push_email(&mut buf, &model.user(rank));
                buf
            })
            .collect();
        assert_eq!(emails.len() as u64, opts.users);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        push_email(&mut a, &model.user(17));
        push_email(&mut b, &model.user(17));
        assert_eq!(a, b);
    }
}
