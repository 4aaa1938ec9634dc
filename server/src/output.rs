//! How CLI verbs print their answers: for people on a terminal, a table for lists and
//! indented, aligned fields for one thing; for scripts, the API's own JSON (the default when
//! stdout is not a terminal, or with `-o json`). The text is built from the same JSON, so
//! the two never disagree.

use std::fmt::Write as _;

use serde_json::Value;

/// Longest cell a table prints; longer ones are cut with `…` (`-o json` has them whole).
const MAX_CELL: usize = 48;
/// Longest unbroken string the field view prints (signatures, payloads, base64); longer ones
/// show their length instead. Text with spaces (a description) is always shown.
const MAX_FIELD: usize = 160;

/// Text or JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// For people: tables and fields.
    Text,
    /// For scripts: the API's JSON, pretty-printed.
    Json,
}

impl Format {
    /// `-o text|json` if given, else text on a terminal and JSON otherwise.
    pub fn choose(flag: Option<&str>) -> Self {
        use std::io::IsTerminal as _;
        match flag {
            Some("json") => Self::Json,
            Some(_) => Self::Text,
            None if std::io::stdout().is_terminal() => Self::Text,
            None => Self::Json,
        }
    }
}

/// One column: its header and where its value is, as a JSON pointer into a row (`|`
/// separates alternatives, the first present wins).
#[derive(Clone, Copy, Debug)]
pub struct Column {
    /// The header.
    pub header: &'static str,
    /// JSON pointer(s) into the row.
    pub at: &'static str,
    /// How the value is shown.
    pub fit: Fit,
}

/// How a column shows its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fit {
    /// Cut at [`MAX_CELL`] characters.
    Clip,
    /// Whole, however long: an id the operator copies into the next command.
    Whole,
    /// Only whether it is there (`yes` or `-`).
    Presence,
}

/// A list view: where the rows are in the answer, and the columns.
#[derive(Clone, Copy, Debug)]
pub struct Table {
    /// JSON pointer to the array of rows.
    pub rows: &'static str,
    /// The columns.
    pub columns: &'static [Column],
    /// What to say when there are no rows.
    pub empty: &'static str,
}

/// How one verb's answer reads as text.
#[derive(Clone, Copy, Debug)]
pub enum View {
    /// A table.
    Table(Table),
    /// Indented fields.
    Fields,
}

const fn col(header: &'static str, at: &'static str) -> Column {
    Column { header, at, fit: Fit::Clip }
}

const fn id(header: &'static str, at: &'static str) -> Column {
    Column { header, at, fit: Fit::Whole }
}

const fn flag(header: &'static str, at: &'static str) -> Column {
    Column { header, at, fit: Fit::Presence }
}

/// `incident list`.
pub const INCIDENTS: View = View::Table(Table {
    rows: "/incidents",
    columns: &[
        col("SEQ", "/seq"),
        id("ID", "/id"),
        col("VERB", "/verb"),
        col("FROM", "/origin"),
        col("DECISION", "/decision"),
        col("CATEGORY", "/incident/category"),
        col("SEVERITY", "/incident/severity"),
        col("OFFENDERS", "/incident/offenders"),
        col("LISTED", "/effect/listed"),
        col("WAITING", "/effect/waiting"),
        col("HELD", "/effect/held"),
        col("RECEIVED", "/received_at"),
    ],
    empty: "no incidents",
});

/// `allow list`.
pub const ALLOW: View = View::Table(Table {
    rows: "/allow",
    columns: &[
        id("VALUE", "/value"),
        col("KIND", "/kind"),
        col("NOTE", "/note"),
        col("SINCE", "/created_at"),
        col("LOG", "/log_index"),
    ],
    empty: "no allow entries",
});

/// `deny list`.
pub const DENY: View = View::Table(Table {
    rows: "/deny",
    columns: &[
        id("VALUE", "/value"),
        col("KIND", "/kind"),
        col("ACTION", "/action"),
        col("EXPIRES", "/expires"),
        col("SINCE", "/first_seen"),
        col("LOG", "/log_index"),
    ],
    empty: "no deny entries",
});

