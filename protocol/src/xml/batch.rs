//! Batches (`urn:x-ostracon:batch:0`): several XEP-0268 `<report/>` wrappers to one buddy in
//! one IQ set, each signed exactly as it would be alone, and the answer that gives each its
//! own outcome (spec/protocol.md, Batches).
//!
//! A burst of incidents to one buddy then costs a few stanzas instead of one IQ round trip
//! each; the batch adds no authority of its own, so nothing about it is signed.

use minidom::Element;

use crate::error::{Error, Excerpt, Result};
use crate::limits::MAX_BATCH_ITEMS;
use crate::xml::check_bounds;
use crate::xml::errors::StanzaError;

/// The batch namespace.
pub const BATCH_NS: &str = "urn:x-ostracon:batch:0";

/// `<batch/>` holding `wrappers`, in order (the sender keeps them within the `MAX_BATCH_*`
/// limits).
pub fn to_element(wrappers: impl IntoIterator<Item = Element>) -> Element {
    let mut batch = Element::bare("batch", BATCH_NS);
    for wrapper in wrappers {
        batch.append_child(wrapper);
    }
    batch
}

/// The wrappers of a received `<batch/>`, in order: at least one, at most
/// [`MAX_BATCH_ITEMS`]. Each is parsed on its own later; what a wrapper holds is its own
/// outcome, not the batch's.
pub fn wrappers_of(batch: &Element) -> Result<Vec<&Element>> {
    check_bounds(batch)?;
    expect_batch(batch)?;
    let wrappers: Vec<&Element> = batch.children().take(MAX_BATCH_ITEMS + 1).collect();
    if wrappers.len() > MAX_BATCH_ITEMS {
        return Err(Error::TooMany { what: "batched wrappers", max: MAX_BATCH_ITEMS });
    }
    if wrappers.is_empty() {
        return Err(Error::Missing { element: "batch", what: "a wrapper" });
    }
    Ok(wrappers)
}

/// What became of one wrapper of a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ItemOutcome {
    /// What an IQ result would have said alone: processed.
    Done,
    /// The error it would have been answered with alone.
    Refused {
        /// The RFC 6120 defined condition.
        condition: String,
        /// Our application condition, if any.
        app: Option<String>,
    },
}

/// The answer to a batch, in the IQ result: one `<item/>` per wrapper, in order; a refused
/// wrapper's item holds the `<error/>` it would have had alone.
pub fn answer_to_element(outcomes: &[Option<StanzaError>]) -> Element {
    let mut answer = Element::bare("batch", BATCH_NS);
    for outcome in outcomes {
        let mut item = Element::bare("item", BATCH_NS);
        if let Some(error) = outcome {
            item.append_child(error.to_element(BATCH_NS));
        }
        answer.append_child(item);
    }
    answer
}

/// Reads the answer to a batch of `sent` wrappers: the outcome of each, in order. An answer
/// that does not account for exactly `sent` wrappers is refused whole.
pub fn answer_from_element(answer: &Element, sent: usize) -> Result<Vec<ItemOutcome>> {
    check_bounds(answer)?;
    expect_batch(answer)?;
    let items: Vec<&Element> = answer.children().take(sent + 1).collect();
    if items.len() != sent {
        return Err(Error::InvalidValue { field: "batch answer items", value: Excerpt::new(&items.len().to_string()) });
    }
    items
        .into_iter()
        .map(|item| {
            if !item.is("item", BATCH_NS) {
                return Err(unexpected(item, "item"));
            }
            Ok(match item.get_child("error", BATCH_NS) {
                None => ItemOutcome::Done,
                Some(error) => {
                    let (condition, app) = StanzaError::conditions_of(error);
                    ItemOutcome::Refused {
                        condition: condition.unwrap_or_else(|| "undefined-condition".to_owned()),
                        app,
                    }
                }
            })
        })
        .collect()
}

fn expect_batch(element: &Element) -> Result<()> {
    if element.is("batch", BATCH_NS) { Ok(()) } else { Err(unexpected(element, "batch")) }
}

fn unexpected(element: &Element, expected: &'static str) -> Error {
    Error::UnexpectedElement {
        name: Excerpt::new(element.name()),
        namespace: Excerpt::new(&element.ns()),
        expected: if expected == "batch" { "a batch in urn:x-ostracon:batch:0" } else { "an item of a batch answer" },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::parse_bounded;

    fn report(n: usize) -> Element {
        let mut wrapper = Element::bare("report", crate::xml::xep0268::INCIDENT_NS);
        crate::xml::set_attr(&mut wrapper, "n", n.to_string());
        wrapper
    }

    #[test]
    fn a_batch_keeps_its_wrappers_in_order_and_is_bounded() {
        let batch = parse_bounded(&String::from(&to_element((0..3).map(report)))).unwrap();
        let wrappers = wrappers_of(&batch).unwrap();
        assert_eq!(wrappers.iter().map(|w| w.attr("n").unwrap()).collect::<Vec<_>>(), ["0", "1", "2"]);
        let full = to_element((0..MAX_BATCH_ITEMS).map(report));
        assert_eq!(wrappers_of(&full).unwrap().len(), MAX_BATCH_ITEMS);
        let over = to_element((0..=MAX_BATCH_ITEMS).map(report));
        assert!(matches!(wrappers_of(&over), Err(Error::TooMany { .. })));
        assert!(matches!(wrappers_of(&to_element([])), Err(Error::Missing { .. })));
        assert!(matches!(wrappers_of(&report(0)), Err(Error::UnexpectedElement { .. })));
    }

    #[test]
    fn each_wrapper_gets_its_own_outcome_and_a_miscounted_answer_is_refused() {
        let outcomes = [None, Some(StanzaError::rate_limited()), None];
        let answer = parse_bounded(&String::from(&answer_to_element(&outcomes))).unwrap();
        assert_eq!(
            answer_from_element(&answer, 3).unwrap(),
            [
                ItemOutcome::Done,
                ItemOutcome::Refused {
                    condition: "resource-constraint".to_owned(),
                    app: Some("rate-limited".to_owned())
                },
                ItemOutcome::Done,
            ]
        );
        assert!(answer_from_element(&answer, 2).is_err(), "more items than wrappers sent");
        assert!(answer_from_element(&answer, 4).is_err(), "fewer items than wrappers sent");
        let stray = parse_bounded("<batch xmlns='urn:x-ostracon:batch:0'><item/><other/></batch>").unwrap();
        assert!(answer_from_element(&stray, 2).is_err());
    }
}
