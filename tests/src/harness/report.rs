//! The harness report: `report.md` (tables), `report.html` (the same with plots), one SVG per
//! plot (convergence as a cumulative curve, traffic per node as bars) and `report.json` (the
//! raw outcome, for scripts that compare runs).
//!
//! The SVG is written by hand: two simple chart shapes do not justify a plotting dependency.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::Result;
use super::scenarios::Outcome;

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 300.0;
const MARGIN: f64 = 48.0;

/// Writes the report for `outcomes` into `dir` and returns the path of `report.html`.
pub fn write(dir: &Path, outcomes: &[Outcome]) -> Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let mut html = String::from(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Ostracon federation harness</title>\n\
         <style>body{font-family:sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}table{border-collapse:collapse}\
         td,th{border:1px solid #ccc;padding:.2rem .5rem;text-align:right}td:first-child,th:first-child{text-align:left}\
         .pass{color:#070}.fail{color:#b00}</style></head><body>\n<h1>Ostracon federation harness</h1>\n",
    );
    let mut markdown = String::from("# Ostracon federation harness\n\n");
    for outcome in outcomes {
        let name = outcome.scenario.to_string();
        let convergence_svg = convergence_svg(outcome);
        let traffic_svg = traffic_svg(outcome);
        std::fs::write(dir.join(format!("{name}-convergence.svg")), &convergence_svg)?;
        std::fs::write(dir.join(format!("{name}-traffic.svg")), &traffic_svg)?;
        let section = section_markdown(outcome);
        html.push_str(&markdown_to_html(&section));
        markdown.push_str(&section);
        let _ = write!(html, "<h3>Convergence</h3>\n{convergence_svg}\n<h3>Traffic per node</h3>\n{traffic_svg}\n");
    }
    html.push_str("</body></html>\n");
    std::fs::write(dir.join("report.md"), markdown)?;
    std::fs::write(dir.join("report.html"), html)?;
    let json = serde_json::to_string_pretty(outcomes).unwrap_or_default();
    std::fs::write(dir.join("report.json"), json)?;
    Ok(dir.join("report.html"))
}

fn secs(value: Option<f64>) -> String {
    value.map_or("-".to_owned(), |v| format!("{v:.2} s"))
}

/// The markdown of one scenario: summary, checks, measures, per-node traffic and memory.
pub fn section_markdown(outcome: &Outcome) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "## {}\n\n{}\n", outcome.scenario, outcome.scenario.story());
    let _ = writeln!(
        out,
        "| nodes | servers | topology | offenders tracked | p50 | p99 | max | from its own report p50 / p99 | false positives | false negatives | result |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|");
    let _ = writeln!(
        out,
        "| {} | {} | {} | {} | {} | {} | {} | {} / {} | {} | {} | {} |\n",
        outcome.nodes,
        outcome.servers,
        outcome.topology,
        outcome.tracks.len(),
        secs(outcome.convergence_quantile(0.5)),
        secs(outcome.convergence_quantile(0.99)),
        secs(outcome.convergence_quantile(1.0)),
        secs(outcome.from_report_quantile(0.5)),
        secs(outcome.from_report_quantile(0.99)),
        outcome.false_positives,
        outcome.false_negatives,
        if outcome.passed() { "pass" } else { "FAIL" }
    );
    out.push_str(
        "Convergence is the time from the first report until every honest node lists the offender; \
         \"from its own report\" starts at the submission (or answer) that named it.\n\n",
    );
    if !outcome.checks.is_empty() {
        out.push_str("| check | result | detail |\n|---|---|---|\n");
        for check in &outcome.checks {
            let _ = writeln!(
                out,
                "| {} | {} | {} |",
                check.name,
                if check.passed { "pass" } else { "FAIL" },
                check.detail.replace('|', "\\|")
            );
        }
        out.push('\n');
    }
    if !outcome.measures.is_empty() {
        out.push_str("| measure | value |\n|---|---|\n");
        for (name, value) in &outcome.measures {
            let _ = writeln!(out, "| {name} | {value} |");
        }
        out.push('\n');
    }
    out.push_str(
        "| node | role | stanzas in | stanzas out | KiB in | KiB out | peak RSS (MiB) |\n|---|---|---|---|---|---|---|\n",
    );
    for node in &outcome.stats {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {:.1} | {:.1} | {} |",
            node.domain,
            node.role,
            node.stanzas_in,
            node.stanzas_out,
            node.bytes_in as f64 / 1024.0,
            node.bytes_out as f64 / 1024.0,
            node.peak_rss_kib.map_or("-".to_owned(), |k| format!("{:.1}", k as f64 / 1024.0))
        );
    }
    let _ = writeln!(out, "\nScenario wall time: {:.1} s.\n", outcome.seconds);
    out
}

