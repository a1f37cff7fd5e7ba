//! Time zones for `x AT TIME ZONE z` / `timezone(z, x)`: PG 15's zone lookup and its
//! conversions between `timestamp` (local wall time) and `timestamptz` (UTC), reproduced.
//!
//! Assumption (documented for operators): Postgres is built `--with-system-tzdata` (Debian,
//! Ubuntu, RHEL and the official images are) and Ampere runs with the **same IANA tzdata
//! release** (the Docker image installs `tzdata`; `TZDIR` overrides `/usr/share/zoneinfo`).
//! Both then read the same TZif files, and this module evaluates them exactly as PG's
//! `src/timezone/localtime.c` and `DetermineTimeZoneOffset` do. A tzdata release that differs
//! between the two machines changes answers for the affected zones; nothing else does.
//! `timezone_abbreviations` is assumed to be PG's `Default` set.
//!
//! Lookup order (PG's `timestamp_zone`): the name, lower-cased, as a `Default` abbreviation
//! (fixed offsets only; abbreviations whose offset depends on the date are refused); then a
//! TZif file under the zone directory, each path component matched case-insensitively and
//! never a name starting with `.`; then a POSIX TZ string (`UTC+3`, `+05:30`, `<+03>-3`,
//! `EST5EDT,M3.2.0,M11.1.0`; PG allows an empty standard name, and POSIX offsets are hours
//! *west* of Greenwich, the opposite of ISO 8601). Anything else is "not recognized".
//!
//! Invariants:
//! * The TZif and POSIX parsers are total and panic-free: bounded input (a zone file is read
//!   only up to [`MAX_TZIF_BYTES`]), checked lengths and arithmetic, typed errors.
//! * Zones with leap seconds (`right/…`) and files outside the zone directory after symlinks
//!   (`localtime` points into `/etc`, which is machine configuration, not tzdata) are
//!   refused rather than approximated.
//! * After the last explicit transition a zone follows its POSIX footer rule, year by year;
//!   tzcode's 400-year extrapolation is the same function, because Gregorian rules repeat
//!   every 400 years.
//! * Parsed zones are cached process-wide (bounded), and a compiled clause holds its zone in
//!   an `Arc`, so evaluation never touches the file system.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;

use super::values::{days_from_civil, days_in_month};

/// TZif files are a few KiB; anything larger is not one.
const MAX_TZIF_BYTES: u64 = 256 * 1024;
/// PG's `TZ_STRLEN_MAX`.
const MAX_ZONE_NAME_BYTES: usize = 255;
/// Parsed zones kept process-wide; beyond this, lookups still work but are not cached.
const MAX_CACHED_ZONES: usize = 4096;
const SECS_PER_DAY: i64 = 86_400;
/// Seconds from 1970-01-01 to PG's epoch, 2000-01-01.
const PG_EPOCH_UNIX_SECS: i64 = 946_684_800;
const USECS_PER_SEC: i64 = 1_000_000;

/// Why a zone name cannot be used.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub(super) enum ZoneError {
    #[error("time zone \"{0}\" not recognized")]
    NotRecognized(String),
    #[error(
        "time zone abbreviation \"{0}\" is not supported: its offset depends on the date (use the full zone name)"
    )]
    DynamicAbbreviation(String),
    #[error("time zone \"{0}\" is not supported: it uses leap seconds")]
    LeapSeconds(String),
    #[error(
        "time zone \"{0}\" is not supported: it is machine configuration, not part of the time zone database"
    )]
    OutsideDatabase(String),
}

/// One local time type of a zone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct LocalType {
    /// Seconds east of UTC.
    utoff: i64,
    is_dst: bool,
}

/// When a POSIX rule switches: the date form and the local time of day (seconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RuleDate {
    /// `Jn`: day 1..=365, February 29 never counted.
    Julian(i64),
    /// `n`: zero-based day of the year, 0..=365.
    DayOfYear(i64),
    /// `Mm.w.d`: day `d` (0 = Sunday) of week `w` (5 = last) of month `m`.
    MonthWeekDay { month: i64, week: i64, day: i64 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct RulePoint {
    date: RuleDate,
    /// Local time of day in seconds (may be negative or over 24 h, as tzcode allows).
    time: i64,
}

/// A POSIX TZ string's daylight-saving rule. Offsets are POSIX style: seconds *west*.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Rule {
    std_west: i64,
    dst_west: i64,
    start: RulePoint,
    end: RulePoint,
}

/// A parsed POSIX TZ string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Posix {
    Fixed {
        west: i64,
    },
    Dst(Rule),
    /// The rule never leaves daylight time (tzcode's "perpetual DST").
    AlwaysDst {
        dst_west: i64,
    },
}

/// A zone: explicit transitions, then (optionally) a POSIX rule.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Zone {
    /// Transition instants (Unix seconds, strictly increasing) and the type each starts.
    transitions: Vec<(i64, usize)>,
    types: Vec<LocalType>,
    /// tzcode's `defaulttype`: the type before the first transition (for `localsub`).
    default_type: usize,
    /// The footer rule followed after the last transition (only rules with daylight time
    /// matter there: a fixed footer adds no transition).
    rule: Option<Rule>,
}

