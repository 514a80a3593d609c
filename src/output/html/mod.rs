//! HTML report: `report.html`, one self-contained page that shows whether a run's data is good.
//!
//! Plots are SVG drawn with plotters' SVG backend and embedded inline; the styles are inline too and
//! there is no script, so the page needs no network and no server. Every piece of user text (queries,
//! documents, ids) is HTML-escaped. The page holds no timings, paths or cache counts (those live in
//! report.json), so the same inputs, config and seed give the same bytes. Sample tables are small
//! (at most [`SAMPLE_ROWS`] rows each) and picked deterministically.

use crate::config::Config;
use crate::filter::Decision;
use crate::generate::{Candidate, RejectReason, Source};
use crate::ingest::Dataset;
use crate::mine::MinedPair;
use crate::output::report::RunReport;
use crate::output::write::{WriteError, write_atomic};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// Rows in each sample table.
pub const SAMPLE_ROWS: usize = 30;
/// Characters of a text shown in a table cell.
const CELL_CHARS: usize = 180;
const WIDTH: u32 = 620;
const HEIGHT: u32 = 300;

const POSITIVE: RGBColor = RGBColor(0x1b, 0x9e, 0x77);
const NEGATIVE: RGBColor = RGBColor(0xd9, 0x5f, 0x02);
const ACCEPTED: RGBColor = RGBColor(0x1b, 0x9e, 0x77);
const REJECTED: RGBColor = RGBColor(0xc0, 0x39, 0x2b);
const NEUTRAL: RGBColor = RGBColor(0x45, 0x6b, 0xa8);
const THRESHOLD: RGBColor = RGBColor(0x6a, 0x3d, 0x9a);

/// Errors of the HTML report.
#[derive(Debug, thiserror::Error)]
pub enum HtmlReportError {
    /// plotters failed to draw a plot.
    #[error("cannot draw the plot {plot:?} of report.html: {message}")]
    Plot {
        /// The plot's id.
        plot: &'static str,
        /// What plotters said.
        message: String,
    },
    /// The file could not be written.
    #[error(transparent)]
    Write(#[from] WriteError),
}

/// Everything the page is drawn from.
pub struct Inputs<'a> {
    /// The run's counts.
    pub report: &'a RunReport,
    /// The validated config (thresholds drawn on the plots).
    pub cfg: &'a Config,
    /// Documents and queries (texts for the sample tables).
    pub ds: &'a Dataset,
    /// Mined pairs.
    pub pairs: &'a [MinedPair],
    /// Generated candidates, in generation order.
    pub candidates: &'a [Candidate],
    /// Their verdicts, aligned with `candidates`.
    pub decisions: &'a [Decision],
}

/// The ids of the plots a page holds (in page order), for tests and tools that check it.
pub fn plot_ids(has_variants: bool) -> Vec<&'static str> {
    let mut v = vec!["plot-scores", "plot-negative-ranks", "plot-removed", "plot-above-positive"];
    if has_variants {
        v.extend(["plot-fidelity", "plot-round-trip", "plot-strategies"]);
    }
    v
}

/// Render and write `<dir>/report.html` atomically.
pub fn write(dir: &Path, inputs: &Inputs<'_>) -> Result<(), HtmlReportError> {
    let html = render(inputs)?;
    write_atomic(&dir.join(crate::output::schema::REPORT_HTML), html.as_bytes())?;
    Ok(())
}

