//! Our XEP-0275 answers: what we think of a subject, for a buddy that asks.

use minidom::Element;
use ostracon_protocol::ids::Offender;
use ostracon_protocol::xml::errors::StanzaError;
use ostracon_protocol::xml::reputation::Score;
use ostracon_store::model::ListAction;
use ostracon_store::reputation;

use super::node::{XmppNode, service_unavailable};

impl XmppNode {
    /// Our XEP-0275 answer about a subject: for a domain, the lower of its reputation score
    /// from quorum-backed evidence (spec/reputation.md) and what our lists say; for a JID, what our lists say. A listed
    /// subject scores -100 (block), -50 (quarantine) or -20 (observe); a subject we know
    /// nothing about has no score (`item-not-found`).
    pub(super) async fn score(&self, query: &Element) -> Result<Option<Element>, StanzaError> {
        let score = Score::from_element(query).map_err(|e| StanzaError::from_error(&e))?;
        let subject = Offender::from_jid(score.jid.clone());
        let matches = self.ledger.with_index(|index| match &subject {
            Offender::Jid(jid) => index.lookup_jid(jid),
            Offender::Domain(domain) => index.lookup_domain(domain),
            _ => Vec::new(),
        });
        let strongest = matches.iter().map(|(_, row)| row.listed.action).min();
        let listed = strongest.map(|action| match action {
            ListAction::Block => -100,
            ListAction::Quarantine => -50,
            ListAction::Observe => -20,
        });
        let computed = match &subject {
            Offender::Domain(domain) => {
                let params = &self.settings.reputation;
                // Only what we stand behind: one peer's accusations, and our buddies'
                // opinions, are not ours to pass on (spec/reputation.md, Bounds).
                let known = self
                    .ledger
                    .store()
                    .backed_reputation_subject(domain, params)
                    .await
                    .map_err(|_| service_unavailable())?;
                let nothing_known = known.facts.is_empty() && known.operator_override.is_none();
                (!nothing_known).then(|| reputation::score(&known, params, self.env.now()).score)
            }
            _ => None,
        };
        let num = match (listed, computed) {
            (Some(a), Some(b)) => a.min(b),
            (Some(n), None) | (None, Some(n)) => n,
            (None, None) => return Err(StanzaError::no_score()),
        };
        let answer = Score::answer(score.jid, num).map_err(|e| StanzaError::from_error(&e))?;
        Ok(Some(answer.to_element()))
    }
}
