//! Window specs and the arithmetic of event-time windows: which windows hold a time, when a window
//! fires, and whether an event is late. Everything is in whole milliseconds and aligned to the epoch.
//!
//! A spec's windows are `[k·slide, k·slide + size)` for every integer `k`; `k` is the *window index*.
//! Panes are the spec's `slide`-wide slices of time (pane `p` = `[p·slide, (p+1)·slide)`), so window `k`
//! covers panes `k ..= k + n − 1` with `n = size / slide`. Tumbling windows are the case `n = 1`.

use crate::timefmt::Millis;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowSpec {
    pub name: String,
    pub size: Millis,
    pub slide: Millis,
}

impl WindowSpec {
    /// Panes per window.
    #[inline]
    pub fn panes(&self) -> i64 {
        self.size / self.slide
    }

    /// The pane holding time `t`.
    #[inline]
    pub fn pane(&self, t: Millis) -> i64 {
        t.div_euclid(self.slide)
    }

    #[inline]
    pub fn start(&self, k: i64) -> Millis {
        k.saturating_mul(self.slide)
    }

    #[inline]
    pub fn end(&self, k: i64) -> Millis {
        self.start(k).saturating_add(self.size)
    }

    /// End of the earliest window of this spec that contains `t`.
    #[inline]
    pub fn first_end(&self, t: Millis) -> Millis {
        self.end(self.pane(t) - self.panes() + 1)
    }

    /// The first window index that has *not* fired under watermark `wm`: window `k` fires once
    /// `wm ≥ end(k) + lateness`. `None` lateness means unbounded: nothing fires before the end.
    pub fn horizon(&self, wm: Millis, lateness: Option<Millis>) -> i64 {
        let Some(lateness) = lateness else {
            return i64::MIN;
        };
        if wm == i64::MIN {
            return i64::MIN;
        }
        // fired ⇔ k·slide ≤ wm − lateness − size
        let limit = (wm as i128) - (lateness as i128) - (self.size as i128);
        let k = (limit.div_euclid(self.slide as i128)) + 1;
        k.clamp(i64::MIN as i128, i64::MAX as i128) as i64
    }
}

/// All window specs of a run, with the lateness rule that spans them.
#[derive(Debug, Clone)]
pub struct Windows {
    pub specs: Vec<WindowSpec>,
    /// `None`: unbounded allowed lateness.
    pub lateness: Option<Millis>,
}

impl Windows {
    /// `E(t)`: the earliest end among all windows containing `t`.
    #[inline]
    pub fn earliest_end(&self, t: Millis) -> Millis {
        self.specs
            .iter()
            .map(|s| s.first_end(t))
            .min()
            .unwrap_or(Millis::MAX)
    }

    /// An event at `t` is late under `wm` when a window containing it has fired.
    #[inline]
    pub fn is_late(&self, t: Millis, wm: Millis) -> bool {
        match self.lateness {
            None => false,
            Some(l) => {
                wm != i64::MIN && (wm as i128) >= (self.earliest_end(t) as i128) + (l as i128)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;

    fn spec(size: i64, slide: i64) -> WindowSpec {
        WindowSpec {
            name: "w".into(),
            size,
            slide,
        }
    }

    #[test]
    fn tumbling_edges() {
        let s = spec(H, H);
        assert_eq!(s.pane(0), 0);
        assert_eq!(s.pane(H - 1), 0);
        assert_eq!(s.pane(H), 1);
        assert_eq!(s.pane(-1), -1);
        assert_eq!(s.first_end(H - 1), H);
        assert_eq!(s.first_end(H), 2 * H);
    }

    #[test]
    fn sliding_first_end() {
        let s = spec(3 * H, H);
        // 02:30 is in windows starting 00:00, 01:00, 02:00; the first ends at 03:00
        assert_eq!(s.first_end(2 * H + H / 2), 3 * H);
        assert_eq!(s.first_end(3 * H), 4 * H);
    }

    #[test]
    fn horizon_matches_fire_rule() {
        let s = spec(3 * H, H);
        let l = 30 * 60_000;
        for wm in [-5 * H, 0, 3 * H + l - 1, 3 * H + l, 7 * H + 12345] {
            let h = s.horizon(wm, Some(l));
            // every k < h fired, k = h did not
            assert!(wm >= s.end(h - 1) + l, "wm {wm} h {h}");
            assert!(wm < s.end(h) + l, "wm {wm} h {h}");
        }
        assert_eq!(s.horizon(i64::MIN, Some(l)), i64::MIN);
        assert_eq!(s.horizon(10 * H, None), i64::MIN);
    }

    #[test]
    fn lateness_boundary() {
        let w = Windows {
            specs: vec![spec(H, H), spec(24 * H, H)],
            lateness: Some(6 * H),
        };
        let t = 10 * H + 5;
        // earliest end is the hourly window's end, 11h
        assert_eq!(w.earliest_end(t), 11 * H);
        assert!(!w.is_late(t, 17 * H - 1));
        assert!(w.is_late(t, 17 * H));
        assert!(!w.is_late(t, i64::MIN));
        let unbounded = Windows {
            lateness: None,
            ..w
        };
        assert!(!unbounded.is_late(t, i64::MAX));
    }
}
