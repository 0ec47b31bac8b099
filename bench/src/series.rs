//! What a workload measures: named metrics, each a series of samples per run.

use crate::stats::{summarize, Summary};
use serde::Serialize;

/// Whether lower or higher values are better.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Better {
    Lower,
    Higher,
}

/// One metric of a workload: e.g. `apply` / `small-files/gzip` in MB/s.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub name: String,
    pub unit: &'static str,
    pub better: Better,
    /// The swept parameter (e.g. chain depth 100) of a metric that is one point of a curve.
    pub x: Option<(&'static str, f64)>,
}

impl Metric {
    pub fn ms(name: impl Into<String>) -> Metric {
        Metric {
            name: name.into(),
            unit: "ms",
            better: Better::Lower,
            x: None,
        }
    }
    pub fn rate(name: impl Into<String>, unit: &'static str) -> Metric {
        Metric {
            name: name.into(),
            unit,
            better: Better::Higher,
            x: None,
        }
    }
    pub fn lower(name: impl Into<String>, unit: &'static str) -> Metric {
        Metric {
            name: name.into(),
            unit,
            better: Better::Lower,
            x: None,
        }
    }
    /// The same metric as one point of a curve over `param`.
    pub fn at(mut self, param: &'static str, x: f64) -> Metric {
        self.x = Some((param, x));
        self
    }
}

/// The samples one run of a workload produced.
#[derive(Default)]
pub struct Samples(pub Vec<(Metric, f64)>);

impl Samples {
    pub fn push(&mut self, m: Metric, v: f64) {
        self.0.push((m, v));
    }
    /// A duration sample in milliseconds.
    pub fn ms(&mut self, name: impl Into<String>, d: std::time::Duration) {
        self.push(Metric::ms(name), d.as_secs_f64() * 1e3);
    }
}

/// Every sample of one metric on one driver of one engine.
#[derive(Debug, Clone, Serialize)]
pub struct Series {
    /// `strata`, or the compared engine (`dockerd 20.10.24 at unix:///…`).
    pub engine: String,
    pub driver: String,
    pub workload: String,
    pub metric: String,
    pub unit: &'static str,
    pub better: Better,
    /// The swept parameter's name and value, for curves.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub param: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub x: Option<f64>,
    /// The samples of each run, in order.
    pub runs: Vec<Vec<f64>>,
    pub summary: Summary,
}

/// All series of a benchmark, in the order they were first measured.
#[derive(Default)]
pub struct Results {
    pub series: Vec<Series>,
}

impl Results {
    /// Adds one run's samples of `workload` on `driver` of `engine`; `run` is the run's index.
    pub fn add_run(&mut self, engine: &str, driver: &str, workload: &str, run: usize, s: Samples) {
        for (m, v) in s.0 {
            let pos = self.series.iter().position(|x| {
                x.engine == engine
                    && x.driver == driver
                    && x.workload == workload
                    && x.metric == m.name
                    && x.unit == m.unit
                    && x.x == m.x.map(|(_, v)| v)
            });
            let i = match pos {
                Some(i) => i,
                None => {
                    self.series.push(Series {
                        engine: engine.to_string(),
                        driver: driver.to_string(),
                        workload: workload.to_string(),
                        metric: m.name.clone(),
                        unit: m.unit,
                        better: m.better,
                        param: m.x.map(|(p, _)| p.to_string()),
                        x: m.x.map(|(_, x)| x),
                        runs: Vec::new(),
                        summary: summarize(&[]),
                    });
                    self.series.len() - 1
                }
            };
            let ser = &mut self.series[i];
            while ser.runs.len() <= run {
                ser.runs.push(Vec::new());
            }
            ser.runs[run].push(v);
            ser.summary = summarize(&ser.runs);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_are_grouped_per_metric() {
        let mut r = Results::default();
        for run in 0..2 {
            let mut s = Samples::default();
            s.push(Metric::ms("create"), 1.0 + run as f64);
            s.push(Metric::ms("create"), 2.0 + run as f64);
            s.push(Metric::ms("mount").at("depth", 10.0), 5.0);
            r.add_run("strata", "vfs", "layers", run, s);
        }
        assert_eq!(r.series.len(), 2);
        assert_eq!(r.series[0].runs, vec![vec![1.0, 2.0], vec![2.0, 3.0]]);
        assert_eq!(r.series[1].x, Some(10.0));
        assert_eq!(r.series[0].summary.n, 4);
    }
}