/// A resolved `AT TIME ZONE` zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum TimeZone {
    /// A fixed offset in seconds east of UTC (abbreviations; `interval` zones).
    Fixed(i64),
    Zone(Arc<Zone>),
}

fn out_of_range() -> super::eval::EvalError {
    super::eval::EvalError::OutOfRange {
        type_name: "timestamp",
    }
}

fn valid_timestamp(us: i64) -> Result<i64, super::eval::EvalError> {
    if (super::values::MIN_TIMESTAMP..super::values::END_TIMESTAMP).contains(&us) {
        Ok(us)
    } else {
        Err(out_of_range())
    }
}

fn is_infinite(us: i64) -> bool {
    us == i64::MIN || us == i64::MAX
}

impl TimeZone {
    /// `timestamptz AT TIME ZONE z`: the UTC instant `us` as local wall time in `z`.
    pub fn to_local(&self, us: i64) -> Result<i64, super::eval::EvalError> {
        if is_infinite(us) {
            return Ok(us);
        }
        let utoff = match self {
            TimeZone::Fixed(east) => *east,
            TimeZone::Zone(zone) => {
                // PG asks for the offset at the whole second at or before the instant.
                let secs = us.div_euclid(USECS_PER_SEC) + PG_EPOCH_UNIX_SECS;
                zone.type_at(secs).utoff
            }
        };
        valid_timestamp(
            utoff
                .checked_mul(USECS_PER_SEC)
                .and_then(|o| us.checked_add(o))
                .ok_or_else(out_of_range)?,
        )
    }

    /// `timestamp AT TIME ZONE z`: local wall time `us` in `z` as a UTC instant (PG's
    /// `DetermineTimeZoneOffset`: a skipped local time reads as before the transition, an
    /// ambiguous one as after it).
    pub fn to_utc(&self, us: i64) -> Result<i64, super::eval::EvalError> {
        if is_infinite(us) {
            return Ok(us);
        }
        let utoff = match self {
            TimeZone::Fixed(east) => *east,
            TimeZone::Zone(zone) => {
                let local_secs = us.div_euclid(USECS_PER_SEC) + PG_EPOCH_UNIX_SECS;
                zone.local_offset(local_secs)
            }
        };
        valid_timestamp(
            utoff
                .checked_mul(USECS_PER_SEC)
                .and_then(|o| us.checked_sub(o))
                .ok_or_else(out_of_range)?,
        )
    }
}

#[cfg(test)]
impl TimeZone {
    /// Transition instants (Unix seconds) up to the end of `until_year`: the explicit ones,
    /// then the rule's. For sampling the interesting instants in tests.
    pub fn transition_instants(&self, until_year: i64) -> Vec<i64> {
        let TimeZone::Zone(zone) = self else {
            return Vec::new();
        };
        let mut out: Vec<i64> = zone.transitions.iter().map(|&(at, _)| at).collect();
        if let Some(rule) = &zone.rule {
            let from = out.last().map_or(1800, |&t| {
                super::values::civil_from_days(t.div_euclid(SECS_PER_DAY)).0
            });
            for year in from..=until_year {
                for (at, _) in rule.year_transitions(year).into_iter().flatten() {
                    if out.last().is_none_or(|&last| at > last) {
                        out.push(at);
                    }
                }
            }
        }
        out
    }
}

// ---------------------------------------------------------------------------------------------
// Lookup