/// The whole page.
pub fn render(i: &Inputs<'_>) -> Result<String, HtmlReportError> {
    let r = i.report;
    let m = &r.mine;
    let mut h = String::with_capacity(256 * 1024);
    h.push_str(HEAD);
    let _ = writeln!(
        h,
        "<header><h1>tripletgen run report</h1><p>tripletgen {} · {} documents · {} queries mined · {} pairs · {} negatives · {} index</p></header>",
        esc(&r.version),
        r.ingest.documents,
        m.queries,
        m.pairs,
        m.negatives,
        esc(&r.index.kind.to_string())
    );
    h.push_str("<nav>");
    for (id, title) in [
        ("overview", "Overview"),
        ("mining", "Mining"),
        ("false-negatives", "Possible false negatives"),
        ("variants", "Generated queries"),
        ("triplets", "Sample triplets"),
        ("rejected", "Rejected candidates"),
    ] {
        let _ = write!(h, "<a href=\"#{id}\">{title}</a>");
    }
    h.push_str("</nav>\n<main>\n");

    overview(&mut h, i);

    h.push_str("<section id=\"mining\"><h2>Mining</h2>\n<div class=\"grid\">\n");
    let pos: Vec<f32> = i.pairs.iter().map(|p| p.positive_score).collect();
    let neg: Vec<f32> = i.pairs.iter().flat_map(|p| p.negatives.iter().map(|n| n.score)).collect();
    let mut lines = Vec::new();
    if let Some(v) = i.cfg.mine.max_score {
        lines.push(("max_score".to_string(), v as f64));
    }
    if let Some(v) = i.cfg.mine.min_score {
        lines.push(("min_score".to_string(), v as f64));
    }
    figure(
        &mut h,
        "plot-scores",
        "Positive vs chosen-negative scores",
        "Share of each set per score bin. Negatives crowding the positives' range are hard; negatives above most positives may be false negatives.",
        histogram(
            "plot-scores",
            "cosine similarity to the query",
            &[("positive", POSITIVE, &pos), ("negative", NEGATIVE, &neg)],
            &lines,
        )?,
    );
    let range_max = i.cfg.mine.range_max;
    let mut ranks = vec![0f64; range_max];
    for n in i.pairs.iter().flat_map(|p| &p.negatives) {
        ranks[n.rank.min(range_max - 1)] += 1.0;
    }
    let rank_labels: Vec<String> = (0..range_max).map(|r| r.to_string()).collect();
    figure(
        &mut h,
        "plot-negative-ranks",
        "Rank at which the chosen negatives were found",
        "0 = the most similar non-positive document of the query.",
        bars(
            "plot-negative-ranks",
            "negatives",
            "rank among non-positive candidates",
            &rank_labels,
            &[("negatives", NEUTRAL, ranks)],
            false,
            None,
        )?,
    );
    let rc = &m.removed;
    let rules = rc.removals();
    let labels: Vec<String> = rules.iter().map(|(n, _)| n.to_string()).collect();
    figure(
        &mut h,
        "plot-removed",
        "Candidates removed, per rule",
        &format!(
            "Each candidate is counted once, against the first rule that removed it (top to bottom). Not shown: {} allowed candidates left unpicked beyond num_negatives.",
            rc.not_sampled
        ),
        bars(
            "plot-removed",
            "candidates",
            "",
            &labels,
            &[("removed", REJECTED, rules.iter().map(|(_, c)| *c as f64).collect())],
            true,
            None,
        )?,
    );
    let above = above_positive_buckets(&m.candidates_above_positive);
    figure(
        &mut h,
        "plot-above-positive",
        "Candidates scoring above the positive, per pair",
        "Pairs whose positive is beaten by many candidates often have unlabelled positives (false negatives) or a weak positive.",
        bars(
            "plot-above-positive",
            "pairs",
            "candidates above the positive",
            &above.iter().map(|(l, _)| l.clone()).collect::<Vec<_>>(),
            &[("pairs", NEUTRAL, above.iter().map(|(_, c)| *c as f64).collect())],
            false,
            None,
        )?,
    );
    h.push_str("</div>\n");
    rules_table(&mut h, &rules, rc.not_sampled, m.negatives, m.pairs_short, m.pairs_without_negatives);
    h.push_str("</section>\n");

    false_negatives(&mut h, i);
    if let Some(j) = &i.report.judge {
        judge_section(&mut h, i, j);
    }
    variants(&mut h, i)?;
    triplets(&mut h, i);
    rejected(&mut h, i);
    h.push_str("</main>\n<footer>Timings, embedding-cache counts, file checksums and the full configuration are in <code>report.json</code> and <code>manifest.json</code> beside this page.</footer>\n</body>\n</html>\n");
    Ok(h)
}