/// Turns the heading, pipe tables and paragraphs of [`section_markdown`] into HTML: the
/// story is written once, and each table's first row is its header (`<th>`).
fn markdown_to_html(markdown: &str) -> String {
    let mut html = String::new();
    let mut in_table = false;
    let lines: Vec<&str> = markdown.lines().collect();
    for (index, line) in lines.iter().enumerate() {
        if let Some(heading) = line.strip_prefix("## ") {
            let _ = writeln!(html, "<h2>{}</h2>", escape(heading));
            continue;
        }
        if line.starts_with('|') {
            if line.starts_with("|---") {
                continue;
            }
            if !in_table {
                html.push_str("<table>\n");
                in_table = true;
            }
            let header = lines.get(index + 1).is_some_and(|next| next.starts_with("|---"));
            let cells: Vec<String> = line
                .trim_matches('|')
                .split(" | ")
                .map(|c| {
                    let c = escape(c.trim());
                    match c.as_str() {
                        "pass" => "<span class=\"pass\">pass</span>".to_owned(),
                        "FAIL" => "<span class=\"fail\">FAIL</span>".to_owned(),
                        _ => c,
                    }
                })
                .collect();
            let cell = if header { "th" } else { "td" };
            let _ = writeln!(html, "<tr><{cell}>{}</{cell}></tr>", cells.join(&format!("</{cell}><{cell}>")));
        } else {
            if in_table {
                html.push_str("</table>\n");
                in_table = false;
            }
            if !line.trim().is_empty() {
                let _ = writeln!(html, "<p>{}</p>", escape(line));
            }
        }
    }
    if in_table {
        html.push_str("</table>\n");
    }
    html
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn svg_open(title: &str) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" \
         font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"16\" text-anchor=\"middle\" font-size=\"13\">{}</text>\n",
        WIDTH / 2.0,
        escape(title)
    )
}

/// Draws the axes with four ticks each at round steps (1, 2, 2.5 or 5 times a power of ten), each
/// label with the decimals its step needs. Returns the axis maxima actually drawn (the data's
/// maxima rounded up to four steps), which the caller scales its marks to.
fn axes(out: &mut String, x_label: &str, y_label: &str, x_max: f64, y_max: f64, y_unit: &str) -> (f64, f64) {
    let (left, bottom, right, top) = (MARGIN, HEIGHT - MARGIN, WIDTH - 16.0, 28.0);
    let _ = writeln!(out, "<line x1=\"{left}\" y1=\"{bottom}\" x2=\"{right}\" y2=\"{bottom}\" stroke=\"black\"/>");
    let _ = writeln!(out, "<line x1=\"{left}\" y1=\"{bottom}\" x2=\"{left}\" y2=\"{top}\" stroke=\"black\"/>");
    let (x_step, y_step) = (tick_step(x_max), tick_step(y_max));
    for tick in 0..=4 {
        let fraction = f64::from(tick) / 4.0;
        let y = bottom - fraction * (bottom - top);
        let _ = writeln!(
            out,
            "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}{y_unit}</text>",
            left - 4.0,
            y + 4.0,
            tick_label(y_step * f64::from(tick), y_step)
        );
        let x = left + fraction * (right - left);
        if x_max > 0.0 {
            let _ = writeln!(
                out,
                "<text x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
                bottom + 14.0,
                tick_label(x_step * f64::from(tick), x_step)
            );
        }
    }
    let _ = writeln!(
        out,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
        (left + right) / 2.0,
        HEIGHT - 8.0,
        escape(x_label)
    );
    let _ = writeln!(
        out,
        "<text x=\"12\" y=\"{}\" text-anchor=\"middle\" transform=\"rotate(-90 12 {})\">{}</text>",
        (top + bottom) / 2.0,
        (top + bottom) / 2.0,
        escape(y_label)
    );
    (x_step * 4.0, y_step * 4.0)
}

/// The smallest round step (1, 2, 2.5 or 5 times a power of ten) of which four reach `max`.
fn tick_step(max: f64) -> f64 {
    let raw = (max / 4.0).max(f64::MIN_POSITIVE);
    let power = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        .find(|step| *step >= raw * (1.0 - 1e-9))
        .unwrap_or(10.0 * power)
}

