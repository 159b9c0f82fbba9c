//! bench-report: renders the JSON lines written by `bench/all.sh` into a Markdown table
//! (`latest.md`: each figure for each engine, the berth/other ratios, the machine) and SVG
//! plots (the cost-versus-size curves and the pull/save/load figures).
//!
//! `bench-report RESULTS.jsonl OUTDIR`

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::Value;

const ENGINES: [&str; 3] = ["berth", "docker", "podman"];
const COLORS: [&str; 3] = ["#1b7837", "#2166ac", "#b2182b"];

struct Cell {
    values: Vec<f64>,
    na: Option<String>,
}

struct Row {
    section: String,
    label: String,
    unit: String,
    higher_better: bool,
    plot: Option<String>,
    x: Option<f64>,
    cells: BTreeMap<String, Cell>,
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

fn fmt(v: f64, unit: &str) -> String {
    match unit {
        "s" if v < 1.0 => format!("{:.1} ms", v * 1000.0),
        "s" => format!("{v:.2} s"),
        "MiB" => format!("{v:.1} MiB"),
        "MiB/s" => format!("{v:.0} MiB/s"),
        "req/s" => format!("{v:.0}/s"),
        _ => format!("{v:.3} {unit}"),
    }
}

fn fmt_range(lo: f64, hi: f64, unit: &str) -> String {
    if unit == "s" && hi < 1.0 {
        format!("{:.0}–{:.0}", lo * 1000.0, hi * 1000.0)
    } else if unit == "s" {
        format!("{lo:.2}–{hi:.2}")
    } else {
        format!("{lo:.0}–{hi:.0}")
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        eprintln!("usage: bench-report RESULTS.jsonl OUTDIR");
        std::process::exit(2);
    }
    let text = std::fs::read_to_string(&args[1]).expect("read results");
    let out = std::path::Path::new(&args[2]);
    let mut meta = serde_json::Map::new();
    let mut rows: Vec<Row> = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(e) => {
                eprintln!("skipping bad line ({e}): {line}");
                continue;
            }
        };
        if let Some(m) = v.get("meta").and_then(Value::as_object) {
            meta.extend(m.clone());
            continue;
        }
        let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let (section, label) = (s("section"), s("row"));
        let x = v.get("x").and_then(Value::as_f64);
        let i = match rows.iter().position(|r| r.section == section && r.label == label) {
            Some(i) => i,
            None => {
                rows.push(Row {
                    section,
                    label,
                    unit: s("unit"),
                    higher_better: s("better") == "higher",
                    plot: v.get("plot").and_then(Value::as_str).map(str::to_string),
                    x,
                    cells: BTreeMap::new(),
                });
                rows.len() - 1
            }
        };
        let values = v
            .get("values")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_f64).collect())
            .unwrap_or_default();
        let na = v.get("na").and_then(Value::as_str).map(str::to_string);
        rows[i].cells.insert(s("engine"), Cell { values, na });
    }

    // sections in their numbered order, rows in the order they were measured
    rows.sort_by(|a, b| a.section.cmp(&b.section));
    let med = |r: &Row, e: &str| -> Option<f64> {
        r.cells
            .get(e)
            .filter(|c| c.na.is_none() && !c.values.is_empty())
            .map(|c| median(&c.values))
    };

    // ---- Markdown ------------------------------------------------------------------------
    let mut md = String::new();
    let m = |k: &str| {
        meta.get(k)
            .map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()))
            .unwrap_or_else(|| "?".into())
    };
    writeln!(md, "# berth beside Docker and Podman\n").unwrap();
    writeln!(
        md,
        "Produced by `bench/all.sh` on {} ({}). Each cell is the median, with min–max over the runs \
         in parentheses; engines alternate run by run. **ratio** is berth's median divided by the \
         other engine's: below 1 berth is faster/smaller for times and memory, above 1 it is \
         faster for rates (req/s, MiB/s). ⚠ marks a row where berth is behind.\n",
        m("date"),
        if meta.get("quick").and_then(Value::as_bool) == Some(true) {
            "QUICK=1: few runs, development figures"
        } else {
            "full run"
        }
    )
    .unwrap();
    writeln!(md, "**Machine:** {} ({} cores), {} RAM, {}, kernel {}. **Load average** (1/5/15 min) at start {}, at end {}: \
        other engineers were compiling on the same 2 cores, so absolute figures are noisy; the ratios, taken with the engines interleaved, are the point.  ",
        m("cpu"), m("cores"), m("memory"), m("os"), m("kernel"), m("load_start"), m("load_end")).unwrap();
    writeln!(
        md,
        "**Versions:** berth {} (release build), {}, {}, {}, {}. Whole run: {} s.\n",
        m("berth"),
        m("docker"),
        m("containerd"),
        m("podman"),
        m("runc"),
        m("elapsed_s")
    )
    .unwrap();
    writeln!(md, "| what | berth | docker | podman | ratio berth/docker | ratio berth/podman |").unwrap();
    writeln!(md, "|---|---|---|---|---|---|").unwrap();
    let mut behind = Vec::new();
    let mut last_section = String::new();
    for r in &rows {
        if r.section != last_section {
            writeln!(md, "| **{}** | | | | | |", r.section).unwrap();
            last_section = r.section.clone();
        }
        let mut line = format!("| {} |", r.label);
        for e in ENGINES {
            let cell = match r.cells.get(e) {
                None => "not available".to_string(),
                Some(c) if c.na.is_some() || c.values.is_empty() => {
                    format!("not available ({})", c.na.as_deref().unwrap_or("no result"))
                }
                Some(c) => {
                    let md_ = median(&c.values);
                    if c.values.len() > 1 {
                        let lo = c.values.iter().cloned().fold(f64::INFINITY, f64::min);
                        let hi = c.values.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                        format!("{} ({})", fmt(md_, &r.unit), fmt_range(lo, hi, &r.unit))
                    } else {
                        fmt(md_, &r.unit)
                    }
                }
            };
            write!(line, " {cell} |").unwrap();
        }
        for other in ["docker", "podman"] {
            match (med(r, "berth"), med(r, other)) {
                (Some(b), Some(o)) if o > 0.0 => {
                    let ratio = b / o;
                    let worse = if r.higher_better { ratio < 1.0 } else { ratio > 1.0 };
                    if worse {
                        behind.push(format!("{} / {} — berth {} vs {} {}", r.section, r.label, fmt(b, &r.unit), other, fmt(o, &r.unit)));
                    }
                    write!(line, " {ratio:.2}{} |", if worse { " ⚠" } else { "" }).unwrap();
                }
                _ => line.push_str(" – |"),
            }
        }
        writeln!(md, "{line}").unwrap();
    }
    writeln!(md).unwrap();
    if behind.is_empty() {
        writeln!(md, "berth is ahead of both engines on every row measured.\n").unwrap();
    } else {
        writeln!(md, "Rows where berth is behind (the causes are discussed in the README):\n").unwrap();
        for b in &behind {
            writeln!(md, "- {b}").unwrap();
        }
        writeln!(md).unwrap();
    }

    // ---- plots ---------------------------------------------------------------------------
    let mut plots: Vec<String> = Vec::new();
    for r in &rows {
        if let Some(p) = &r.plot {
            if !plots.contains(p) {
                plots.push(p.clone());
            }
        }
    }
    writeln!(md, "Plots:").unwrap();
    for p in &plots {
        let sel: Vec<&Row> = rows.iter().filter(|r| r.plot.as_deref() == Some(p)).collect();
        let file = format!("{p}.svg");
        let svg = if sel.iter().all(|r| r.x.is_some()) {
            line_chart(p, &sel, &med)
        } else {
            bar_chart(p, &sel, &med)
        };
        std::fs::write(out.join(&file), svg).expect("write svg");
        writeln!(md, "- [{file}]({file})").unwrap();
    }
    std::fs::write(out.join("latest.md"), md).expect("write latest.md");
}

