//! Key rotation, the same on a running node (`POST /v1/key/rotate`, which `ostracon key
//! rotate` calls while the node runs) and on a stopped one (the CLI opens the ledger itself).
//!
//! Order matters, since a half-done rotation strands buddies: the ledger is asked first
//! whether an earlier announcement is still queued; then the key files are written; then one
//! ledger transaction records the rotation with the claim the old key signed (so a reader who
//! pinned the old key can follow it) and queues that claim for every buddy, and every signer
//! switches. If that transaction fails, the old key files are put back.

use std::path::Path;

use ostracon_protocol::envelope::{Nonce, sign};
use ostracon_protocol::ids::BareJid;
use ostracon_protocol::keys::{KeyRotation, PublishedKey};
use ostracon_store::StoreError;
use ostracon_store::clock::Environment;
use ostracon_store::ledger::Ledger;
use ostracon_web::KeyRotated;

use crate::error::ServerError;
use crate::keyfile;

/// Rotates the key of the node whose ledger is `ledger` and whose key files are in
/// `data_dir`. The old key signs the rotation claim as `component` (as the domain while XMPP
/// is off); it is announced to buddies only when there is a component.
pub async fn rotate(
    ledger: &Ledger,
    data_dir: &Path,
    component: Option<&BareJid>,
    env: &dyn Environment,
    replica: Option<&str>,
) -> Result<KeyRotated, ServerError> {
    let now = env.now();
    if let Some(own) = replica {
        // Replicas must sign with one key, or they would publish two checkpoints for one log.
        let since = now.plus_secs(-crate::replica::RUNNING_WITHIN_SECS);
        let others: Vec<String> =
            ledger.store().replica_reports(since).await?.into_iter().map(|r| r.name).filter(|n| n != own).collect();
        if !others.is_empty() {
            return Err(StoreError::Rejected(format!(
                "other replicas of this node are running ({}): replicas sign with one key, so stop them, rotate here and copy the key files to them (docs/replicas.md)",
                others.join(", ")
            ))
            .into());
        }
    }
    if let Some(peer) = ledger.rotation_pending().await? {
        return Err(StoreError::Rejected(pending_message(&peer)).into());
    }
    let plan = keyfile::plan_rotation(data_dir, now, env.random_bytes())?;
    if plan.old.key.key_id() != ledger.signing_key().key_id() {
        return Err(ServerError::Config(format!(
            "{} holds key {}, but the node signs with {}: the key file was changed behind the node's back",
            data_dir.join(keyfile::KEY_FILE).display(),
            plan.old.key.key_id(),
            ledger.signing_key().key_id()
        )));
    }
    // The old key's word for the new one: logged for readers who pinned the old key, and
    // announced to buddies when there is a component to announce from (its JID signs).
    let claim = KeyRotation { old_kid: plan.old.key.key_id(), new_key: PublishedKey::new(plan.new.key.public(), now) };
    let nonce: [u8; 16] = env.random_bytes()[..16].try_into().unwrap_or([0; 16]);
    let signer = match component {
        Some(component) => component.clone(),
        None => {
            BareJid::parse(&ledger.config().key_name).map_err(|e| ServerError::Config(format!("[node] domain: {e}")))?
        }
    };
    let signed = sign(&claim, &plan.old.key, &signer, now, Nonce::from_bytes(&nonce))
        .map_err(|e| ServerError::Config(e.to_string()))?;
    let proof = signed.links()[0].clone();
    plan.write(data_dir)?;
    let switched = ledger
        .switch_key(
            plan.old.key.key_id().as_str(),
            plan.new.key.clone(),
            plan.published(),
            proof,
            component.is_some(),
            now,
        )
        .await;
    match switched {
        Ok(switch) => Ok(KeyRotated {
            old: plan.old.key.key_id().to_string(),
            new: plan.new.key.key_id().to_string(),
            fingerprint: plan.new.key.public().fingerprint(),
            announced_to: switch.announced_to.iter().map(ToString::to_string).collect(),
            log_index: switch.log_index,
        }),
        Err(error) => {
            plan.undo(data_dir)?;
            Err(error.into())
        }
    }
}

/// Why a rotation waits for the previous one.
pub fn pending_message(peer: &str) -> String {
    format!(
        "the previous key rotation has not reached {peer} yet; rotate again once it has (ostracon status shows its deliveries), or revoke that peer"
    )
}
