//! Summaries of repeated measurements: min, median, 95th percentile and max.

use serde::Serialize;

#[derive(Clone, Copy, Debug, Serialize)]
pub struct Summary {
    pub min: f64,
    pub p50: f64,
    pub p95: f64,
    pub max: f64,
}

impl Summary {
    /// Percentiles by nearest rank (the smallest value with at least p% of them at or below
    /// it): with few runs, p95 is the max. `None` without values.
    pub fn of(values: impl IntoIterator<Item = f64>) -> Option<Summary> {
        let mut sorted: Vec<f64> = values.into_iter().collect();
        if sorted.is_empty() {
            return None;
        }
        sorted.sort_by(f64::total_cmp);
        let rank = |p: f64| sorted[((p / 100.0 * sorted.len() as f64).ceil() as usize).max(1) - 1];
        Some(Summary {
            min: sorted[0],
            p50: rank(50.0),
            p95: rank(95.0),
            max: sorted[sorted.len() - 1],
        })
    }

    /// `min / p50 / p95 / max` with `decimals` decimals, for a table cell.
    pub fn cell(&self, decimals: usize) -> String {
        format!(
            "{:.*} / {:.*} / {:.*} / {:.*}",
            decimals, self.min, decimals, self.p50, decimals, self.p95, decimals, self.max
        )
    }
}

#[cfg(test)]
mod tests {
    use super::Summary;

    #[test]
    fn nearest_rank_percentiles_of_ten_values() {
        // Nearest rank by hand: p50 of 1..=10 is the 5th value, p95 the 10th.
        let summary = Summary::of((1..=10).rev().map(f64::from)).expect("ten values");
        assert_eq!(
            (summary.min, summary.p50, summary.p95, summary.max),
            (1.0, 5.0, 10.0, 10.0)
        );
    }

    #[test]
    fn no_values_no_summary() {
        assert!(Summary::of([]).is_none());
    }
}