/// `value` with as many decimals as `step` needs (0.25 s steps: two; 50 stanzas: none).
fn tick_label(value: f64, step: f64) -> String {
    let decimals = (0..6).find(|d| (step * 10f64.powi(*d)).fract().abs() < 1e-6).unwrap_or(6) as usize;
    format!("{value:.decimals$}")
}

/// The share of (offender, honest node) listings done by each moment: a cumulative curve.
pub fn convergence_svg(outcome: &Outcome) -> String {
    let mut times: Vec<f64> = outcome.tracks.iter().flat_map(|t| t.listed_after.iter().flatten().copied()).collect();
    times.sort_by(f64::total_cmp);
    let total = outcome.tracks.iter().map(|t| t.listed_after.len()).sum::<usize>().max(1);
    let mut out = svg_open(&format!("{}: listings reached over time ({} nodes)", outcome.scenario, outcome.nodes));
    let latest = times.last().copied().unwrap_or(1.0).max(0.001);
    let (x_max, _) = axes(&mut out, "seconds since the first report", "listings done", latest, 100.0, "%");
    let (left, bottom, right, top) = (MARGIN, HEIGHT - MARGIN, WIDTH - 16.0, 28.0);
    let mut points = format!("{left:.1},{bottom:.1}");
    for (i, t) in times.iter().enumerate() {
        let x = left + t / x_max * (right - left);
        let y_before = bottom - (i as f64 / total as f64) * (bottom - top);
        let y = bottom - ((i + 1) as f64 / total as f64) * (bottom - top);
        let _ = write!(points, " {x:.1},{y_before:.1} {x:.1},{y:.1}");
    }
    let _ = writeln!(out, "<polyline fill=\"none\" stroke=\"#1f5fa8\" stroke-width=\"2\" points=\"{points}\"/>");
    if times.is_empty() {
        let _ = writeln!(
            out,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">no tracked listings in this scenario</text>",
            WIDTH / 2.0,
            HEIGHT / 2.0
        );
    }
    out.push_str("</svg>\n");
    out
}

/// Stanzas sent and received per node, as paired bars.
pub fn traffic_svg(outcome: &Outcome) -> String {
    let mut out = svg_open(&format!("{}: XMPP stanzas per node", outcome.scenario));
    let most = outcome.stats.iter().map(|s| s.stanzas_in.max(s.stanzas_out)).max().unwrap_or(1).max(1) as f64;
    let (_, y_max) = axes(&mut out, "node (blue: sent, orange: received)", "stanzas", 0.0, most, "");
    let (left, bottom, right, top) = (MARGIN, HEIGHT - MARGIN, WIDTH - 16.0, 28.0);
    let slot = (right - left) / outcome.stats.len().max(1) as f64;
    for (i, node) in outcome.stats.iter().enumerate() {
        let x = left + i as f64 * slot;
        for (j, (value, colour)) in
            [(node.stanzas_out, "#1f5fa8"), (node.stanzas_in, "#e08a1e")].into_iter().enumerate()
        {
            let height = value as f64 / y_max * (bottom - top);
            let _ = writeln!(
                out,
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{height:.1}\" fill=\"{colour}\"/>",
                x + slot * (0.1 + 0.4 * j as f64),
                bottom - height,
                slot * 0.38
            );
        }
        if outcome.stats.len() <= 20 {
            let label = node.domain.trim_end_matches(".test");
            let _ = writeln!(
                out,
                "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
                x + slot / 2.0,
                bottom + 14.0,
                escape(label)
            );
        }
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_with_the_decimals_they_need() {
        let labels = |max: f64| -> Vec<String> {
            let step = tick_step(max);
            (0..=4).map(|tick| tick_label(step * f64::from(tick), step)).collect()
        };
        assert_eq!(labels(8.8), ["0.0", "2.5", "5.0", "7.5", "10.0"]);
        assert_eq!(labels(0.31), ["0.0", "0.1", "0.2", "0.3", "0.4"]);
        assert_eq!(labels(100.0), ["0", "25", "50", "75", "100"]);
        assert_eq!(labels(1805.0), ["0", "500", "1000", "1500", "2000"]);
    }

    #[test]
    fn the_html_has_one_story_and_header_cells() {
        let html = markdown_to_html("## botnet\n\nBots attack.\n\n| node | role |\n|---|---|\n| n0.test | victim |\n");
        assert_eq!(html.matches("Bots attack.").count(), 1, "{html}");
        assert!(html.contains("<h2>botnet</h2>"), "{html}");
        assert!(html.contains("<tr><th>node</th><th>role</th></tr>"), "{html}");
        assert!(html.contains("<tr><td>n0.test</td><td>victim</td></tr>"), "{html}");
    }
}