fn title(p: &str) -> &str {
    match p {
        "ps" => "ps -a latency vs number of containers",
        "inspect" => "inspect latency vs number of containers",
        "create" => "time to create the next batch of containers (xargs -P4)",
        "pull" => "pull / save / load (seconds, lower is better)",
        _ => p,
    }
}

fn legend(s: &mut String, x: f64, y: f64) {
    for (i, e) in ENGINES.iter().enumerate() {
        let yy = y + i as f64 * 18.0;
        writeln!(s, r#"<rect x="{x}" y="{}" width="12" height="12" fill="{}"/><text x="{}" y="{}" font-size="12">{e}</text>"#, yy - 10.0, COLORS[i], x + 16.0, yy).unwrap();
    }
}

fn line_chart(p: &str, rows: &[&Row], med: &dyn Fn(&Row, &str) -> Option<f64>) -> String {
    let (w, h, l, r, t, b) = (640.0, 400.0, 70.0, 110.0, 40.0, 50.0);
    let xs: Vec<f64> = rows.iter().filter_map(|r| r.x).collect();
    let (x0, x1) = (
        xs.iter().cloned().fold(f64::INFINITY, f64::min).log10(),
        xs.iter().cloned().fold(f64::NEG_INFINITY, f64::max).log10(),
    );
    let ymax = rows
        .iter()
        .flat_map(|r| ENGINES.iter().filter_map(move |e| med(r, e)))
        .fold(0.0, f64::max)
        * 1000.0
        * 1.1;
    let ymax = if ymax <= 0.0 { 1.0 } else { ymax };
    let px = |x: f64| l + (x.log10() - x0) / (x1 - x0).max(1e-9) * (w - l - r);
    let py = |y: f64| h - b - y / ymax * (h - t - b);
    let mut s = String::new();
    writeln!(s, r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif"><rect width="100%" height="100%" fill="white"/>"#).unwrap();
    writeln!(s, r#"<text x="{}" y="22" font-size="15" text-anchor="middle">{}</text>"#, w / 2.0, title(p)).unwrap();
    writeln!(s, r#"<line x1="{l}" y1="{}" x2="{}" y2="{}" stroke="black"/><line x1="{l}" y1="{t}" x2="{l}" y2="{}" stroke="black"/>"#, h - b, w - r, h - b, h - b).unwrap();
    for i in 0..=5 {
        let v = ymax / 1.1 * i as f64 / 5.0;
        writeln!(s, r##"<line x1="{l}" y1="{y}" x2="{}" y2="{y}" stroke="#ddd"/><text x="{}" y="{}" font-size="11" text-anchor="end">{v:.0} ms</text>"##, w - r, l - 6.0, py(v) + 4.0, y = py(v)).unwrap();
    }
    let mut seen = Vec::new();
    for x in &xs {
        if !seen.contains(x) {
            seen.push(*x);
            writeln!(s, r#"<text x="{}" y="{}" font-size="11" text-anchor="middle">{x}</text>"#, px(*x), h - b + 16.0).unwrap();
        }
    }
    writeln!(s, r#"<text x="{}" y="{}" font-size="12" text-anchor="middle">containers (log scale)</text>"#, (l + w - r) / 2.0, h - 12.0).unwrap();
    for (i, e) in ENGINES.iter().enumerate() {
        let pts: Vec<(f64, f64)> = rows.iter().filter_map(|r| Some((r.x?, med(r, e)? * 1000.0))).collect();
        if pts.is_empty() {
            continue;
        }
        let path: Vec<String> = pts.iter().map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y))).collect();
        writeln!(s, r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2"/>"#, path.join(" "), COLORS[i]).unwrap();
        for (x, y) in &pts {
            writeln!(s, r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{}"><title>{e} {x}: {y:.1} ms</title></circle>"#, px(*x), py(*y), COLORS[i]).unwrap();
        }
    }
    legend(&mut s, w - r + 15.0, t + 20.0);
    s.push_str("</svg>\n");
    s
}

fn bar_chart(p: &str, rows: &[&Row], med: &dyn Fn(&Row, &str) -> Option<f64>) -> String {
    let (w, l, r, t) = (760.0, 260.0, 120.0, 40.0);
    let gh = 3.0 * 18.0 + 16.0;
    let h = t + rows.len() as f64 * gh + 20.0;
    let mut s = String::new();
    writeln!(s, r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif"><rect width="100%" height="100%" fill="white"/>"#).unwrap();
    writeln!(s, r#"<text x="{}" y="22" font-size="15" text-anchor="middle">{} — bars scaled per row</text>"#, w / 2.0, title(p)).unwrap();
    for (gi, row) in rows.iter().enumerate() {
        let y0 = t + gi as f64 * gh;
        let max = ENGINES.iter().filter_map(|e| med(row, e)).fold(0.0, f64::max).max(1e-9);
        let label: String = row.label.chars().take(40).collect();
        writeln!(s, r#"<text x="{}" y="{}" font-size="12" text-anchor="end">{label}</text>"#, l - 8.0, y0 + 30.0).unwrap();
        for (i, e) in ENGINES.iter().enumerate() {
            let y = y0 + i as f64 * 18.0;
            match med(row, e) {
                Some(v) => {
                    let bw = v / max * (w - l - r);
                    writeln!(s, r#"<rect x="{l}" y="{y}" width="{bw:.1}" height="14" fill="{}"/><text x="{}" y="{}" font-size="11">{e} {}</text>"#, COLORS[i], l + bw + 4.0, y + 11.0, fmt(v, &row.unit)).unwrap();
                }
                None => {
                    writeln!(s, r##"<text x="{}" y="{}" font-size="11" fill="#888">{e}: not available</text>"##, l + 4.0, y + 11.0).unwrap();
                }
            }
        }
    }
    s.push_str("</svg>\n");
    s
}
