//! Summary statistics of a series' samples.

use serde::Serialize;

/// The summary the table prints and the JSON keeps beside the samples.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Summary {
    pub n: usize,
    pub min: f64,
    pub median: f64,
    /// The 95th percentile (nearest rank) of the values.
    pub p95: f64,
    pub max: f64,
    /// The coefficient of variation (standard deviation ÷ mean) of the per-run medians: how
    /// much runs disagree. `None` with fewer than two runs.
    pub run_cv: Option<f64>,
}

/// The value at quantile `q` (0..=1) of sorted values, nearest rank.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn sorted(v: impl IntoIterator<Item = f64>) -> Vec<f64> {
    let mut v: Vec<f64> = v.into_iter().filter(|x| x.is_finite()).collect();
    v.sort_by(|a, b| a.total_cmp(b));
    v
}

/// The median of some values (the mean of the middle two for an even count).
pub fn median(v: &[f64]) -> f64 {
    let s = sorted(v.iter().copied());
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

/// Summarises samples grouped by run.
pub fn summarize(runs: &[Vec<f64>]) -> Summary {
    let all = sorted(runs.iter().flatten().copied());
    let medians: Vec<f64> = runs
        .iter()
        .filter(|r| !r.is_empty())
        .map(|r| median(r))
        .collect();
    let run_cv = (medians.len() >= 2).then(|| {
        let mean = medians.iter().sum::<f64>() / medians.len() as f64;
        let var =
            medians.iter().map(|m| (m - mean).powi(2)).sum::<f64>() / (medians.len() - 1) as f64;
        if mean == 0.0 {
            0.0
        } else {
            var.sqrt() / mean.abs()
        }
    });
    Summary {
        n: all.len(),
        min: all.first().copied().unwrap_or(f64::NAN),
        median: median(&all),
        p95: quantile(&all, 0.95),
        max: all.last().copied().unwrap_or(f64::NAN),
        run_cv,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_of_known_values() {
        let runs = vec![vec![1.0, 2.0, 3.0], vec![2.0, 3.0, 4.0]];
        let s = summarize(&runs);
        assert_eq!((s.n, s.min, s.max), (6, 1.0, 4.0));
        assert_eq!(s.median, 2.5);
        assert_eq!(s.p95, 4.0);
        // Per-run medians 2 and 3: mean 2.5, sd 0.7071.
        let cv = s.run_cv.unwrap();
        assert!(
            (cv - std::f64::consts::FRAC_1_SQRT_2 / 2.5).abs() < 1e-3,
            "{cv}"
        );
        assert_eq!(summarize(&[vec![5.0]]).run_cv, None);
        let p = quantile(&(1..=100).map(f64::from).collect::<Vec<_>>(), 0.95);
        assert_eq!(p, 95.0);
    }
}