/// `peers list`.
pub const PEERS: View = View::Table(Table {
    rows: "/peers",
    columns: &[
        id("JID", "/jid"),
        col("STATE", "/state"),
        col("TRUST", "/trust"),
        col("DELIVERY", "/delivery/status"),
        col("WAITING", "/delivery/pending"),
        col("LAST ANSWER", "/delivery/last_delivered_at"),
        id("KEY FINGERPRINT", "/fingerprint"),
        col("LAST ERROR", "/delivery/last_error"),
    ],
    empty: "no peers (ostracon peers add JID)",
});

/// `peers scores`.
pub const PEER_SCORES: View = View::Table(Table {
    rows: "/answers",
    columns: &[col("PEER", "/peer"), col("SCORE", "/num"), col("RECEIVED", "/received_at")],
    empty: "no answers yet (ostracon peers ask-scores SUBJECT)",
});

/// `token list`.
pub const TOKENS: View = View::Table(Table {
    rows: "/tokens",
    columns: &[
        col("NAME", "/name"),
        col("SCOPE", "/scope"),
        col("CREATED", "/created_at"),
        col("REVOKED", "/revoked_at"),
    ],
    empty: "no tokens",
});

/// `held list`.
pub const HELD: View = View::Table(Table {
    rows: "/held",
    columns: &[
        col("ID", "/id"),
        col("PEER", "/peer"),
        id("INCIDENT", "/incident"),
        col("CHANGE", "/kind"),
        col("HELD AT", "/held_at"),
    ],
    empty: "nothing held",
});

/// `reputation list`.
pub const REPUTATION: View = View::Table(Table {
    rows: "/scores",
    columns: &[
        col("DOMAIN", "/domain"),
        col("SCORE", "/score"),
        col("RAW", "/raw"),
        col("AS REPORTER", "/reporter_score"),
        col("FACTS", "/facts"),
        col("COMPONENTS", "/components"),
        col("COMPUTED", "/computed_at"),
    ],
    empty: "no scores yet",
});

/// `log show`: sealed leaves show what their opening says, marked `sealed`.
pub const LOG: View = View::Table(Table {
    rows: "/entries",
    columns: &[
        col("INDEX", "/index"),
        col("AT", "/record/at"),
        col("EVENT", "/record/event"),
        col(
            "OFFENDER",
            "/record/offender/value|/opening/record/offender/value|/record/incident|/opening/record/incident",
        ),
        flag("SEALED", "/record/sealed"),
        col("NOTE", "/opening/record/note|/opening/record/why|/record/why"),
    ],
    empty: "no leaves there",
});

/// `candidates`.
pub const CANDIDATES: View = View::Table(Table {
    rows: "/candidates",
    columns: &[
        id("VALUE", "/value"),
        col("KIND", "/kind"),
        col("WEIGHT", "/why/total_weight"),
        col("THRESHOLD", "/why/threshold"),
        col("REPORTERS", "/why/independent_reporters"),
    ],
    empty: "nothing awaits a quorum",
});

/// `outbox`.
pub const OUTBOX: View = View::Table(Table {
    rows: "/outbox",
    columns: &[
        col("ID", "/id"),
        col("PEER", "/peer"),
        col("KIND", "/kind"),
        id("ABOUT", "/about"),
        col("STATE", "/state"),
        col("ATTEMPTS", "/attempts"),
        col("QUEUED", "/queued_at"),
        col("NEXT TRY", "/next_attempt_at"),
        col("LAST ERROR", "/last_error"),
    ],
    empty: "the outbox is empty",
});

/// Prints `value` as `format` asks, through `view` for text.
pub fn print(value: &Value, format: Format, view: View) {
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(value).unwrap_or_default()),
        Format::Text => print!("{}", render(value, view)),
    }
}

/// The text form of an answer.
pub fn render(value: &Value, view: View) -> String {
    match view {
        View::Table(table) => render_table(value, &table),
        View::Fields => render_fields(value),
    }
}

