//! Cron schedules in a time zone: when a policy's jobs fire, and whether one was missed while
//! nothing was running.
//!
//! Expressions are the usual five fields — minute, hour, day of month, month, day of week — or
//! six with seconds first. Day of week counts as in Unix cron: 0 or 7 is Sunday, 1 Monday … 6
//! Saturday, names (`sun`, `mon-fri`) work too. `*`, lists (`1,15`), ranges (`1-5`) and steps
//! (`*/15`, `0-30/10`) work in every field. When both day of month and day of week are
//! restricted, a time must match both. A time that does not exist in the zone (in a daylight-saving
//! gap) fires as far after the gap as it was into it, so the day's run is not lost.

use std::str::FromStr;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use time::OffsetDateTime;

#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("cron expression {expr:?}: {reason}")]
    Cron { expr: String, reason: String },
    #[error("time zone {name:?} is unknown (use an IANA name such as \"Europe/Berlin\" or \"UTC\")")]
    TimeZone { name: String },
}

/// A parsed cron expression and the time zone it is read in.
#[derive(Clone, Debug)]
pub struct Cron {
    expr: String,
    zone_name: String,
    schedule: jiff_cron::Schedule,
    zone: TimeZone,
}

const DAY_NAMES: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/// Unix day of week (`0`-`7` or a name) → 0..=6, Sunday 0.
fn unix_day(s: &str) -> Option<u32> {
    let lower = s.to_ascii_lowercase();
    if let Some(i) = DAY_NAMES.iter().position(|d| lower == *d || (lower.len() > 3 && lower.starts_with(d))) {
        return Some(i as u32);
    }
    match s.parse::<u32>().ok()? {
        7 => Some(0),
        n @ 0..=6 => Some(n),
        _ => None,
    }
}

/// The day-of-week field in Unix terms, rewritten as the explicit list of days the schedule
/// library expects (1 = Sunday … 7 = Saturday).
fn day_of_week_field(field: &str) -> Result<String, String> {
    if field == "*" || field == "?" {
        return Ok("*".into());
    }
    let mut days = [false; 7];
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (r, s.parse::<u32>().map_err(|_| format!("bad step in day of week {item:?}"))?),
            None => (item, 1),
        };
        if step == 0 {
            return Err(format!("step 0 in day of week {item:?}"));
        }
        let (lo, hi) = if range == "*" {
            (0, 6)
        } else if let Some((a, b)) = range.split_once('-') {
            let a = unix_day(a).ok_or_else(|| format!("bad day of week {a:?} (0-7 or sun-sat)"))?;
            // `5-7` means Friday to Sunday: 7 closes the week here rather than wrapping to 0.
            let b = if b == "7" {
                7
            } else {
                unix_day(b).ok_or_else(|| format!("bad day of week {b:?} (0-7 or sun-sat)"))?
            };
            if a > b {
                return Err(format!("day of week range {range:?} runs backwards"));
            }
            (a, b)
        } else {
            let d = unix_day(range).ok_or_else(|| format!("bad day of week {range:?} (0-7 or sun-sat)"))?;
            (d, if step > 1 { 6 } else { d })
        };
        let mut d = lo;
        while d <= hi {
            days[(d % 7) as usize] = true;
            d += step;
        }
    }
    Ok(days.iter().enumerate().filter(|(_, on)| **on).map(|(i, _)| (i + 1).to_string()).collect::<Vec<_>>().join(","))
}

fn to_timestamp(t: OffsetDateTime) -> Timestamp {
    Timestamp::from_nanosecond(t.unix_timestamp_nanos()).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn to_offset_date_time(t: Timestamp) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(t.as_nanosecond()).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

impl Cron {
    /// Parse `expr` (five fields, or six with seconds first) read in the IANA zone `zone`
    /// (`None`: the system's local zone).
    pub fn parse(expr: &str, zone: Option<&str>) -> Result<Self, ScheduleError> {
        let bad = |reason: String| ScheduleError::Cron { expr: expr.to_string(), reason };
        let fields: Vec<&str> = expr.split_whitespace().collect();
        let mut fields: Vec<String> = match fields.len() {
            5 => std::iter::once("0").chain(fields.iter().copied()).map(str::to_string).collect(),
            6 => fields.iter().map(|f| f.to_string()).collect(),
            n => {
                return Err(bad(format!(
                    "{n} fields; give five (minute hour day-of-month month day-of-week) or six (seconds first)"
                )));
            }
        };
        fields[5] = day_of_week_field(&fields[5]).map_err(bad)?;
        // The library's message quotes its own rewritten expression with a caret: keep its
        // explanation only.
        let schedule = jiff_cron::Schedule::from_str(&fields.join(" ")).map_err(|e| {
            let text = e.to_string();
            bad(text
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty() && l.trim() != "^")
                .unwrap_or(&text)
                .trim()
                .to_string())
        })?;
        let (zone, zone_name) = match zone {
            Some(name) => {
                (TimeZone::get(name).map_err(|_| ScheduleError::TimeZone { name: name.to_string() })?, name.to_string())
            }
            None => {
                let tz = TimeZone::system();
                let name = tz.iana_name().unwrap_or("local").to_string();
                (tz, name)
            }
        };
        let cron = Self { expr: expr.to_string(), zone_name, schedule, zone };
        if cron.next_after(OffsetDateTime::now_utc()).is_none() {
            return Err(bad("it never fires".into()));
        }
        Ok(cron)
    }

    pub fn expr(&self) -> &str {
        &self.expr
    }

    pub fn zone_name(&self) -> &str {
        &self.zone_name
    }

    /// The first time the schedule fires strictly after `t`.
    pub fn next_after(&self, t: OffsetDateTime) -> Option<OffsetDateTime> {
        let zoned = to_timestamp(t).to_zoned(self.zone.clone());
        self.schedule.after(zoned).next().map(|z| to_offset_date_time(z.timestamp()))
    }

    /// Whether the schedule should have fired in `(since, now]`: a run missed while gitvault
    /// was not serving.
    pub fn missed(&self, since: OffsetDateTime, now: OffsetDateTime) -> Option<OffsetDateTime> {
        self.next_after(since).filter(|&next| next <= now)
    }
}

