//! SVG plots: one file per workload, one panel per unit. Metrics measured at one point are
//! bars (median, with a whisker from min to p95), one bar per driver; metrics swept over a
//! parameter (chain depth, layer size) are curves of the median, one per driver, on a
//! logarithmic x axis when the sweep spans more than a factor of ten.

use crate::error::{BenchResult, Context};
use crate::series::Series;
use crate::svg::{ticks, Svg};
use crate::table::{label, num};
use std::path::{Path, PathBuf};

const COLORS: [&str; 8] = [
    "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f",
];
const PANEL_W: f64 = 1000.0;
const PANEL_H: f64 = 300.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 300.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 60.0;

/// Writes one SVG per workload into `dir`; returns the files written.
pub fn write_all(dir: &Path, series: &[Series]) -> BenchResult<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).ctx(|| format!("mkdir {}", dir.display()))?;
    let mut workloads: Vec<&str> = Vec::new();
    for s in series {
        if !workloads.contains(&s.workload.as_str()) {
            workloads.push(&s.workload);
        }
    }
    let mut written = Vec::new();
    for w in workloads {
        let mine: Vec<&Series> = series.iter().filter(|s| s.workload == w).collect();
        let path = dir.join(format!("{w}.svg"));
        std::fs::write(&path, workload_svg(w, &mine))
            .ctx(|| format!("writing {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

/// Labels (driver, engine) in first-seen order, each with its colour.
fn labels(series: &[&Series]) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    for s in series {
        let l = label(s);
        if !v.contains(&l) {
            v.push(l);
        }
    }
    v
}

/// The SVG of one workload.
pub fn workload_svg(workload: &str, series: &[&Series]) -> String {
    let all_labels = labels(series);
    let color =
        |l: &str| COLORS[all_labels.iter().position(|x| x == l).unwrap_or(0) % COLORS.len()];
    // Panels: (unit, swept?) in first-seen order.
    let mut panels: Vec<(&str, bool)> = Vec::new();
    for s in series {
        let key = (s.unit, s.x.is_some());
        if !panels.contains(&key) {
            panels.push(key);
        }
    }
    let mut svg = Svg::new(PANEL_W, PANEL_H * panels.len() as f64 + 10.0);
    for (i, (unit, swept)) in panels.iter().enumerate() {
        let top = i as f64 * PANEL_H;
        let mine: Vec<&Series> = series
            .iter()
            .copied()
            .filter(|s| s.unit == *unit && s.x.is_some() == *swept)
            .collect();
        let title = format!("{workload}: {unit}");
        if *swept {
            line_panel(&mut svg, top, &title, unit, &mine, &color);
        } else {
            bar_panel(&mut svg, top, &title, unit, &mine, &color);
        }
    }
    svg.finish()
}

fn frame(
    svg: &mut Svg,
    top: f64,
    title: &str,
    unit: &str,
    lo: f64,
    hi: f64,
) -> impl Fn(f64) -> f64 {
    let (y0, y1) = (top + PANEL_H - BOTTOM, top + TOP);
    svg.text(LEFT, top + 22.0, 15.0, "start", title);
    let t = ticks(lo, hi);
    let (tlo, thi) = (t[0], *t.last().unwrap_or(&hi));
    let scale = move |v: f64| y0 - (v - tlo) / (thi - tlo).max(f64::MIN_POSITIVE) * (y0 - y1);
    for v in &t {
        let y = scale(*v);
        svg.line(LEFT - 4.0, y, PANEL_W - RIGHT, y, "#dddddd");
        svg.text(LEFT - 6.0, y + 4.0, 11.0, "end", &num(*v));
    }
    svg.line(LEFT, y0, PANEL_W - RIGHT, y0, "#333333");
    svg.line(LEFT, y0, LEFT, y1, "#333333");
    svg.vtext(16.0, (y0 + y1) / 2.0, 12.0, unit);
    scale
}

/// The legend: each entry's text, drawn in the colour of its label.
fn legend(
    svg: &mut Svg,
    top: f64,
    entries: &[(String, String)],
    color: &dyn Fn(&str) -> &'static str,
) {
    for (i, (text, label)) in entries.iter().enumerate() {
        let y = top + TOP + 4.0 + i as f64 * 18.0;
        svg.rect(PANEL_W - RIGHT + 14.0, y, 12.0, 12.0, color(label), text);
        svg.text(PANEL_W - RIGHT + 32.0, y + 10.0, 12.0, "start", text);
    }
}

fn bar_panel(
    svg: &mut Svg,
    top: f64,
    title: &str,
    unit: &str,
    series: &[&Series],
    color: &dyn Fn(&str) -> &'static str,
) {
    let mut metrics: Vec<&str> = Vec::new();
    for s in series {
        if !metrics.contains(&s.metric.as_str()) {
            metrics.push(&s.metric);
        }
    }
    let names = labels(series);
    let hi = series
        .iter()
        .map(|s| s.summary.p95.max(s.summary.median))
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max);
    let scale = frame(svg, top, title, unit, 0.0, if hi > 0.0 { hi } else { 1.0 });
    let plot_w = PANEL_W - RIGHT - LEFT;
    let group_w = plot_w / metrics.len().max(1) as f64;
    let bar_w = (group_w * 0.8 / names.len().max(1) as f64).min(40.0);
    let y0 = top + PANEL_H - BOTTOM;
    for (g, m) in metrics.iter().enumerate() {
        let gx = LEFT + g as f64 * group_w + (group_w - bar_w * names.len() as f64) / 2.0;
        for (b, n) in names.iter().enumerate() {
            let Some(s) = series.iter().find(|s| s.metric == *m && label(s) == *n) else {
                continue;
            };
            let x = gx + b as f64 * bar_w;
            let med = s.summary.median;
            if med.is_finite() {
                let y = scale(med);
                let tip = format!("{n} {m}: median {} {unit}", num(med));
                svg.rect(x + 1.0, y, bar_w - 2.0, (y0 - y).max(0.0), color(n), &tip);
                let (lo, hi) = (scale(s.summary.min), scale(s.summary.p95));
                svg.line(x + bar_w / 2.0, lo, x + bar_w / 2.0, hi, "#222222");
            }
        }
        // Names like `small-files/gzip` on two lines.
        let cx = LEFT + (g as f64 + 0.5) * group_w;
        match m.split_once('/') {
            Some((a, b)) => {
                svg.text(cx, y0 + 16.0, 11.0, "middle", a);
                svg.text(cx, y0 + 30.0, 11.0, "middle", b);
            }
            None => svg.text(cx, y0 + 16.0, 11.0, "middle", m),
        }
    }
    let entries: Vec<(String, String)> = names.iter().map(|n| (n.clone(), n.clone())).collect();
    legend(svg, top, &entries, color);
}

fn line_panel(
    svg: &mut Svg,
    top: f64,
    title: &str,
    unit: &str,
    series: &[&Series],
    color: &dyn Fn(&str) -> &'static str,
) {
    let xs: Vec<f64> = series
        .iter()
        .filter_map(|s| s.x)
        .filter(|x| *x > 0.0)
        .collect();
    let (xmin, xmax) = xs
        .iter()
        .fold((f64::MAX, 0.0f64), |(a, b), x| (a.min(*x), b.max(*x)));
    let log = xmax / xmin.max(f64::MIN_POSITIVE) > 10.0;
    let tx = |x: f64| {
        if log {
            x.max(f64::MIN_POSITIVE).log10()
        } else {
            x
        }
    };
    let (a, b) = (tx(xmin), tx(xmax));
    let plot_w = PANEL_W - RIGHT - LEFT;
    let sx = move |x: f64| LEFT + 10.0 + (tx(x) - a) / (b - a).max(1e-9) * (plot_w - 20.0);
    let hi = series
        .iter()
        .map(|s| s.summary.median)
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max);
    let scale = frame(svg, top, title, unit, 0.0, if hi > 0.0 { hi } else { 1.0 });
    let y0 = top + PANEL_H - BOTTOM;
    let param = series
        .iter()
        .find_map(|s| s.param.clone())
        .unwrap_or_default();
    let mut ticks_x: Vec<f64> = xs.clone();
    ticks_x.sort_by(|p, q| p.total_cmp(q));
    ticks_x.dedup();
    for x in &ticks_x {
        svg.text(sx(*x), y0 + 16.0, 11.0, "middle", &num(*x));
    }
    let axis = if log {
        format!("{param} (log scale)")
    } else {
        param
    };
    svg.text(LEFT + plot_w / 2.0, y0 + 36.0, 12.0, "middle", &axis);
    // One curve per label and metric.
    let mut curves: Vec<(String, String)> = Vec::new();
    for s in series {
        let k = (label(s), s.metric.clone());
        if !curves.contains(&k) {
            curves.push(k);
        }
    }
    let mut metrics: Vec<&String> = Vec::new();
    for (_, m) in &curves {
        if !metrics.contains(&m) {
            metrics.push(m);
        }
    }
    let mut names = Vec::new();
    for (l, m) in &curves {
        let mut pts: Vec<(f64, f64, f64)> = series
            .iter()
            .filter(|s| label(s) == *l && s.metric == *m)
            .filter_map(|s| Some((s.x?, s.summary.median)))
            .filter(|(x, y)| *x > 0.0 && y.is_finite())
            .map(|(x, y)| (x, sx(x), scale(y)))
            .collect();
        pts.sort_by(|p, q| p.0.total_cmp(&q.0));
        let name = if metrics.len() > 1 {
            format!("{l}: {m}")
        } else {
            l.clone()
        };
        let c = color(l);
        // A driver's second metric is dashed.
        let dashed = metrics.iter().position(|x| *x == m).unwrap_or(0) % 2 == 1;
        svg.polyline(
            &pts.iter().map(|(_, x, y)| (*x, *y)).collect::<Vec<_>>(),
            c,
            dashed,
        );
        for (x, px, py) in &pts {
            svg.circle(*px, *py, 3.5, c, &format!("{name} at {}", num(*x)));
        }
        names.push((name, l.clone()));
    }
    legend(svg, top, &names, color);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::series::{Metric, Results, Samples};

    #[test]
    fn bars_and_curves_per_driver() {
        let mut r = Results::default();
        for (drv, k) in [("vfs", 2.0), ("overlay2", 1.0)] {
            let mut s = Samples::default();
            s.push(Metric::ms("cycle"), 3.0 * k);
            for depth in [1.0, 10.0, 100.0] {
                s.push(Metric::ms("mount").at("depth", depth), depth * k);
            }
            r.add_run("strata", drv, "w", 0, s);
        }
        let refs: Vec<&Series> = r.series.iter().collect();
        let svg = workload_svg("w", &refs);
        assert_eq!(svg.matches("<polyline").count(), 2, "{svg}");
        // Two bars with a median title each.
        assert_eq!(svg.matches("median").count(), 2);
        assert!(svg.contains("depth (log scale)"));
        assert!(svg.contains(">overlay2<") && svg.contains(">vfs<"));
    }
}