fn render_table(value: &Value, table: &Table) -> String {
    let rows = value.pointer(table.rows).and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let mut out = String::new();
    if rows.is_empty() {
        let _ = writeln!(out, "{}", table.empty);
    } else {
        let cells: Vec<Vec<String>> = rows
            .iter()
            .map(|row| {
                table
                    .columns
                    .iter()
                    .map(|column| {
                        let found = pick(row, column.at);
                        match column.fit {
                            Fit::Presence => if found.is_some() { "yes" } else { "-" }.to_owned(),
                            Fit::Whole => cell(found),
                            Fit::Clip => clip(&cell(found), MAX_CELL),
                        }
                    })
                    .collect()
            })
            .collect();
        let widths: Vec<usize> = table
            .columns
            .iter()
            .enumerate()
            .map(|(i, column)| {
                cells.iter().map(|row| row[i].chars().count()).chain([column.header.len()]).max().unwrap_or(0)
            })
            .collect();
        let line = |texts: &mut dyn Iterator<Item = &str>| {
            let padded: Vec<String> =
                texts.zip(&widths).map(|(text, width)| format!("{text:<width$}", width = *width)).collect();
            padded.join("  ").trim_end().to_owned()
        };
        let _ = writeln!(out, "{}", line(&mut table.columns.iter().map(|c| c.header)));
        for row in &cells {
            let _ = writeln!(out, "{}", line(&mut row.iter().map(String::as_str)));
        }
    }
    // Paged answers say how to get the next page.
    for (key, flag) in [("next", "--before"), ("next_offset", "--offset")] {
        if let Some(next) = value.get(key).filter(|next| !next.is_null()) {
            let _ = writeln!(out, "more: {flag} {}", cell(Some(next)));
        }
    }
    out
}

/// The first of `at`'s `|`-separated pointers present in `row`.
fn pick<'a>(row: &'a Value, at: &str) -> Option<&'a Value> {
    at.split('|').find_map(|pointer| row.pointer(pointer).filter(|value| !value.is_null()))
}

/// A value as one table cell: `-` for nothing, lists joined with commas, an offender by its
/// value, a map as `key=value` pairs.
fn cell(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => "-".to_owned(),
        // One line per row: a newline or tab inside reported text would break the table.
        Some(Value::String(text)) => text.replace(char::is_control, " "),
        Some(Value::Bool(true)) => "yes".to_owned(),
        Some(Value::Bool(false)) => "no".to_owned(),
        Some(Value::Number(number)) => number.to_string(),
        Some(Value::Array(items)) if items.is_empty() => "-".to_owned(),
        Some(Value::Array(items)) => items.iter().map(|item| cell(Some(item))).collect::<Vec<_>>().join(", "),
        Some(Value::Object(map)) => match map.get("value") {
            Some(inner) => cell(Some(inner)),
            None => map.iter().map(|(k, v)| format!("{k}={}", cell(Some(v)))).collect::<Vec<_>>().join(", "),
        },
    }
}

fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let kept: String = text.chars().take(max - 1).collect();
    format!("{kept}…")
}

/// One thing as indented `name  value` lines: nested objects indent, lists of objects are
/// `-` items, lists of plain values are joined with commas.
fn render_fields(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(_) => write_object(&mut out, value, 0),
        other => {
            let _ = writeln!(out, "{}", cell(Some(other)));
        }
    }
    out
}

fn write_object(out: &mut String, value: &Value, indent: usize) {
    let Value::Object(map) = value else { return };
    // Aligned over the keys printed with a value on their line.
    let width = map.iter().filter(|(_, item)| !nests(item)).map(|(key, _)| key.len()).max().unwrap_or(0);
    let pad = " ".repeat(indent);
    for (key, item) in map {
        match item {
            Value::Object(_) if nests(item) => {
                let _ = writeln!(out, "{pad}{key}");
                write_object(out, item, indent + 2);
            }
            Value::Array(items) if nests(item) => {
                let _ = writeln!(out, "{pad}{key}");
                for entry in items {
                    let mut nested = String::new();
                    write_object(&mut nested, entry, indent + 4);
                    // The first line of each item carries its `-`.
                    let dash = format!("{pad}  - ");
                    let _ = write!(out, "{dash}{}", nested.trim_start());
                }
            }
            _ => {
                let text = match item {
                    Value::String(text) if text.chars().count() > MAX_FIELD && !text.contains(' ') => {
                        format!("({} characters; -o json shows it)", text.chars().count())
                    }
                    Value::Object(inner) if inner.is_empty() => "-".to_owned(),
                    _ => cell(Some(item)),
                };
                let _ = writeln!(out, "{pad}{key:<width$}  {text}");
            }
        }
    }
}

