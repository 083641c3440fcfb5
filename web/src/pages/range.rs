//! The time range and environment every analytics view is for, kept in the URL (`range=24h|7d|
//! 30d|90d|custom`, `from_date`/`to_date` as `YYYY-MM-DD` for custom, `env=live|test`), its
//! translation to the analytics API's parameters, and the selector form shown above the charts.

use maud::{html, Markup};

use super::layout::query;
use crate::error::ApiError;

pub const RANGES: [&str; 4] = ["24h", "7d", "30d", "90d"];

/// What the URL asked for, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangeParams {
    pub range: String,
    pub from_date: String,
    pub to_date: String,
    pub env: String,
}

impl RangeParams {
    /// Parses the range fields of `query`, ignoring other fields (pages have their own).
    pub fn parse(q: &str) -> Result<RangeParams, ApiError> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(q)
            .map_err(|_| ApiError::BadRequest("malformed query string".into()))?;
        let mut p = RangeParams {
            range: "24h".into(),
            from_date: String::new(),
            to_date: String::new(),
            env: "live".into(),
        };
        for (k, v) in pairs {
            match k.as_str() {
                "range" if RANGES.contains(&v.as_str()) || v == "custom" => p.range = v,
                "range" => {
                    return Err(ApiError::BadRequest(
                        "range must be 24h, 7d, 30d, 90d or custom".into(),
                    ))
                }
                "from_date" => p.from_date = v,
                "to_date" => p.to_date = v,
                "env" if v == "live" || v == "test" => p.env = v,
                "env" => return Err(ApiError::BadRequest("env must be live or test".into())),
                _ => {}
            }
        }
        if p.range == "custom" {
            let from = day_ms(&p.from_date)?;
            let to = day_ms(&p.to_date)?;
            if to < from {
                return Err(ApiError::BadRequest(
                    "the custom range ends before it starts".into(),
                ));
            }
        }
        Ok(p)
    }

    /// The analytics API's parameters for this range (`to_date` is inclusive: its whole day).
    pub fn api_query(&self, server: Option<u32>) -> String {
        let server = server.map(|s| s.to_string()).unwrap_or_default();
        if self.range == "custom" {
            let from = day_ms(&self.from_date).unwrap_or(0).to_string();
            let to = (day_ms(&self.to_date).unwrap_or(0) + DAY_MS).to_string();
            query(&[
                ("from", &from),
                ("to", &to),
                ("env", &self.env),
                ("server", &server),
            ])
        } else {
            query(&[
                ("range", &self.range),
                ("env", &self.env),
                ("server", &server),
            ])
        }
    }

    /// The range fields as they go back into links (`from_date`/`to_date` only when custom).
    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut v = vec![("range", self.range.clone()), ("env", self.env.clone())];
        if self.range == "custom" {
            v.push(("from_date", self.from_date.clone()));
            v.push(("to_date", self.to_date.clone()));
        }
        v
    }

    /// `k=v&...` of [`RangeParams::pairs`] with `overrides` replacing or adding fields.
    pub fn link(&self, overrides: &[(&'static str, &str)]) -> String {
        let mut v = self.pairs();
        for (k, val) in overrides {
            v.retain(|(n, _)| n != k);
            v.push((k, (*val).to_string()));
        }
        if v.iter().any(|(k, r)| *k == "range" && r != "custom") {
            v.retain(|(k, _)| *k != "from_date" && *k != "to_date");
        }
        let refs: Vec<(&str, &str)> = v.iter().map(|(k, x)| (*k, x.as_str())).collect();
        query(&refs)
    }
}

const DAY_MS: u64 = 86_400_000;

/// `YYYY-MM-DD` to unix milliseconds at 00:00 UTC.
fn day_ms(date: &str) -> Result<u64, ApiError> {
    let bad = || ApiError::BadRequest(format!("`{date}` is not a date (YYYY-MM-DD)"));
    let mut it = date.splitn(3, '-');
    let y: i64 = it.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
    let m: i64 = it.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
    let d: i64 = it.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
    if !(1970..=9999).contains(&y) || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return Err(bad());
    }
    let days = mcp_obs_storage::spans::days_from_civil(y, m as u32, d as u32);
    // 2025-02-31 is not a date (it would silently mean March 3).
    if mcp_obs_storage::spans::civil_from_days(days) != (y, m as u32, d as u32) {
        return Err(bad());
    }
    Ok(days as u64 * DAY_MS)
}

/// The selector: one link per preset range, a custom range form, and the env switch. Every choice
/// is a plain link or GET form, so it works without script and stays in the URL.
pub fn selector(path: &str, p: &RangeParams) -> Markup {
    html! {
        div.toolbar {
            nav.segmented aria-label="Time range" {
                @for r in RANGES {
                    @let href = format!("{path}?{}", p.link(&[("range", r)]));
                    @if p.range == r {
                        a href=(href) aria-current="true" data-range=(r) { (r) }
                    } @else {
                        a href=(href) data-range=(r) { (r) }
                    }
                }
            }
            form.custom method="get" action=(path) {
                input type="hidden" name="range" value="custom";
                input type="hidden" name="env" value=(p.env);
                label { "From " input type="date" name="from_date" value=(p.from_date) required; }
                label { "To " input type="date" name="to_date" value=(p.to_date) required; }
                button type="submit" { "Apply" }
            }
            nav.segmented aria-label="Environment" {
                @for e in ["live", "test"] {
                    @let href = format!("{path}?{}", p.link(&[("env", e)]));
                    @if p.env == e {
                        a href=(href) aria-current="true" { (e) }
                    } @else {
                        a href=(href) { (e) }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_round_trip() {
        assert_eq!(day_ms("1970-01-02").unwrap(), DAY_MS);
        assert_eq!(day_ms("2025-11-26").unwrap(), 1_764_115_200_000);
        assert!(day_ms("2025-13-01").is_err());
        assert!(day_ms("2025-02-31").is_err());
        assert!(day_ms("2024-02-29").is_ok());
        let p = RangeParams::parse("range=7d&env=test&tool=x").unwrap();
        assert_eq!(p.api_query(Some(3)), "range=7d&env=test&server=3");
        assert_eq!(p.link(&[("range", "30d")]), "env=test&range=30d");
        let c = RangeParams::parse("range=custom&from_date=2025-11-01&to_date=2025-11-02").unwrap();
        assert_eq!(
            c.api_query(None),
            "from=1761955200000&to=1762128000000&env=live"
        );
        assert!(RangeParams::parse("range=1y").is_err());
        assert!(
            RangeParams::parse("range=custom&from_date=2025-11-03&to_date=2025-11-02").is_err()
        );
    }
}