impl std::fmt::Display for Cron {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.expr, self.zone_name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn next(expr: &str, zone: &str, after: OffsetDateTime) -> OffsetDateTime {
        Cron::parse(expr, Some(zone)).expect("parses").next_after(after).expect("fires")
    }

    #[test]
    fn day_of_week_counts_as_in_unix_cron() {
        // 2026-11-29 is a Sunday.
        let sat = datetime!(2026-11-28 12:00 UTC);
        assert_eq!(next("0 2 * * 0", "UTC", sat), datetime!(2026-11-29 02:00 UTC));
        assert_eq!(next("0 2 * * 7", "UTC", sat), datetime!(2026-11-29 02:00 UTC));
        assert_eq!(next("0 2 * * SUN", "UTC", sat), datetime!(2026-11-29 02:00 UTC));
        assert_eq!(next("0 2 * * 1", "UTC", sat), datetime!(2026-11-30 02:00 UTC), "1 is Monday");
        assert_eq!(next("0 2 * * mon-fri", "UTC", sat), datetime!(2026-11-30 02:00 UTC));
        assert_eq!(next("0 2 * * 1-5", "UTC", datetime!(2026-12-04 03:00 UTC)), datetime!(2026-12-07 02:00 UTC));
        assert_eq!(next("0 2 * * 5-7", "UTC", datetime!(2026-11-29 03:00 UTC)), datetime!(2026-12-04 02:00 UTC));
        assert_eq!(day_of_week_field("*/2").expect("ok"), "1,3,5,7", "Sun, Tue, Thu, Sat");
        assert!(Cron::parse("0 2 * * 8", Some("UTC")).is_err());
    }

    #[test]
    fn five_fields_fire_on_the_minute_and_six_on_the_second() {
        let t = datetime!(2026-11-29 10:17:30 UTC);
        assert_eq!(next("*/15 * * * *", "UTC", t), datetime!(2026-11-29 10:30 UTC));
        assert_eq!(next("*/5 * * * * *", "UTC", t), datetime!(2026-11-29 10:17:35 UTC));
        assert_eq!(next("0 3 1 * *", "UTC", t), datetime!(2026-12-01 03:00 UTC), "monthly");
    }

    #[test]
    fn times_are_read_in_the_zone() {
        let t = datetime!(2026-11-29 00:00 UTC);
        // Berlin is UTC+1 in winter: 02:00 there is 01:00 UTC.
        assert_eq!(next("0 2 * * *", "Europe/Berlin", t), datetime!(2026-11-29 01:00 UTC));
        // The spring-forward gap (02:00-03:00 on 2027-03-28 in Berlin) has no 02:30: it fires
        // an hour later by the clock (03:30 CEST), the day's run is not lost.
        let fired = next("30 2 * * *", "Europe/Berlin", datetime!(2027-03-27 12:00 UTC));
        assert_eq!(fired, datetime!(2027-03-28 01:30 UTC));
    }

    #[test]
    fn a_missed_fire_is_found_once() {
        let c = Cron::parse("0 * * * *", Some("UTC")).expect("parses");
        let last = datetime!(2026-11-29 08:00 UTC);
        assert_eq!(c.missed(last, datetime!(2026-11-29 08:59 UTC)), None);
        assert_eq!(c.missed(last, datetime!(2026-11-29 11:30 UTC)), Some(datetime!(2026-11-29 09:00 UTC)));
    }

    #[test]
    fn bad_expressions_and_zones_say_what_is_wrong() {
        let e = Cron::parse("0 2 * *", Some("UTC")).expect_err("four fields");
        assert!(e.to_string().contains("4 fields"), "{e}");
        let e = Cron::parse("0 25 * * *", Some("UTC")).expect_err("hour 25");
        assert!(e.to_string().contains("0 25 * * *"), "{e}");
        let e = Cron::parse("0 2 * * *", Some("Mars/Olympus")).expect_err("zone");
        assert!(e.to_string().contains("Mars/Olympus"), "{e}");
    }
}

/// A short delay: a number and a unit, `s`, `m` (minutes) or `h` — `30s`, `5m`, `1h`.
pub fn parse_delay(text: &str) -> Result<std::time::Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: u64 = n.parse().map_err(|_| format!("{text:?}: give a number and a unit (s, m, h), e.g. 30s or 5m"))?;
    let secs = match unit.trim() {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("{text:?}: the unit must be s, m or h (e.g. 30s, 5m, 1h)")),
    };
    Ok(std::time::Duration::from_secs(secs))
}

#[cfg(test)]
mod delay_tests {
    #[test]
    fn delays_take_seconds_minutes_and_hours() {
        assert_eq!(super::parse_delay("30s"), Ok(std::time::Duration::from_secs(30)));
        assert_eq!(super::parse_delay("5m"), Ok(std::time::Duration::from_secs(300)));
        assert_eq!(super::parse_delay("2h"), Ok(std::time::Duration::from_secs(7200)));
        assert!(super::parse_delay("5d").is_err());
        assert!(super::parse_delay("m").is_err());
    }
}