/// PG's `Default` abbreviations with a fixed offset (seconds east), lower-cased.
const FIXED_ABBREVIATIONS: &[(&str, i64)] = &[
    ("acdt", 37800),
    ("acsst", 37800),
    ("acst", 34200),
    ("act", -18000),
    ("acwst", 31500),
    ("adt", -10800),
    ("aedt", 39600),
    ("aesst", 39600),
    ("aest", 36000),
    ("aft", 16200),
    ("akdt", -28800),
    ("akst", -32400),
    ("almst", 25200),
    ("almt", 21600),
    ("amt", -14400),
    ("ast", -14400),
    ("awsst", 32400),
    ("awst", 28800),
    ("azost", 0),
    ("azot", -3600),
    ("bdst", 7200),
    ("bdt", 21600),
    ("bnt", 28800),
    ("bort", 28800),
    ("bot", -14400),
    ("bra", -10800),
    ("brst", -7200),
    ("brt", -10800),
    ("bst", 3600),
    ("btt", 21600),
    ("cadt", 37800),
    ("cast", 34200),
    ("cct", 28800),
    ("cdt", -18000),
    ("cest", 7200),
    ("cet", 3600),
    ("cetdst", 7200),
    ("chadt", 49500),
    ("chast", 45900),
    ("chut", 36000),
    ("clst", -10800),
    ("cot", -18000),
    ("cst", -21600),
    ("cxt", 25200),
    ("ddut", 36000),
    ("eat", 10800),
    ("edt", -14400),
    ("eest", 10800),
    ("eet", 7200),
    ("eetdst", 10800),
    ("egst", 0),
    ("egt", -3600),
    ("est", -18000),
    ("fet", 10800),
    ("fjst", 46800),
    ("fjt", 43200),
    ("fnst", -3600),
    ("fnt", -7200),
    ("galt", -21600),
    ("gamt", -32400),
    ("gft", -10800),
    ("gilt", 43200),
    ("gmt", 0),
    ("hkt", 28800),
    ("hst", -36000),
    ("ict", 25200),
    ("idt", 10800),
    ("irt", 12600),
    ("ist", 7200),
    ("jayt", 32400),
    ("jst", 32400),
    ("kdt", 36000),
    ("kgst", 21600),
    ("kst", 32400),
    ("lhst", 37800),
    ("ligt", 36000),
    ("mart", -34200),
    ("mdt", -21600),
    ("mest", 7200),
    ("mesz", 7200),
    ("met", 3600),
    ("metdst", 7200),
    ("mez", 3600),
    ("mht", 43200),
    ("mmt", 23400),
    ("mpt", 36000),
    ("msd", 14400),
    ("mst", -25200),
    ("mut", 14400),
    ("must", 18000),
    ("mvt", 18000),
    ("myt", 28800),
    ("ndt", -9000),
    ("nft", -12600),
    ("npt", 20700),
    ("nst", -12600),
    ("nzdt", 46800),
    ("nzst", 43200),
    ("nzt", 43200),
    ("pdt", -25200),
    ("pet", -18000),
    ("pgt", 36000),
    ("pht", 28800),
    ("pkst", 21600),
    ("pkt", 18000),
    ("pmdt", -7200),
    ("pmst", -10800),
    ("pont", 39600),
    ("pst", -28800),
    ("pwt", 32400),
    ("pyst", -10800),
    ("ret", 14400),
    ("sadt", 37800),
    ("sast", 7200),
    ("sct", 14400),
    ("taht", -36000),
    ("tft", 18000),
    ("tjt", 18000),
    ("tot", 46800),
    ("trut", 36000),
    ("tvt", 43200),
    ("uct", 0),
    ("ulast", 32400),
    ("ut", 0),
    ("utc", 0),
    ("uyst", -7200),
    ("uyt", -10800),
    ("uzst", 21600),
    ("uzt", 18000),
    ("vut", 39600),
    ("wadt", 28800),
    ("wakt", 43200),
    ("wast", 25200),
    ("wat", 3600),
    ("wdt", 32400),
    ("wet", 0),
    ("wetdst", 3600),
    ("wft", 43200),
    ("wgst", -7200),
    ("wgt", -10800),
    ("xjt", 21600),
    ("yapt", 36000),
    ("yekst", 21600),
    ("z", 0),
    ("zulu", 0),
];

/// PG's `Default` abbreviations defined by a zone (their offset depends on the date).
const DYNAMIC_ABBREVIATIONS: &[&str] = &[
    "amst", "anast", "anat", "arst", "art", "azst", "azt", "ckt", "clt", "davt", "easst", "east",
    "fkst", "fkt", "gest", "get", "gyt", "iot", "irkst", "irkt", "kost", "krast", "krat", "kgt",
    "lhdt", "lint", "lkt", "magst", "magt", "mawt", "msk", "novst", "novt", "nut", "omsst", "omst",
    "petst", "pett", "pyt", "sgt", "tkt", "tmt", "ulat", "vet", "vlast", "vlat", "volt", "yakst",
    "yakt", "yekt",
];

/// The zone directory: `TZDIR`, else the system's.
fn zone_dir() -> PathBuf {
    std::env::var_os("TZDIR")
        .filter(|d| !d.is_empty())
        .map_or_else(|| PathBuf::from("/usr/share/zoneinfo"), PathBuf::from)
}

type Cache = Mutex<HashMap<(PathBuf, String), Arc<Zone>>>;

fn cache() -> &'static Cache {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Resolves a zone name as PG 15's `timestamp_zone` does.
pub(super) fn lookup(name: &str) -> Result<TimeZone, ZoneError> {
    let not_recognized = || ZoneError::NotRecognized(name.to_owned());
    if name.len() > MAX_ZONE_NAME_BYTES || name.contains('\0') {
        return Err(not_recognized());
    }
    let lower = name.to_ascii_lowercase();
    if let Some((_, east)) = FIXED_ABBREVIATIONS.iter().find(|(a, _)| *a == lower) {
        return Ok(TimeZone::Fixed(*east));
    }
    if DYNAMIC_ABBREVIATIONS.contains(&lower.as_str()) {
        return Err(ZoneError::DynamicAbbreviation(name.to_owned()));
    }
    let upper = name.to_ascii_uppercase();
    let dir = zone_dir();
    let key = (dir.clone(), upper.clone());
    if let Some(zone) = cache().lock().get(&key) {
        return Ok(TimeZone::Zone(Arc::clone(zone)));
    }
    let zone = match load_file(&dir, &upper, name)? {
        Some(zone) => zone,
        None => {
            if upper.starts_with(':') {
                return Err(not_recognized());
            }
            let posix = parse_posix(upper.as_bytes()).ok_or_else(not_recognized)?;
            Zone::from_posix(posix)
        }
    };
    let zone = Arc::new(zone);
    let mut cache = cache().lock();
    if cache.len() < MAX_CACHED_ZONES {
        cache.insert(key, Arc::clone(&zone));
    }
    Ok(TimeZone::Zone(zone))
}

