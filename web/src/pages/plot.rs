//! The dashboard's plots, drawn on the server as inline SVG (no script, no external library):
//! incidents received per day, stacked by decision, and each list's size at the end of each
//! day. Each plot is a figure with a caption and the numbers in a table beneath it, for
//! screen readers and for those who would rather read.
//!
//! Colours come from classes in `ostracon.css`, since the pages' CSP allows no inline style.

use maud::{Markup, html};
use ostracon_store::index::KINDS;
use ostracon_store::model::Decision;
use serde_json::Value;

use super::layout::text;

/// The drawing's coordinate box; the SVG scales to the page's width.
const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 200.0;
/// Room for the axis labels.
const LEFT: f64 = 48.0;
const BOTTOM: f64 = 22.0;
const TOP: f64 = 8.0;

fn day_label(day: &Value) -> String {
    text(day).get(..10).unwrap_or_default().to_owned()
}

fn count(value: &Value) -> u64 {
    value.as_u64().unwrap_or(0)
}

/// The y coordinate of `value` on an axis from 0 to `max`.
fn y_of(value: f64, max: f64) -> f64 {
    TOP + (HEIGHT - TOP - BOTTOM) * (1.0 - value / max)
}

fn axes(days: &[Value], max: f64) -> Markup {
    let (Some(first), Some(last)) = (days.first(), days.last()) else { return html! {} };
    html! {
        line.axis x1=(LEFT) y1=(y_of(0.0, max)) x2=(WIDTH) y2=(y_of(0.0, max)) {}
        line.axis x1=(LEFT) y1=(TOP) x2=(LEFT) y2=(y_of(0.0, max)) {}
        text.tick x=(LEFT - 6.0) y=(TOP + 10.0) text-anchor="end" { (max) }
        text.tick x=(LEFT - 6.0) y=(y_of(0.0, max)) text-anchor="end" { "0" }
        text.tick x=(LEFT) y=(HEIGHT - 4.0) { (day_label(&first["day"])) }
        text.tick x=(WIDTH) y=(HEIGHT - 4.0) text-anchor="end" { (day_label(&last["day"])) }
    }
}

fn legend(names: &[&str], class_prefix: &str) -> Markup {
    html! {
        ul.legend aria-hidden="true" {
            @for name in names {
                li { span class=(format!("swatch {class_prefix}-{name}")) {} (name) }
            }
        }
    }
}

/// Incidents received per day, a bar per day stacked by decision.
pub(crate) fn decisions(days: &[Value]) -> Markup {
    let total = |day: &Value| Decision::NAMES.iter().map(|name| count(&day["decisions"][*name])).sum::<u64>();
    let max = days.iter().map(total).max().unwrap_or(0).max(1) as f64;
    let slot = (WIDTH - LEFT) / days.len().max(1) as f64;
    let received: u64 = days.iter().map(total).sum();
    // Each day's bar, its decisions stacked from the bottom: (x, top, height, decision, title).
    let mut bars = Vec::new();
    for (index, day) in days.iter().enumerate() {
        let x = LEFT + slot * index as f64 + slot * 0.15;
        let mut below = 0;
        for name in Decision::NAMES {
            let n = count(&day["decisions"][*name]);
            if n > 0 {
                let top = y_of((below + n) as f64, max);
                bars.push((
                    x,
                    top,
                    y_of(below as f64, max) - top,
                    *name,
                    format!("{}: {n} {name}", day_label(&day["day"])),
                ));
                below += n;
            }
        }
    }
    html! {
        figure.plot {
            figcaption { "Incidents received per day, by decision" }
            svg viewBox=(format!("0 0 {WIDTH} {HEIGHT}")) role="img"
                aria-label=(format!("{received} {} received over {} days", if received == 1 { "incident" } else { "incidents" }, days.len())) {
                (axes(days, max))
                @for (x, top, height, name, label) in &bars {
                    rect class=(format!("decision-{name}")) x=(x) y=(top) width=(slot * 0.7) height=(height) {
                        title { (label) }
                    }
                }
            }
            (legend(Decision::NAMES, "decision"))
            details {
                summary { "The numbers" }
                div.table-wrap { table {
                    thead { tr { th scope="col" { "Day" } @for name in Decision::NAMES { th scope="col" { (name) } } } }
                    tbody { @for day in days { tr {
                        td { (day_label(&day["day"])) }
                        @for name in Decision::NAMES { td { (count(&day["decisions"][*name])) } }
                    } } }
                } }
            }
        }
    }
}

/// Each list's size at the end of each day, a line per kind.
pub(crate) fn list_sizes(days: &[Value]) -> Markup {
    let size = |day: &Value, kind: &str| day["list_sizes"][kind].as_i64().unwrap_or(0).max(0) as f64;
    let max = days.iter().flat_map(|day| KINDS.map(|kind| size(day, kind))).fold(1.0, f64::max);
    let step = (WIDTH - LEFT) / days.len().saturating_sub(1).max(1) as f64;
    let points = |kind: &str| -> String {
        days.iter()
            .enumerate()
            .map(|(index, day)| format!("{:.1},{:.1}", LEFT + step * index as f64, y_of(size(day, kind), max)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let now: Vec<String> = days
        .last()
        .map(|day| KINDS.iter().map(|kind| format!("{kind} {}", size(day, kind))).collect())
        .unwrap_or_default();
    html! {
        figure.plot {
            figcaption { "List size at the end of each day" }
            svg viewBox=(format!("0 0 {WIDTH} {HEIGHT}")) role="img"
                aria-label=(format!("List sizes over {} days; now {}", days.len(), now.join(", "))) {
                (axes(days, max))
                @for kind in KINDS {
                    polyline class=(format!("kind-{kind}")) points=(points(kind)) {}
                }
            }
            (legend(&KINDS, "kind"))
            details {
                summary { "The numbers" }
                div.table-wrap { table {
                    thead { tr { th scope="col" { "Day" } @for kind in KINDS { th scope="col" { (kind) } } } }
                    tbody { @for day in days { tr {
                        td { (day_label(&day["day"])) }
                        @for kind in KINDS { td { (size(day, kind)) } }
                    } } }
                } }
            }
        }
    }
}