const HEAD: &str = r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>tripletgen run report</title>
<style>
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:0;color:#1d2330;background:#f6f7f9;line-height:1.4}
header{background:#24344d;color:#fff;padding:14px 28px}
header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;opacity:.85}
nav{padding:8px 28px;background:#e7eaf0;position:sticky;top:0}
nav a{margin-right:18px;color:#24344d;text-decoration:none;font-weight:600}
main{padding:6px 28px 28px}
section{background:#fff;border-radius:8px;padding:12px 18px;margin:16px 0;box-shadow:0 1px 2px rgba(0,0,0,.08)}
h2{margin:4px 0 10px;font-size:19px}
h3{margin:6px 0 4px;font-size:15px}
.cols{display:flex;flex-wrap:wrap;gap:32px;align-items:flex-start}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(520px,1fr));gap:14px}
figure{margin:0;border:1px solid #e3e6eb;border-radius:6px;padding:8px}
figure svg{width:100%;height:auto;display:block}
figcaption{font-size:13px;color:#4a5262}
figcaption b{display:block;color:#1d2330;font-size:14px}
table{border-collapse:collapse;width:100%;font-size:13px;margin:8px 0}
th,td{border-bottom:1px solid #e3e6eb;padding:4px 6px;text-align:left;vertical-align:top}
th{background:#f0f2f5}
table.kv{width:auto;min-width:480px}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.id{font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-size:12px;color:#4a5262;white-space:nowrap}
.tag{display:inline-block;padding:0 6px;border-radius:8px;background:#e7eaf0;font-size:12px;white-space:nowrap}
.bad{background:#f6d5d1}
.good{background:#d3eee5}
.note{color:#4a5262;font-size:13px}
footer{padding:0 28px 24px;color:#4a5262;font-size:13px}
</style>
</head>
<body>
"#;

/// Escape text for HTML element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// Escaped, shortened to [`CELL_CHARS`] characters; the full text is in the cell's tooltip.
fn cell(s: &str) -> String {
    if s.chars().count() <= CELL_CHARS {
        return esc(s);
    }
    let short: String = s.chars().take(CELL_CHARS).collect();
    format!("<span title=\"{}\">{}…</span>", esc(s), esc(short.trim_end()))
}

fn figure(h: &mut String, id: &str, title: &str, caption: &str, svg: String) {
    let _ = write!(
        h,
        "<figure id=\"{id}\">\n{svg}\n<figcaption><b>{}</b>{}</figcaption></figure>\n",
        esc(title),
        esc(caption)
    );
}

fn plot_err(plot: &'static str) -> impl Fn(String) -> HtmlReportError {
    move |message| HtmlReportError::Plot { plot, message }
}

/// Draw into an SVG string of the standard size.
fn svg(
    plot: &'static str,
    draw: impl FnOnce(&DrawingArea<SVGBackend<'_>, Shift>) -> Result<(), String>,
) -> Result<String, HtmlReportError> {
    let mut s = String::new();
    {
        let root = SVGBackend::with_string(&mut s, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| plot_err(plot)(e.to_string()))?;
        draw(&root).map_err(plot_err(plot))?;
        root.present().map_err(|e| plot_err(plot)(e.to_string()))?;
    }
    Ok(s)
}

fn e<E: std::fmt::Display>(x: E) -> String {
    x.to_string()
}

/// Overlaid histograms (share of each series per bin) over the range of all values, with labelled
/// vertical lines.
fn histogram(
    plot: &'static str,
    x_desc: &str,
    series: &[(&str, RGBColor, &[f32])],
    lines: &[(String, f64)],
) -> Result<String, HtmlReportError> {
    const BINS: usize = 40;
    let all = series.iter().flat_map(|(_, _, v)| v.iter().copied()).chain(lines.iter().map(|(_, x)| *x as f32));
    let (mut lo, mut hi) = all.fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), x| (a.min(x), b.max(x)));
    if !lo.is_finite() || !hi.is_finite() {
        (lo, hi) = (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.02).max(0.01);
    let (lo, hi) = ((lo - pad) as f64, (hi + pad) as f64);
    let width = (hi - lo) / BINS as f64;
    let shares: Vec<Vec<f64>> = series
        .iter()
        .map(|(_, _, v)| {
            let mut c = vec![0f64; BINS];
            for &x in v.iter() {
                c[(((x as f64 - lo) / width) as usize).min(BINS - 1)] += 1.0;
            }
            let n = v.len().max(1) as f64;
            c.iter().map(|x| x / n).collect()
        })
        .collect();
    let ymax = shares.iter().flatten().fold(0f64, |a, &b| a.max(b)).max(0.01) * 1.1;
    svg(plot, |root| {
        let mut chart = ChartBuilder::on(root)
            .margin(10)
            .x_label_area_size(38)
            .y_label_area_size(52)
            .build_cartesian_2d(lo..hi, 0f64..ymax)
            .map_err(e)?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc("share")
            .y_label_formatter(&|v| format!("{:.0}%", v * 100.0))
            .x_label_formatter(&|v| format!("{v:.2}"))
            .light_line_style(WHITE.mix(0.0))
            .label_style(("sans-serif", 13))
            .axis_desc_style(("sans-serif", 14))
            .draw()
            .map_err(e)?;
        for ((name, color, v), share) in series.iter().zip(&shares) {
            let c = *color;
            chart
                .draw_series(share.iter().enumerate().filter(|(_, s)| **s > 0.0).map(|(b, s)| {
                    let x0 = lo + b as f64 * width;
                    Rectangle::new([(x0, 0.0), (x0 + width, *s)], c.mix(0.55).filled())
                }))
                .map_err(e)?
                .label(format!("{name} (n={})", v.len()))
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], c.mix(0.55).filled()));
        }
        for (name, x) in lines {
            chart
                .draw_series(LineSeries::new([(*x, 0.0), (*x, ymax)], THRESHOLD.stroke_width(2)))
                .map_err(e)?
                .label(format!("{name} = {x:.3}"))
                .legend(|(x, y)| PathElement::new([(x, y), (x + 12, y)], THRESHOLD.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .label_font(("sans-serif", 13))
            .draw()
            .map_err(e)
    })
}

/// Bars per category, series stacked; horizontal puts the categories on the y axis. `threshold`
/// draws a labelled line before category `i` (vertical bars only).
fn bars(
    plot: &'static str,
    value_desc: &str,
    category_desc: &str,
    categories: &[String],
    series: &[(&str, RGBColor, Vec<f64>)],
    horizontal: bool,
    threshold: Option<(usize, String)>,
) -> Result<String, HtmlReportError> {
    // plotters' integer ranges include their end: 0..n-1 makes n slots.
    let n = categories.len().max(1);
    let totals: Vec<f64> =
        (0..n).map(|i| series.iter().map(|(_, _, v)| v.get(i).copied().unwrap_or(0.0)).sum()).collect();
    // Room on the right for the legend when horizontal bars have one.
    let room = if horizontal && series.len() > 1 { 1.45 } else { 1.12 };
    let vmax = totals.iter().fold(0f64, |a, &b| a.max(b)).max(1.0) * room;
    // Horizontal bars list the first category on top (the y axis grows upwards).
    let slot = |i: usize| if horizontal { n - 1 - i } else { i };
    let label = |v: &SegmentValue<usize>| match v {
        SegmentValue::CenterOf(i) | SegmentValue::Exact(i) if *i < n => {
            categories.get(slot(*i)).cloned().unwrap_or_default()
        }
        _ => String::new(),
    };
    // Label every category when they fit, else about 12 of them.
    let shown = if horizontal || n <= 16 { n } else { 12 };
    svg(plot, |root| {
        let mut b = ChartBuilder::on(root);
        b.margin(10).margin_right(30);
        let count = |v: &f64| if *v >= 1000.0 { format!("{:.0}k", v / 1000.0) } else { format!("{v:.0}") };
        let mut legend_at = SeriesLabelPosition::UpperRight;
        macro_rules! finish {
            ($chart:expr) => {{
                let mut chart = $chart;
                if series.len() > 1 || threshold.is_some() {
                    chart
                        .configure_series_labels()
                        .position(legend_at)
                        .background_style(WHITE.mix(0.85))
                        .border_style(BLACK.mix(0.3))
                        .label_font(("sans-serif", 13))
                        .draw()
                        .map_err(e)?;
                }
                Ok(())
            }};
        }
        if horizontal {
            let longest = categories.iter().map(|c| c.len()).max().unwrap_or(4) as u32;
            let mut chart = b
                .x_label_area_size(38)
                .y_label_area_size((longest * 8 + 12).min(220))
                .build_cartesian_2d(0f64..vmax, (0..n - 1).into_segmented())
                .map_err(e)?;
            chart
                .configure_mesh()
                .disable_y_mesh()
                .light_line_style(WHITE.mix(0.0))
                .x_desc(value_desc)
                .y_labels(shown)
                .y_label_formatter(&label)
                .x_label_formatter(&count)
                .label_style(("sans-serif", 13))
                .axis_desc_style(("sans-serif", 14))
                .draw()
                .map_err(e)?;
            let mut base = vec![0f64; n];
            for (name, color, v) in series {
                let c = *color;
                let rects: Vec<Rectangle<(f64, SegmentValue<usize>)>> = v
                    .iter()
                    .enumerate()
                    .filter(|(_, x)| **x > 0.0)
                    .map(|(i, x)| {
                        let mut r = Rectangle::new(
                            [(base[i], SegmentValue::Exact(slot(i))), (base[i] + x, SegmentValue::Exact(slot(i) + 1))],
                            c.filled(),
                        );
                        r.set_margin(4, 4, 0, 0);
                        base[i] += x;
                        r
                    })
                    .collect();
                chart
                    .draw_series(rects)
                    .map_err(e)?
                    .label(*name)
                    .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], c.filled()));
            }
            chart
                .draw_series(totals.iter().enumerate().map(|(i, t)| {
                    Text::new(
                        format!("{t:.0}"),
                        (*t + vmax * 0.01, SegmentValue::CenterOf(slot(i))),
                        ("sans-serif", 12).into_font(),
                    )
                }))
                .map_err(e)?;
            legend_at = SeriesLabelPosition::MiddleRight;
            finish!(chart)
        } else {
            let mut chart = b
                .x_label_area_size(44)
                .y_label_area_size(52)
                .build_cartesian_2d((0..n - 1).into_segmented(), 0f64..vmax)
                .map_err(e)?;
            chart
                .configure_mesh()
                .disable_x_mesh()
                .light_line_style(WHITE.mix(0.0))
                .x_desc(category_desc)
                .y_desc(value_desc)
                .x_labels(shown)
                .x_label_formatter(&label)
                .y_label_formatter(&count)
                .label_style(("sans-serif", 13))
                .axis_desc_style(("sans-serif", 14))
                .draw()
                .map_err(e)?;
            let mut base = vec![0f64; n];
            let gap = if n > 30 { 1 } else { 3 };
            for (name, color, v) in series {
                let c = *color;
                let rects: Vec<Rectangle<(SegmentValue<usize>, f64)>> = v
                    .iter()
                    .enumerate()
                    .filter(|(_, x)| **x > 0.0)
                    .map(|(i, x)| {
                        let mut r = Rectangle::new(
                            [(SegmentValue::Exact(i), base[i] + x), (SegmentValue::Exact(i + 1), base[i])],
                            c.filled(),
                        );
                        r.set_margin(0, 0, gap, gap);
                        base[i] += x;
                        r
                    })
                    .collect();
                chart
                    .draw_series(rects)
                    .map_err(e)?
                    .label(*name)
                    .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], c.filled()));
            }
            if let Some((at, name)) = &threshold {
                let x = SegmentValue::Exact(*at);
                chart
                    .draw_series(std::iter::once(PathElement::new(
                        [(x.clone(), 0.0), (x, vmax)],
                        THRESHOLD.stroke_width(2),
                    )))
                    .map_err(e)?
                    .label(name.as_str())
                    .legend(|(x, y)| PathElement::new([(x, y), (x + 12, y)], THRESHOLD.stroke_width(2)));
            }
            finish!(chart)
        }
    })
}

/// Candidates-above-positive counts as bars: 0..=9 one by one, then ranges.
fn above_positive_buckets(dist: &BTreeMap<usize, usize>) -> Vec<(String, usize)> {
    let edges = [(0, 0), (1, 1), (2, 2), (3, 3), (4, 4), (5, 5), (6, 9), (10, 19), (20, 49), (50, usize::MAX)];
    let max = dist.keys().next_back().copied().unwrap_or(0);
    edges
        .iter()
        .filter(|(lo, _)| *lo <= max.max(5))
        .map(|&(lo, hi)| {
            let label = if lo == hi {
                lo.to_string()
            } else if hi == usize::MAX {
                format!("{lo}+")
            } else {
                format!("{lo}-{hi}")
            };
            (label, dist.range(lo..=hi).map(|(_, c)| c).sum())
        })
        .collect()
}

fn overview(h: &mut String, i: &Inputs<'_>) {
    let r = i.report;
    let (m, ing) = (&r.mine, &r.ingest);
    let variants: usize = r.filter.values().map(|f| f.candidates).sum();
    let accepted: usize = r.filter.values().map(|f| f.accepted).sum();
    let q = |d: &crate::output::report::Distribution| {
        if d.count == 0 {
            "–".to_string()
        } else {
            format!("{:.3} / {:.3} / {:.3}", d.quantiles[1], d.quantiles[3], d.quantiles[5])
        }
    };
    h.push_str(
        "<section id=\"overview\"><h2>Overview</h2><div class=\"cols\"><div><h3>Counts</h3><table class=\"kv\">\n",
    );
    let rows: Vec<(&str, String)> = vec![
        ("documents", ing.documents.to_string()),
        ("queries read / with positives", format!("{} / {}", ing.queries_read, ing.queries_with_positives)),
        ("input pairs", ing.pairs.to_string()),
        ("bad input records skipped", ing.skipped.to_string()),
        ("generated query variants: accepted / candidates", format!("{accepted} / {variants}")),
        ("queries mined (given + accepted variants)", m.queries.to_string()),
        ("(query, positive) pairs mined", m.pairs.to_string()),
        ("negatives chosen", m.negatives.to_string()),
        ("pairs short of num_negatives / with none", format!("{} / {}", m.pairs_short, m.pairs_without_negatives)),
        ("pairs with a candidate scoring above the positive", m.pairs_with_candidates_above_positive.to_string()),
        ("positive score p10 / p50 / p90", q(&r.scores.positive)),
        ("negative score p10 / p50 / p90", q(&r.scores.negative)),
        ("index", format!("{} over {} documents", r.index.kind, r.index.documents)),
    ];
    for (k, v) in rows {
        let _ = writeln!(h, "<tr><th>{}</th><td class=\"num\">{}</td></tr>", esc(k), esc(&v));
    }
    h.push_str("</table></div>\n<div>");
    settings(h, i.cfg);
    h.push_str("</div></div></section>\n");
}

/// The settings that shaped the data (the full config is in manifest.json).
fn settings(h: &mut String, cfg: &Config) {
    let (m, f) = (&cfg.mine, &cfg.filter);
    let opt = |v: Option<f32>| v.map(|x| x.to_string()).unwrap_or_else(|| crate::config::OFF.into());
    let sampling = match m.sampling {
        crate::config::Sampling::Top => "top".to_string(),
        crate::config::Sampling::Random => format!("random (seed {})", m.seed),
    };
    let rows = [
        ("negatives per pair", m.num_negatives.to_string()),
        ("candidate ranks", format!("{} ≤ rank < {}", m.range_min, m.range_max)),
        ("sampling", sampling),
        ("relative_margin / absolute_margin", format!("{} / {}", opt(m.relative_margin), opt(m.absolute_margin))),
        ("max_score / min_score", format!("{} / {}", opt(m.max_score), opt(m.min_score))),
        ("variant fidelity range", format!("{} to {}", f.fidelity_min, f.fidelity_max)),
        ("round_trip_k / dedup_cosine", format!("{} / {}", f.round_trip_k, f.dedup_cosine)),
    ];
    h.push_str("<h3>Settings</h3><table class=\"kv\">\n");
    for (k, v) in rows {
        let _ = writeln!(h, "<tr><th>{}</th><td class=\"num\">{}</td></tr>", esc(k), esc(&v));
    }
    h.push_str("</table><p class=\"note\">The full configuration is in manifest.json.</p>\n");
}

fn rules_table(h: &mut String, rules: &[(&str, u64)], not_sampled: u64, negatives: usize, short: usize, none: usize) {
    h.push_str(
        "<table class=\"kv\"><tr><th>rule (in the order applied)</th><th class=\"num\">candidates removed</th></tr>\n",
    );
    for (n, c) in rules {
        let _ = writeln!(h, "<tr><td>{}</td><td class=\"num\">{c}</td></tr>", esc(n));
    }
    let _ = writeln!(h, "<tr><td>allowed, not sampled</td><td class=\"num\">{not_sampled}</td></tr>");
    let _ = writeln!(
        h,
        "<tr><th>negatives chosen</th><th class=\"num\">{negatives}</th></tr></table>\n<p class=\"note\">{short} pairs got fewer negatives than asked for, {none} got none.</p>"
    );
}

fn judge_section(h: &mut String, i: &Inputs<'_>, j: &crate::judge::JudgeStats) {
    h.push_str("<section id=\"judge\"><h2>Judge</h2>\n");
    let _ = writeln!(
        h,
        "<p class=\"note\">{} candidates judged in {} passes: {} relevant (not negatives; {} contain a gold answer of their query), {} relabelled as positives, {} queries dropped ({} pairs), {} failed, {} left unjudged by <code>judge.max_calls</code>.</p>",
        j.candidates,
        j.passes,
        j.relevant,
        j.gold_flagged,
        j.relabelled,
        j.queries_dropped,
        j.pairs_dropped,
        j.failed,
        j.unjudged_by_budget
    );
    if let Some(d) = &j.derived {
        let _ = writeln!(
            h,
            "<p class=\"note\">Answers read from positives (<code>judge.derive_answers</code>): {} of {} queries without answers got one ({} positives read, {} failed), used like gold answers and shown to the LLM judge.</p>",
            d.answered, d.queries, d.reader.judged, d.reader.failed
        );
        if !d.examples.is_empty() {
            h.push_str("<table><tr><th>query</th><th>answer read</th></tr>\n");
            let qid: std::collections::HashMap<&str, usize> =
                i.ds.queries.iter().enumerate().map(|(n, q)| (q.id.as_str(), n)).collect();
            for (q, a) in &d.examples {
                let text = qid.get(q.as_str()).map(|&n| cell(&i.ds.queries[n].text)).unwrap_or_default();
                let _ =
                    writeln!(h, "<tr><td><span class=\"id\">{}</span><br>{text}</td><td>{}</td></tr>", esc(q), esc(a));
            }
            h.push_str("</table>\n");
        }
    }
    if !j.stages.is_empty() {
        h.push_str("<table><tr><th>stage</th><th class=\"num\">judged</th><th class=\"num\">failed</th><th class=\"num\">flagged</th><th class=\"num\">cleared</th><th class=\"num\">passed on</th></tr>\n");
        for (n, st) in j.stages.iter().enumerate() {
            let _ = writeln!(
                h,
                "<tr><td>[{n}] {}<br><span class=\"id\">{}</span></td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                esc(&st.kind),
                esc(&st.id),
                st.judged,
                st.failed,
                st.flagged,
                st.cleared,
                st.escalated
            );
        }
        h.push_str("</table>\n");
    }
    for a in &j.agreement {
        let _ = writeln!(
            h,
            "<p class=\"note\">Stage [{}] vs [{}] on what both judged: {} both relevant, {} only [{}], {} only [{}], {} neither.</p>",
            a.from, a.to, a.both_relevant, a.only_first, a.from, a.only_second, a.to, a.neither
        );
    }
    if !j.examples.is_empty() {
        h.push_str("<table><tr><th>query</th><th>candidate judged relevant</th><th class=\"num\">score</th></tr>\n");
        let qid: std::collections::HashMap<&str, usize> =
            i.ds.queries.iter().enumerate().map(|(n, q)| (q.id.as_str(), n)).collect();
        let did: std::collections::HashMap<&str, usize> =
            i.ds.docs.iter().enumerate().map(|(n, d)| (d.id.as_str(), n)).collect();
        for e in &j.examples {
            let (Some(&q), Some(&d)) = (qid.get(e.query_id.as_str()), did.get(e.doc_id.as_str())) else { continue };
            let _ = writeln!(
                h,
                "<tr><td><span class=\"id\">{}</span><br>{}</td><td><span class=\"id\">{}{}</span><br>{}</td><td class=\"num\">{}</td></tr>",
                esc(&e.query_id),
                cell(&i.ds.queries[q].text),
                esc(&e.doc_id),
                if e.gold { " · contains a gold answer" } else { "" },
                cell(&i.ds.docs[d].text),
                e.score.map(|s| format!("{s:.3}")).unwrap_or_else(|| "-".into())
            );
        }
        h.push_str("</table>\n");
    }
    h.push_str("</section>\n");
}

fn false_negatives(h: &mut String, i: &Inputs<'_>) {
    let m = &i.report.mine;
    let ds = i.ds;
    h.push_str("<section id=\"false-negatives\"><h2>Possible false negatives</h2>\n");
    let _ = writeln!(
        h,
        "<p class=\"note\">{} of {} pairs had at least one candidate scoring above their positive. {}</p>",
        m.pairs_with_candidates_above_positive,
        m.pairs,
        if i.cfg.mine.review {
            format!(
                "review.jsonl lists every candidate within {} of the positive ({} in all).",
                i.cfg.mine.review_margin, m.review_candidates
            )
        } else {
            "Set <code>mine.review = true</code> (or <code>--review</code>) to write all of them to review.jsonl."
                .into()
        }
    );
    let mut worst: Vec<&MinedPair> =
        i.pairs.iter().filter(|p| p.above_positive > 0 && !p.suspects.is_empty()).collect();
    let top_margin = |p: &MinedPair| p.suspects[0].candidate.score - p.positive_score;
    worst.sort_by(|a, b| {
        b.above_positive
            .cmp(&a.above_positive)
            .then(top_margin(b).total_cmp(&top_margin(a)))
            .then(a.query.cmp(&b.query))
    });
    if worst.is_empty() {
        h.push_str("</section>\n");
        return;
    }
    h.push_str("<table><tr><th>query</th><th>positive</th><th class=\"num\">above</th><th>best candidate</th><th>what the rules did</th></tr>\n");
    for p in worst.iter().take(SAMPLE_ROWS) {
        let s = &p.suspects[0];
        let q = &ds.queries[p.query];
        let (pd, cd) = (&ds.docs[p.positive], &ds.docs[s.candidate.doc]);
        let _ = writeln!(
            h,
            "<tr><td><span class=\"id\">{}</span><br>{}</td><td><span class=\"id\">{} · {:.3}</span><br>{}</td><td class=\"num\">{}</td><td><span class=\"id\">{} · {:.3} · rank {}</span><br>{}</td><td><span class=\"tag{}\">{}</span></td></tr>",
            esc(&q.id),
            cell(&q.text),
            esc(&pd.id),
            p.positive_score,
            cell(&pd.text),
            p.above_positive,
            esc(&cd.id),
            s.candidate.score,
            s.candidate.rank,
            cell(&cd.text),
            if s.outcome == crate::mine::Outcome::Chosen { " bad" } else { "" },
            esc(s.outcome.name())
        );
    }
    h.push_str("</table>\n<p class=\"note\">A candidate marked <i>chosen</i> was written as a negative although it scores above the positive: check it, or tighten <code>mine.relative_margin</code> / <code>absolute_margin</code>.</p></section>\n");
}

fn variants(h: &mut String, i: &Inputs<'_>) -> Result<(), HtmlReportError> {
    h.push_str("<section id=\"variants\"><h2>Generated queries</h2>\n");
    if i.candidates.is_empty() {
        h.push_str("<p class=\"note\">No query variants were generated in this run (see <code>[generate.lexical]</code> and <code>[generate.llm]</code>).</p></section>\n");
        return Ok(());
    }
    let f = &i.cfg.filter;
    let by_source = |doc: bool, acc: bool| -> Vec<f32> {
        i.candidates
            .iter()
            .zip(i.decisions)
            .filter(|(c, d)| {
                matches!(c.source, Source::Document(_)) == doc && d.accepted == acc && c.rejected.is_none()
            })
            .map(|(_, d)| d.fidelity)
            .collect()
    };
    let has_docs = i.candidates.iter().any(|c| matches!(c.source, Source::Document(_)));
    let (acc, rej) = (by_source(false, true), by_source(false, false));
    let mut lines =
        vec![("fidelity_min".to_string(), f.fidelity_min as f64), ("fidelity_max".to_string(), f.fidelity_max as f64)];
    let mut series = vec![("accepted", ACCEPTED, acc.as_slice()), ("rejected", REJECTED, rej.as_slice())];
    let (dacc, drej) = (by_source(true, true), by_source(true, false));
    if has_docs {
        lines.push(("document_fidelity_min".into(), f.document_fidelity_min as f64));
        lines.push(("document_fidelity_max".into(), f.document_fidelity_max as f64));
        series.push(("synthetic accepted", POSITIVE, dacc.as_slice()));
        series.push(("synthetic rejected", NEGATIVE, drej.as_slice()));
    }
    h.push_str("<div class=\"grid\">\n");
    figure(
        h,
        "plot-fidelity",
        "Fidelity of generated queries",
        "Cosine similarity to the source query (synthetic queries: to their document). Below the floor the meaning drifted; above the ceiling the variant adds nothing. Share of each set per bin.",
        histogram("plot-fidelity", "fidelity (cosine to the source)", &series, &lines)?,
    );
    let k = f.round_trip_k;
    if k > 0 {
        let mut counts = vec![0f64; k + 1];
        // Candidates rejected at generation (unparseable answers) have no meaningful text to search with.
        for (_, d) in i.candidates.iter().zip(i.decisions).filter(|(c, _)| c.rejected.is_none()) {
            counts[d.round_trip_rank.unwrap_or(k).min(k)] += 1.0;
        }
        let mut labels: Vec<String> = (0..k).map(|r| r.to_string()).collect();
        labels.push(format!("miss (≥{k})"));
        figure(
            h,
            "plot-round-trip",
            "Round trip: rank of the first positive among the variant's results",
            &format!(
                "A variant must retrieve one of its positives within round_trip_k = {k}; the last bar counts the ones that did not."
            ),
            bars(
                "plot-round-trip",
                "candidates",
                "rank of the first positive",
                &labels,
                &[("candidates", NEUTRAL, counts)],
                false,
                Some((k, format!("round_trip_k = {k}"))),
            )?,
        );
    } else {
        figure(
            h,
            "plot-round-trip",
            "Round trip",
            "filter.round_trip_k = 0: the round-trip check is off.",
            bars(
                "plot-round-trip",
                "candidates",
                "",
                &[crate::config::OFF.to_string()],
                &[("candidates", NEUTRAL, vec![0.0])],
                false,
                None,
            )?,
        );
    }
    let stats = &i.report.filter;
    let names: Vec<String> = stats.keys().cloned().collect();
    figure(
        h,
        "plot-strategies",
        "Accepted vs rejected, per strategy",
        "Every candidate is judged; rejected ones stay in variants.parquet with their reason.",
        bars(
            "plot-strategies",
            "candidates",
            "",
            &names,
            &[
                ("accepted", ACCEPTED, stats.values().map(|s| s.accepted as f64).collect()),
                ("rejected", REJECTED, stats.values().map(|s| (s.candidates - s.accepted) as f64).collect()),
            ],
            true,
            None,
        )?,
    );
    h.push_str("</div>\n<table><tr><th>strategy</th><th class=\"num\">produced</th><th class=\"num\">accepted</th><th class=\"num\">mean fidelity</th><th>rejections by reason</th></tr>\n");
    for (name, s) in stats {
        let mut reasons: Vec<(&String, &usize)> = s.rejected.iter().collect();
        reasons.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let reasons: Vec<String> = reasons.iter().map(|(r, n)| format!("{} {n}", esc(r))).collect();
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{:.3}</td><td>{}</td></tr>",
            esc(name),
            s.candidates,
            s.accepted,
            s.mean_fidelity,
            reasons.join(", ")
        );
    }
    h.push_str("</table></section>\n");
    Ok(())
}

/// `n` indices spread evenly over `0..len`.
fn spread(len: usize, n: usize) -> impl Iterator<Item = usize> {
    let n = n.min(len);
    (0..n).map(move |k| k * len / n)
}

fn triplets(h: &mut String, i: &Inputs<'_>) {
    let ds = i.ds;
    let with: Vec<&MinedPair> = i.pairs.iter().filter(|p| !p.negatives.is_empty()).collect();
    let _ = writeln!(
        h,
        "<section id=\"triplets\"><h2>Sample triplets</h2><p class=\"note\">{} of {} pairs with negatives, evenly spaced in output order; the hardest negative of each.</p>",
        with.len().min(SAMPLE_ROWS),
        with.len()
    );
    h.push_str("<table><tr><th>query</th><th>positive</th><th>negative</th></tr>\n");
    for k in spread(with.len(), SAMPLE_ROWS) {
        let p = with[k];
        let q = &ds.queries[p.query];
        let n = &p.negatives[0];
        let (pd, nd) = (&ds.docs[p.positive], &ds.docs[n.doc]);
        let _ = writeln!(
            h,
            "<tr><td><span class=\"id\">{}</span> <span class=\"tag\">{}</span><br>{}</td><td><span class=\"id\">{} · {:.3}</span><br>{}</td><td><span class=\"id\">{} · {:.3} · rank {}</span><br>{}</td></tr>",
            esc(&q.id),
            esc(q.strategy()),
            cell(&q.text),
            esc(&pd.id),
            p.positive_score,
            cell(&pd.text),
            esc(&nd.id),
            n.score,
            n.rank,
            cell(&nd.text)
        );
    }
    h.push_str("</table></section>\n");
}

fn rejected(h: &mut String, i: &Inputs<'_>) {
    // Round-robin over reasons (alphabetical), so every reason shows up in the sample.
    let mut by_reason: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (k, d) in i.decisions.iter().enumerate() {
        if let Some(r) = d.reason {
            by_reason.entry(r.name()).or_default().push(k);
        }
    }
    let total: usize = by_reason.values().map(Vec::len).sum();
    let mut picked = Vec::new();
    let mut queues: Vec<std::collections::VecDeque<usize>> = by_reason
        .values()
        .map(|v| {
            let n = v.len();
            spread(n, SAMPLE_ROWS).map(|j| v[j]).collect()
        })
        .collect();
    while picked.len() < SAMPLE_ROWS.min(total) {
        for q in queues.iter_mut() {
            if let Some(k) = q.pop_front() {
                picked.push(k);
            }
        }
    }
    picked.truncate(SAMPLE_ROWS);
    picked.sort_unstable();
    let _ = writeln!(
        h,
        "<section id=\"rejected\"><h2>Rejected candidates</h2><p class=\"note\">{} of {} rejected candidates, every reason represented; all of them are in variants.parquet.</p>",
        picked.len(),
        total
    );
    if picked.is_empty() {
        h.push_str("</section>\n");
        return;
    }
    h.push_str("<table><tr><th>strategy</th><th>source</th><th>candidate</th><th>reason</th><th class=\"num\">fidelity</th><th class=\"num\">round-trip rank</th></tr>\n");
    for k in picked {
        let (c, d) = (&i.candidates[k], &i.decisions[k]);
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td><span class=\"id\">{}</span><br>{}</td><td>{}</td><td><span class=\"tag bad\">{}</span></td><td class=\"num\">{:.3}</td><td class=\"num\">{}</td></tr>",
            esc(c.strategy.name()),
            esc(c.source.id(i.ds)),
            cell(c.source.text(i.ds)),
            cell(&c.text),
            esc(d.reason.map_or("", RejectReason::name)),
            d.fidelity,
            d.round_trip_rank.map(|r| r.to_string()).unwrap_or_else(|| "–".into())
        );
    }
    h.push_str("</table></section>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            esc(r#"<script>alert("x&y")</script> it's"#),
            "&lt;script&gt;alert(&quot;x&amp;y&quot;)&lt;/script&gt; it&#39;s"
        );
        let long = "<b>".repeat(200);
        let c = cell(&long);
        assert!(!c.contains("<b>") && c.contains('…'), "{c}");
    }

    #[test]
    fn plots_are_svg_with_drawn_shapes() {
        let s = histogram(
            "t",
            "x",
            &[("a", POSITIVE, &[0.1, 0.2, 0.2, 0.9]), ("b", NEGATIVE, &[])],
            &[("line".into(), 0.5)],
        )
        .unwrap();
        assert!(s.starts_with("<svg") && s.contains("<rect") && s.contains("<polyline"), "{s}");
        assert!(s.contains("a (n=4)") && s.contains("line = 0.500"), "legend missing: {s}");
        let b =
            bars("t", "v", "c", &["x&y".into(), "z".into()], &[("s", NEUTRAL, vec![3.0, 0.0])], true, None).unwrap();
        assert!(b.contains("x&amp;y"), "labels are escaped by the SVG backend: {b}");
        assert_eq!(
            b.matches("<rect").count(),
            2,
            "background + one bar (a zero draws nothing; one series, no legend): {b}"
        );
        let v = bars(
            "t",
            "v",
            "c",
            &["0".into(), "1".into(), "miss".into()],
            &[("s", NEUTRAL, vec![3.0, 1.0, 2.0])],
            false,
            Some((2, "k = 2".into())),
        )
        .unwrap();
        assert!(v.contains("k = 2") && v.contains("<polyline"), "threshold line and its legend: {v}");
    }

    #[test]
    fn an_empty_run_renders_every_mining_plot_and_says_no_variants() {
        let (report, cfg, ds) = (RunReport::default(), Config::default(), Dataset::default());
        let page = render(&Inputs { report: &report, cfg: &cfg, ds: &ds, pairs: &[], candidates: &[], decisions: &[] })
            .unwrap();
        for id in plot_ids(false) {
            assert!(page.contains(&format!("<figure id=\"{id}\">\n<svg")), "{id} missing");
        }
        for id in ["plot-fidelity", "plot-round-trip", "plot-strategies"] {
            assert!(!page.contains(id), "{id} drawn without variants");
        }
        assert!(page.contains("No query variants were generated"));
        assert_eq!(
            page,
            render(&Inputs { report: &report, cfg: &cfg, ds: &ds, pairs: &[], candidates: &[], decisions: &[] })
                .unwrap()
        );
    }

    #[test]
    fn spread_picks_evenly_and_never_twice() {
        assert_eq!(spread(10, 3).collect::<Vec<_>>(), [0, 3, 6]);
        assert_eq!(spread(2, 30).collect::<Vec<_>>(), [0, 1]);
        assert_eq!(spread(0, 30).count(), 0);
    }

    #[test]
    fn above_positive_buckets_group_the_tail() {
        let d = BTreeMap::from([(0, 10), (1, 3), (7, 2), (12, 1)]);
        let b = above_positive_buckets(&d);
        let labels: Vec<&str> = b.iter().map(|(l, _)| l.as_str()).collect();
        assert_eq!(labels, ["0", "1", "2", "3", "4", "5", "6-9", "10-19"]);
        assert_eq!(b.iter().map(|(_, c)| c).sum::<usize>(), 16);
        assert_eq!(b[6].1, 2);
    }
}