/// PG's `pg_open_tzfile` + `tzload`: `Ok(None)` when there is no usable file of that name
/// (PG then tries the name as a POSIX string).
fn load_file(dir: &Path, upper: &str, name: &str) -> Result<Option<Zone>, ZoneError> {
    let relative = upper.strip_prefix(':').unwrap_or(upper);
    let Some(path) = find_case_insensitive(dir, relative) else {
        return Ok(None);
    };
    // The file must be tzdata, not machine configuration reached through a symlink.
    let (Ok(real), Ok(real_dir)) = (std::fs::canonicalize(&path), std::fs::canonicalize(dir))
    else {
        return Ok(None);
    };
    if !real.starts_with(&real_dir) {
        return Err(ZoneError::OutsideDatabase(name.to_owned()));
    }
    let Ok(file) = std::fs::File::open(&real) else {
        return Ok(None);
    };
    let mut bytes = Vec::new();
    use std::io::Read as _;
    if file
        .take(MAX_TZIF_BYTES + 1)
        .read_to_end(&mut bytes)
        .is_err()
        || bytes.len() as u64 > MAX_TZIF_BYTES
    {
        return Ok(None);
    }
    match parse_tzif(&bytes) {
        Ok(zone) => Ok(Some(zone)),
        Err(TzifError::LeapSeconds) => Err(ZoneError::LeapSeconds(name.to_owned())),
        Err(TzifError::Invalid) => Ok(None),
    }
}

/// Each `/`-separated component matched case-insensitively against the directory entries,
/// skipping names that start with `.` (so `..` never resolves), as PG's `scan_directory_ci`.
fn find_case_insensitive(dir: &Path, name: &str) -> Option<PathBuf> {
    let mut path = dir.to_path_buf();
    for part in name.split('/') {
        if part.is_empty() {
            return None;
        }
        let entries = std::fs::read_dir(&path).ok()?;
        let found = entries.flatten().find_map(|entry| {
            let file_name = entry.file_name();
            let file_name = file_name.to_str()?;
            (!file_name.starts_with('.') && file_name.eq_ignore_ascii_case(part))
                .then(|| file_name.to_owned())
        })?;
        path.push(found);
    }
    Some(path)
}

// ---------------------------------------------------------------------------------------------
// TZif (RFC 8536) versions 1–3

#[derive(Debug, PartialEq, Eq)]
enum TzifError {
    Invalid,
    LeapSeconds,
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], TzifError> {
        let end = self.pos.checked_add(n).ok_or(TzifError::Invalid)?;
        let slice = self.bytes.get(self.pos..end).ok_or(TzifError::Invalid)?;
        self.pos = end;
        Ok(slice)
    }
    fn u32(&mut self) -> Result<u32, TzifError> {
        let b = <[u8; 4]>::try_from(self.take(4)?).map_err(|_| TzifError::Invalid)?;
        Ok(u32::from_be_bytes(b))
    }
    fn i32(&mut self) -> Result<i32, TzifError> {
        let b = <[u8; 4]>::try_from(self.take(4)?).map_err(|_| TzifError::Invalid)?;
        Ok(i32::from_be_bytes(b))
    }
    fn i64(&mut self) -> Result<i64, TzifError> {
        let b = <[u8; 8]>::try_from(self.take(8)?).map_err(|_| TzifError::Invalid)?;
        Ok(i64::from_be_bytes(b))
    }
    fn u8(&mut self) -> Result<u8, TzifError> {
        Ok(*self.take(1)?.first().ok_or(TzifError::Invalid)?)
    }
}

struct Header {
    version: u8,
    isutcnt: usize,
    isstdcnt: usize,
    leapcnt: usize,
    timecnt: usize,
    typecnt: usize,
    charcnt: usize,
}

fn header(r: &mut Reader<'_>) -> Result<Header, TzifError> {
    if r.take(4)? != b"TZif" {
        return Err(TzifError::Invalid);
    }
    let version = r.u8()?;
    r.take(15)?;
    let mut count = || -> Result<usize, TzifError> {
        usize::try_from(r.u32()?).map_err(|_| TzifError::Invalid)
    };
    let h = Header {
        version,
        isutcnt: count()?,
        isstdcnt: count()?,
        leapcnt: count()?,
        timecnt: count()?,
        typecnt: count()?,
        charcnt: count()?,
    };
    // RFC 8536 limits: at least one type, at most 256 (indexes are one byte).
    if h.typecnt == 0 || h.typecnt > 256 {
        return Err(TzifError::Invalid);
    }
    Ok(h)
}