/// Whether a value is printed below its key, indented, rather than on the key's line.
fn nests(value: &Value) -> bool {
    match value {
        Value::Object(inner) => !inner.is_empty() && !is_offender(value),
        Value::Array(items) => items.iter().any(|item| item.is_object() && !is_offender(item)),
        _ => false,
    }
}

/// `{"kind": .., "value": ..}` reads as its value.
fn is_offender(value: &Value) -> bool {
    value.as_object().is_some_and(|map| map.len() == 2 && map.contains_key("kind") && map.contains_key("value"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_table_aligns_columns_and_reads_offenders_and_nothing_plainly() {
        let answer = json!({
            "incidents": [
                { "seq": 12, "id": "a.example:1", "verb": "report", "origin": "peer", "decision": "pending",
                  "incident": { "category": "spam", "severity": "high",
                                "offenders": [{ "kind": "ip", "value": "192.0.2.7" }, { "kind": "jid", "value": "bot@spam.example" }] },
                  "effect": { "listed": 0, "waiting": 2, "held": 0 }, "received_at": "2026-12-02T10:00:00Z" },
                { "seq": 9, "id": "b.example:2", "verb": "report", "origin": "local", "decision": "accepted",
                  "incident": { "category": "flood", "severity": "low", "offenders": [] },
                  "effect": { "listed": 1, "waiting": 0, "held": 0 }, "received_at": null },
            ],
            "next": 9,
        });
        let text = render(&answer, INCIDENTS);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("SEQ  ID           VERB    FROM   DECISION  CATEGORY"), "{text}");
        assert!(lines[1].contains("192.0.2.7, bot@spam.example"), "{text}");
        assert!(lines[2].contains("flood     low       -"), "{text}");
        assert!(lines[2].ends_with('-'), "a missing time is a dash: {text}");
        assert_eq!(lines[3], "more: --before 9");
        assert_eq!(render(&json!({ "incidents": [] }), INCIDENTS), "no incidents\n");
    }

    #[test]
    fn fields_indent_nested_things_and_hide_long_blobs() {
        let answer = json!({
            "listed": true,
            "query": { "kind": "ip", "value": "192.0.2.7" },
            "matches": [{ "value": "192.0.2.7", "why": { "threshold": 1.0, "total_weight": 1.5 } }],
            "envelope": "x".repeat(400),
            "description": format!("{} and\nmore", "flooded the room ".repeat(12)),
        });
        let text = render(&answer, View::Fields);
        assert!(text.contains("listed       yes\n"), "{text}");
        assert!(text.contains("query        192.0.2.7\n"), "an offender reads as its value: {text}");
        assert!(text.contains("matches\n  - value  192.0.2.7\n"), "{text}");
        assert!(text.contains("      threshold     1.0\n"), "{text}");
        assert!(text.contains("envelope     (400 characters; -o json shows it)"), "{text}");
        assert!(text.contains("flooded the room  and more\n"), "text is shown whole, on one line: {text}");
    }

    #[test]
    fn long_cells_are_cut_and_sealed_leaves_show_their_opening() {
        let answer = json!({ "entries": [
            { "index": 3, "record": { "at": "2026-12-02T12:57:24Z", "event": "allow-added", "sealed": "+Snl" },
              "opening": { "record": { "offender": { "kind": "cidr", "value": "198.51.100.0/24" }, "note": "office" } } },
            { "index": 4, "record": { "at": "2026-12-02T12:57:25Z", "event": "entry-added",
              "offender": { "kind": "jid", "value": format!("{}@spam.example", "b".repeat(60)) } } },
        ]});
        let text = render(&answer, LOG);
        assert!(text.contains("allow-added  198.51.100.0/24"), "{text}");
        assert!(text.contains("yes     office"), "a sealed leaf is marked, its hash not shown: {text}");
        let long = text.lines().nth(2).unwrap();
        assert!(long.contains('…') && !long.contains("spam.example"), "{text}");
    }
}
