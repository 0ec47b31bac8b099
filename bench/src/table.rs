//! The table printed at the end: one row per metric and driver.

use crate::series::{Better, Series};
use std::fmt::Write;

/// A number with three significant digits, thousands separated.
pub fn num(v: f64) -> String {
    if !v.is_finite() {
        return "-".into();
    }
    let a = v.abs();
    if a >= 1000.0 || (v.fract() == 0.0 && a >= 1.0) {
        let s = format!("{:.0}", v);
        let (sign, digits) = s.strip_prefix('-').map_or(("", s.as_str()), |d| ("-", d));
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        format!("{sign}{out}")
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else if a == 0.0 {
        "0".into()
    } else {
        format!("{v:.3}")
    }
}

/// The driver's name, with its engine when it is not Strata (without the engine's address,
/// which the report keeps).
pub fn label(s: &Series) -> String {
    if s.engine == "strata" {
        s.driver.clone()
    } else {
        let engine = s.engine.split(" at ").next().unwrap_or(&s.engine);
        format!("{} ({engine})", s.driver)
    }
}

/// The table of every series.
pub fn render(series: &[Series]) -> String {
    let header = [
        "workload", "metric", "driver", "unit", "min", "median", "p95", "runs ±",
    ];
    let mut rows: Vec<[String; 8]> = Vec::new();
    for s in series {
        let metric = match (&s.param, s.x) {
            (Some(p), Some(x)) => format!("{} @ {p} {}", s.metric, num(x)),
            _ => s.metric.clone(),
        };
        let arrow = match s.better {
            Better::Lower => "↓",
            Better::Higher => "↑",
        };
        rows.push([
            s.workload.clone(),
            metric,
            label(s),
            format!("{} {arrow}", s.unit),
            num(s.summary.min),
            num(s.summary.median),
            num(s.summary.p95),
            s.summary
                .run_cv
                .map(|cv| format!("{:.1}%", cv * 100.0))
                .unwrap_or_else(|| "-".into()),
        ]);
    }
    let mut width = header.map(|h| h.chars().count());
    for r in &rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: &[String]| {
        for (i, (c, w)) in cells.iter().zip(width).enumerate() {
            let pad = w - c.chars().count();
            if i >= 4 {
                let _ = write!(out, "{}{c}  ", " ".repeat(pad));
            } else {
                let _ = write!(out, "{c}{}  ", " ".repeat(pad));
            }
        }
        out.truncate(out.trim_end().len());
        out.push('\n');
    };
    line(&mut out, &header.map(String::from));
    let mut last = String::new();
    for r in rows {
        // Repeated workload and metric names are left blank.
        let mut r = r;
        let key = format!("{}\0{}", r[0], r[1]);
        if key == last {
            r[0].clear();
            r[1].clear();
        } else {
            last = key;
        }
        line(&mut out, &r);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::series::{Metric, Results, Samples};

    #[test]
    fn numbers_and_rows() {
        assert_eq!(num(1234567.0), "1,234,567");
        assert_eq!(num(12.345), "12.3");
        assert_eq!(num(0.01234), "0.012");
        let mut r = Results::default();
        for (drv, v) in [("vfs", 2.0), ("overlay2", 1.0)] {
            let mut s = Samples::default();
            s.push(Metric::ms("create"), v);
            r.add_run("strata", drv, "layer-create", 0, s);
        }
        let t = render(&r.series);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3, "{t}");
        assert!(
            lines[1].starts_with("layer-create") && lines[1].contains("vfs"),
            "{t}"
        );
        assert!(lines[2].trim_start().starts_with("overlay2"), "{t}");
        assert!(lines[2].contains("ms ↓"), "{t}");
    }
}