/// Parses a TZif file: the 64-bit data block when present (version 2+), else the 32-bit
/// one, and the POSIX footer.
fn parse_tzif(bytes: &[u8]) -> Result<Zone, TzifError> {
    let mut r = Reader { bytes, pos: 0 };
    let h1 = header(&mut r)?;
    let (h, time_size) = if h1.version >= b'2' {
        // Skip the version 1 block: its 32-bit data is superseded.
        let v1_len = [
            h1.timecnt.checked_mul(5),
            h1.typecnt.checked_mul(6),
            Some(h1.charcnt),
            h1.leapcnt.checked_mul(8),
            Some(h1.isstdcnt),
            Some(h1.isutcnt),
        ]
        .into_iter()
        .try_fold(0usize, |acc, x| acc.checked_add(x?))
        .ok_or(TzifError::Invalid)?;
        r.take(v1_len)?;
        (header(&mut r)?, 8)
    } else {
        (h1, 4)
    };
    if h.leapcnt > 0 {
        return Err(TzifError::LeapSeconds);
    }
    let mut times = Vec::with_capacity(h.timecnt.min(4096));
    for _ in 0..h.timecnt {
        let t = if time_size == 8 {
            r.i64()?
        } else {
            i64::from(r.i32()?)
        };
        if times.last().is_some_and(|&last| t <= last) {
            return Err(TzifError::Invalid);
        }
        times.push(t);
    }
    let mut transitions = Vec::with_capacity(times.len());
    for t in times {
        let ty = usize::from(r.u8()?);
        if ty >= h.typecnt {
            return Err(TzifError::Invalid);
        }
        transitions.push((t, ty));
    }
    let mut types = Vec::with_capacity(h.typecnt);
    for _ in 0..h.typecnt {
        let utoff = i64::from(r.i32()?);
        let is_dst = r.u8()? != 0;
        let _abbreviation_index = r.u8()?;
        // RFC 8536: -2^31 is not a valid offset; tzcode also bounds it.
        if utoff == i64::from(i32::MIN) {
            return Err(TzifError::Invalid);
        }
        types.push(LocalType { utoff, is_dst });
    }
    r.take(h.charcnt)?;
    r.take(h.isstdcnt)?;
    r.take(h.isutcnt)?;
    let mut rule = None;
    if h.version >= b'2' {
        let rest = bytes.get(r.pos..).unwrap_or(&[]);
        if let Some(body) = rest.strip_prefix(b"\n")
            && let Some(end) = body.iter().position(|&b| b == b'\n')
            && end > 0
            && let Some(posix) = body.get(..end).and_then(parse_posix)
        {
            // tzcode drops trailing no-op transitions before extending with the rule.
            while let [.., (_, before), (_, last)] = transitions.as_slice()
                && before == last
            {
                transitions.pop();
            }
            rule = match posix {
                Posix::Dst(rule) => Some(rule),
                // A fixed footer adds no transition; perpetual daylight time after the
                // table would add one type and no transition either.
                Posix::Fixed { .. } | Posix::AlwaysDst { .. } => None,
            };
        }
    }
    let default_type = default_type(&transitions, &types);
    Ok(Zone {
        transitions,
        types,
        default_type,
        rule,
    })
}

/// tzcode's inference of the type before the first transition.
fn default_type(transitions: &[(i64, usize)], types: &[LocalType]) -> usize {
    let is_dst = |i: usize| types.get(i).is_some_and(|t| t.is_dst);
    // Type 0, if no transition uses it.
    if !transitions.iter().any(|&(_, ty)| ty == 0) {
        return 0;
    }
    // If the first transition is to daylight time: the closest standard type below it.
    if let Some(&(_, first)) = transitions.first()
        && is_dst(first)
        && let Some(i) = (0..first).rev().find(|&i| !is_dst(i))
    {
        return i;
    }
    lowest_standard_type(types)
}

/// The lowest-numbered standard-time type, else type 0.
fn lowest_standard_type(types: &[LocalType]) -> usize {
    types.iter().position(|t| !t.is_dst).unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// POSIX TZ strings (tzcode's `tzparse`, with PG's allowance of an empty standard name)

struct Posixer<'a> {
    s: &'a [u8],
    i: usize,
}

impl Posixer<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn done(&self) -> bool {
        self.i >= self.s.len()
    }
    /// A zone abbreviation: `<…>` quoted, or a run of characters that are not digits,
    /// `,`, `-` or `+`. Returns its length.
    fn name(&mut self) -> Option<usize> {
        if self.peek() == Some(b'<') {
            self.i += 1;
            let start = self.i;
            while self.peek()? != b'>' {
                self.i += 1;
            }
            let len = self.i - start;
            self.i += 1;
            return Some(len);
        }
        let start = self.i;
        while let Some(c) = self.peek() {
            if c.is_ascii_digit() || matches!(c, b',' | b'-' | b'+') {
                break;
            }
            self.i += 1;
        }
        Some(self.i - start)
    }
    fn num(&mut self, min: i64, max: i64) -> Option<i64> {
        let c = self.peek()?;
        if !c.is_ascii_digit() {
            return None;
        }
        let mut n: i64 = 0;
        while let Some(c) = self.peek().filter(u8::is_ascii_digit) {
            n = n * 10 + i64::from(c - b'0');
            if n > max {
                return None;
            }
            self.i += 1;
        }
        (n >= min).then_some(n)
    }
    /// `hh[:mm[:ss]]`, hours up to 167 (tzcode's extension).
    fn secs(&mut self) -> Option<i64> {
        let mut secs = self.num(0, 24 * 7 - 1)? * 3600;
        if self.peek() == Some(b':') {
            self.i += 1;
            secs += self.num(0, 59)? * 60;
            if self.peek() == Some(b':') {
                self.i += 1;
                secs += self.num(0, 60)?;
            }
        }
        Some(secs)
    }
    /// `[+-]hh[:mm[:ss]]` (POSIX sign: positive is west).
    fn offset(&mut self) -> Option<i64> {
        let neg = match self.peek() {
            Some(b'-') => {
                self.i += 1;
                true
            }
            Some(b'+') => {
                self.i += 1;
                false
            }
            _ => false,
        };
        let secs = self.secs()?;
        Some(if neg { -secs } else { secs })
    }
    fn rule_point(&mut self) -> Option<RulePoint> {
        let date = match self.peek()? {
            b'J' => {
                self.i += 1;
                RuleDate::Julian(self.num(1, 365)?)
            }
            b'M' => {
                self.i += 1;
                let month = self.num(1, 12)?;
                (self.peek()? == b'.').then_some(())?;
                self.i += 1;
                let week = self.num(1, 5)?;
                (self.peek()? == b'.').then_some(())?;
                self.i += 1;
                let day = self.num(0, 6)?;
                RuleDate::MonthWeekDay { month, week, day }
            }
            c if c.is_ascii_digit() => RuleDate::DayOfYear(self.num(0, 365)?),
            _ => return None,
        };
        let time = if self.peek() == Some(b'/') {
            self.i += 1;
            self.offset()?
        } else {
            2 * 3600
        };
        Some(RulePoint { date, time })
    }
}

