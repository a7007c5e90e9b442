//! How far two counts may be apart and still be "equal": `--tolerance 3` (absolute) or
//! `--tolerance 0.5%` (relative to the expected count), for sources that are approximate.

use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Tolerance {
    /// At most this many apart.
    Absolute(u64),
    /// At most this share of the expected count apart (0.005 for 0.5%).
    Relative(f64),
}

impl Default for Tolerance {
    fn default() -> Self {
        Tolerance::Absolute(0)
    }
}

impl Tolerance {
    /// Whether `actual` is within the tolerance of `expected`.
    pub fn accepts(&self, expected: u64, actual: u64) -> bool {
        let d = expected.abs_diff(actual);
        match *self {
            Tolerance::Absolute(t) => d <= t,
            Tolerance::Relative(r) => (d as f64) <= r * expected as f64,
        }
    }

    pub fn is_exact(&self) -> bool {
        matches!(self, Tolerance::Absolute(0))
            || matches!(self, Tolerance::Relative(r) if *r == 0.0)
    }
}

impl std::fmt::Display for Tolerance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            _ if self.is_exact() => write!(f, "exact"),
            Tolerance::Absolute(t) => write!(f, "±{t}"),
            Tolerance::Relative(r) => write!(f, "±{}%", r * 100.0),
        }
    }
}

impl FromStr for Tolerance {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let bad = || {
            format!(
                "`{s}` is neither a count (`3`: at most 3 apart) nor a percentage (`0.5%`: at most 0.5% of the expected count apart)"
            )
        };
        if let Some(p) = t.strip_suffix('%') {
            let v: f64 = p.trim().parse().map_err(|_| bad())?;
            if !v.is_finite() || !(0.0..=100.0).contains(&v) {
                return Err(format!("`{s}`: a percentage must be between 0% and 100%"));
            }
            return Ok(Tolerance::Relative(v / 100.0));
        }
        t.parse::<u64>().map(Tolerance::Absolute).map_err(|_| bad())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_counts_and_percentages() {
        assert_eq!("3".parse::<Tolerance>(), Ok(Tolerance::Absolute(3)));
        assert_eq!("0.5%".parse::<Tolerance>(), Ok(Tolerance::Relative(0.005)));
        for bad in ["", "-1", "1.5", "x%", "200%", "-3%", "three"] {
            assert!(bad.parse::<Tolerance>().is_err(), "{bad}");
        }
    }

    #[test]
    fn accepts_within_the_bound() {
        let t = Tolerance::Relative(0.01);
        assert!(t.accepts(1000, 1010) && t.accepts(1000, 990) && !t.accepts(1000, 1011));
        assert!(t.accepts(0, 0) && !t.accepts(0, 1));
        let t = Tolerance::Absolute(3);
        assert!(t.accepts(10, 13) && !t.accepts(10, 14) && t.accepts(3, 0));
        assert!(Tolerance::default().accepts(5, 5) && !Tolerance::default().accepts(5, 6));
    }
}