/// PG's default rule for a POSIX string with a daylight name but no rule (US rules; PG does
/// not read `posixrules`).
const DEFAULT_RULE: &[u8] = b",M3.2.0,M11.1.0";

fn parse_posix(s: &[u8]) -> Option<Posix> {
    let mut p = Posixer { s, i: 0 };
    p.name()?;
    if p.done() {
        return None;
    }
    let std_west = p.offset()?;
    if p.done() {
        return Some(Posix::Fixed { west: std_west });
    }
    if p.name()? == 0 {
        return None;
    }
    let dst_west = match p.peek() {
        None | Some(b',' | b';') => std_west - 3600,
        Some(_) => p.offset()?,
    };
    let rest: Vec<u8> = if p.done() {
        DEFAULT_RULE.to_vec()
    } else {
        p.s.get(p.i..)?.to_vec()
    };
    let mut q = Posixer { s: &rest, i: 0 };
    if !matches!(q.peek()?, b',' | b';') {
        return None;
    }
    q.i += 1;
    let start = q.rule_point()?;
    if q.peek()? != b',' {
        return None;
    }
    q.i += 1;
    let end = q.rule_point()?;
    if !q.done() {
        return None;
    }
    let rule = Rule {
        std_west,
        dst_west,
        start,
        end,
    };
    // tzcode adds a year's transitions only when daylight time neither never ends nor
    // covers the whole year; the rule is the same every year, so one leap and one common
    // year decide it.
    if rule.year_transitions(2000).is_none() && rule.year_transitions(2001).is_none() {
        return Some(Posix::AlwaysDst { dst_west });
    }
    Some(Posix::Dst(rule))
}

impl Rule {
    /// tzcode's `transtime`: seconds from January 1 00:00 UTC of `year` to the rule point,
    /// the point's local time being `west` seconds behind UTC.
    fn transtime(year: i64, point: &RulePoint, west: i64) -> i64 {
        let leap = days_in_month(year, 2) == 29;
        let day = match point.date {
            RuleDate::Julian(n) => (n - 1) + i64::from(leap && n >= 60),
            RuleDate::DayOfYear(n) => n,
            RuleDate::MonthWeekDay { month, week, day } => {
                let first = days_from_civil(year, month, 1);
                // 1970-01-01 was a Thursday (4).
                let first_dow = (first + 4).rem_euclid(7);
                let mut d = (day - first_dow).rem_euclid(7);
                for _ in 1..week {
                    if d + 7 >= days_in_month(year, month) {
                        break;
                    }
                    d += 7;
                }
                first - days_from_civil(year, 1, 1) + d
            }
        };
        day * SECS_PER_DAY + point.time + west
    }

    /// The year's two transitions (Unix seconds, and whether each starts daylight time), in
    /// order, or `None` when tzcode would add none for the year.
    fn year_transitions(&self, year: i64) -> Option<[(i64, bool); 2]> {
        let jan_first = days_from_civil(year, 1, 1) * SECS_PER_DAY;
        let year_secs = if days_in_month(year, 2) == 29 {
            366
        } else {
            365
        } * SECS_PER_DAY;
        let start = Rule::transtime(year, &self.start, self.std_west);
        let end = Rule::transtime(year, &self.end, self.dst_west);
        let reversed = end < start;
        let (first, second) = if reversed { (end, start) } else { (start, end) };
        if reversed
            || (first < second && second - first < year_secs + (self.std_west - self.dst_west))
        {
            Some([
                (jan_first + first, !reversed),
                (jan_first + second, reversed),
            ])
        } else {
            None
        }
    }

    /// Rule transitions of the years around `t`, in order.
    fn transitions_near(&self, t: i64) -> Vec<(i64, bool)> {
        let year = super::values::civil_from_days(t.div_euclid(SECS_PER_DAY)).0;
        let mut out = Vec::with_capacity(8);
        for y in year - 1..=year + 2 {
            if let Some(pair) = self.year_transitions(y) {
                out.extend(pair);
            }
        }
        out
    }

    fn local_type(&self, dst: bool) -> LocalType {
        LocalType {
            utoff: -(if dst { self.dst_west } else { self.std_west }),
            is_dst: dst,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Conversions

/// What `pg_next_dst_boundary` reports.
enum Boundary {
    /// No transition after the instant: one type from then on.
    None(LocalType),
    Next {
        before: LocalType,
        at: i64,
        after: LocalType,
    },
}

impl Zone {
    fn from_posix(posix: Posix) -> Zone {
        let (types, rule) = match posix {
            Posix::Fixed { west } => (
                vec![LocalType {
                    utoff: -west,
                    is_dst: false,
                }],
                None,
            ),
            Posix::AlwaysDst { dst_west } => (
                vec![LocalType {
                    utoff: -dst_west,
                    is_dst: true,
                }],
                None,
            ),
            Posix::Dst(rule) => (
                vec![rule.local_type(false), rule.local_type(true)],
                Some(rule),
            ),
        };
        Zone {
            transitions: Vec::new(),
            types,
            default_type: 0,
            rule,
        }
    }

    fn ty(&self, i: usize) -> LocalType {
        self.types.get(i).copied().unwrap_or(LocalType {
            utoff: 0,
            is_dst: false,
        })
    }

    /// The rule transitions near `t` that come after the explicit table.
    fn rule_transitions(&self, rule: &Rule, t: i64) -> Vec<(i64, LocalType)> {
        let after = self.transitions.last().map(|&(at, _)| at);
        rule.transitions_near(t)
            .into_iter()
            .filter(|&(at, _)| after.is_none_or(|last| at > last))
            .map(|(at, dst)| (at, rule.local_type(dst)))
            .collect()
    }

    /// tzcode's `localsub`: the local type in effect at Unix second `t`.
    fn type_at(&self, t: i64) -> LocalType {
        let Some(&(last_at, last_ty)) = self.transitions.last() else {
            return match &self.rule {
                Some(rule) => self
                    .rule_transitions(rule, t)
                    .into_iter()
                    .rev()
                    .find(|&(at, _)| at <= t)
                    .map_or_else(|| rule.local_type(false), |(_, ty)| ty),
                None => self.ty(self.default_type),
            };
        };
        if t >= last_at {
            if let Some(rule) = &self.rule
                && let Some((_, ty)) = self
                    .rule_transitions(rule, t)
                    .into_iter()
                    .rev()
                    .find(|&(at, _)| at <= t)
            {
                return ty;
            }
            return self.ty(last_ty);
        }
        let idx = self.transitions.partition_point(|&(at, _)| at <= t);
        match idx.checked_sub(1).and_then(|i| self.transitions.get(i)) {
            Some(&(_, ty)) => self.ty(ty),
            None => self.ty(self.default_type),
        }
    }

    /// PG's `pg_next_dst_boundary`: the first transition strictly after `t`.
    fn next_boundary(&self, t: i64) -> Boundary {
        let from_rule = |rule: &Rule| {
            let before = self.type_at(t);
            match self
                .rule_transitions(rule, t)
                .into_iter()
                .find(|&(at, _)| at > t)
            {
                Some((at, after)) => Boundary::Next { before, at, after },
                None => Boundary::None(before),
            }
        };
        let (Some(&(first_at, first_ty)), Some(&(last_at, last_ty))) =
            (self.transitions.first(), self.transitions.last())
        else {
            return match &self.rule {
                Some(rule) => from_rule(rule),
                None => Boundary::None(self.ty(lowest_standard_type(&self.types))),
            };
        };
        if t >= last_at {
            return match &self.rule {
                Some(rule) => from_rule(rule),
                None => Boundary::None(self.ty(last_ty)),
            };
        }
        if t < first_at {
            return Boundary::Next {
                before: self.ty(lowest_standard_type(&self.types)),
                at: first_at,
                after: self.ty(first_ty),
            };
        }
        let idx = self.transitions.partition_point(|&(at, _)| at <= t);
        match (
            idx.checked_sub(1).and_then(|i| self.transitions.get(i)),
            self.transitions.get(idx),
        ) {
            (Some(&(_, before)), Some(&(at, after))) => Boundary::Next {
                before: self.ty(before),
                at,
                after: self.ty(after),
            },
            _ => Boundary::None(self.ty(last_ty)),
        }
    }

    /// PG's `DetermineTimeZoneOffsetInternal`: the UT offset (seconds east) of local wall
    /// time `local` (whole seconds, as if UTC).
    fn local_offset(&self, local: i64) -> i64 {
        // Zones' offsets are under 24 h and their transitions over 48 h apart, so the
        // boundary after "a day before" is the only one that can matter.
        match self.next_boundary(local - SECS_PER_DAY) {
            Boundary::None(ty) => ty.utoff,
            Boundary::Next { before, at, after } => {
                let before_time = local - before.utoff;
                let after_time = local - after.utoff;
                if before_time < at && after_time < at {
                    before.utoff
                } else if before_time >= at && after_time >= at {
                    after.utoff
                } else if before_time > after_time {
                    // Skipped (spring forward): read as before the transition.
                    before.utoff
                } else {
                    // Repeated (fall back): read as after it.
                    after.utoff
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone(name: &str) -> TimeZone {
        lookup(name).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    #[test]
    fn posix_strings() {
        assert_eq!(parse_posix(b"UTC+3"), Some(Posix::Fixed { west: 3 * 3600 }));
        assert_eq!(
            parse_posix(b"+05:30"),
            Some(Posix::Fixed {
                west: 5 * 3600 + 1800
            })
        );
        assert_eq!(
            parse_posix(b"<+03>-3"),
            Some(Posix::Fixed { west: -3 * 3600 })
        );
        assert_eq!(parse_posix(b"-03"), Some(Posix::Fixed { west: -3 * 3600 }));
        assert!(matches!(
            parse_posix(b"EST5EDT,M3.2.0,M11.1.0"),
            Some(Posix::Dst(_))
        ));
        assert!(matches!(parse_posix(b"AAA3BBB"), Some(Posix::Dst(_))));
        assert!(matches!(
            parse_posix(b"<+1245>-12:45<+1345>,M9.5.0/2:45,M4.1.0/3:45"),
            Some(Posix::Dst(_))
        ));
        assert!(parse_posix(b"EST5EDT4,0/0,J365/25").is_some());
        for bad in [
            &b""[..],
            b"UTC",
            b"FOO",
            b"<+03",
            b"UTC+",
            b"UTC+3,",
            b"AAA3BBB,M3.2.0",
            b"AAA3BBB,M13.1.0,M11.1.0",
            b"AAA3BBB,M3.2.0,M11.1.0x",
            b"UTC+999",
            b"AAA3BBB,J0,J5",
        ] {
            assert!(
                parse_posix(bad).is_none(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn tzif_parser_is_total() {
        let ny = std::fs::read(zone_dir().join("America/New_York"));
        let Ok(ny) = ny else {
            return;
        };
        assert!(parse_tzif(&ny).is_ok());
        // Every truncation and many single-byte corruptions are errors or zones, never panics.
        for cut in 0..ny.len() {
            let _ = parse_tzif(ny.get(..cut).unwrap_or(&[]));
        }
        for i in (0..ny.len()).step_by(7) {
            let mut bad = ny.clone();
            if let Some(b) = bad.get_mut(i) {
                *b ^= 0xA5;
            }
            let _ = parse_tzif(&bad);
        }
        assert_eq!(parse_tzif(b"TZif"), Err(TzifError::Invalid));
    }

    #[test]
    fn lookup_follows_pg_order() {
        if !zone_dir().join("America/New_York").exists() {
            return;
        }
        assert_eq!(zone("CET"), TimeZone::Fixed(3600));
        assert_eq!(zone("utc"), TimeZone::Fixed(0));
        assert!(matches!(zone("america/new_york"), TimeZone::Zone(_)));
        assert!(matches!(zone("+05:30"), TimeZone::Zone(_)));
        for bad in [
            "America",
            "../zoneinfo/UTC",
            "America/../UTC",
            "foo",
            "/etc/passwd",
            "",
        ] {
            assert_eq!(
                lookup(bad),
                Err(ZoneError::NotRecognized(bad.to_owned())),
                "{bad}"
            );
        }
        assert!(matches!(
            lookup("MSK"),
            Err(ZoneError::DynamicAbbreviation(_))
        ));
        if zone_dir().join("right/UTC").exists() {
            assert!(matches!(
                lookup("right/UTC"),
                Err(ZoneError::LeapSeconds(_))
            ));
        }
    }

    #[test]
    fn conversions_around_transitions() {
        if !zone_dir().join("America/New_York").exists() {
            return;
        }
        let ny = zone("America/New_York");
        let ts = |s: &str| super::super::values::parse_timestamp(s, false).expect("timestamp");
        // Spring forward 2024-03-10 02:00 → 03:00: 02:30 does not exist, read as EST.
        assert_eq!(
            ny.to_utc(ts("2024-03-10 02:30")),
            Ok(ts("2024-03-10 07:30"))
        );
        // Fall back 2024-11-03 02:00 → 01:00: 01:30 is ambiguous, read as EST (after).
        assert_eq!(
            ny.to_utc(ts("2024-11-03 01:30")),
            Ok(ts("2024-11-03 06:30"))
        );
        assert_eq!(
            ny.to_local(ts("2024-11-03 05:30")),
            Ok(ts("2024-11-03 01:30"))
        );
        assert_eq!(
            ny.to_local(ts("2024-11-03 06:30")),
            Ok(ts("2024-11-03 01:30"))
        );
        // Far future, from the footer rule; LMT before 1883.
        assert_eq!(
            ny.to_local(ts("2100-07-01 12:00")),
            Ok(ts("2100-07-01 08:00"))
        );
        assert_eq!(
            ny.to_local(ts("1800-01-01 12:00")),
            Ok(ts("1800-01-01 07:03:58"))
        );
        assert_eq!(ny.to_local(i64::MAX), Ok(i64::MAX));
    }
}
