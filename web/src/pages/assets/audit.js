// The audit page's check, run by the reader's own browser (WebCrypto), not by the node it
// doubts: the checkpoint's Ed25519 signature under the key the reader gives, then a leaf's
// RFC 9162 inclusion proof up to the checkpoint's root. Nothing here trusts the page's text.
"use strict";

const decode64 = (text) => Uint8Array.from(atob(text.trim()), (c) => c.charCodeAt(0));
const encode64 = (bytes) => btoa(String.fromCharCode(...bytes));
const utf8 = (text) => new TextEncoder().encode(text);

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) { out.set(part, at); at += part.length; }
  return out;
}

async function sha256(bytes) {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
}

const same = (a, b) => a.length === b.length && a.every((byte, i) => byte === b[i]);

// RFC 9162 section 2.1.3.2: the root a leaf hash and its inclusion proof lead to.
async function rootFromInclusion(hash, index, size, proof) {
  if (index >= size) throw new Error(`leaf ${index} is beyond tree size ${size}`);
  let node = index;
  let last = size - 1;
  for (const sibling of proof) {
    if (last === 0) throw new Error("the proof is too long");
    if (node % 2 === 1 || node === last) {
      hash = await sha256(concat([1], sibling, hash));
      while (node % 2 === 0 && node !== 0) { node = Math.floor(node / 2); last = Math.floor(last / 2); }
    } else {
      hash = await sha256(concat([1], hash, sibling));
    }
    node = Math.floor(node / 2);
    last = Math.floor(last / 2);
  }
  if (last !== 0) throw new Error("the proof is too short");
  return hash;
}

// C2SP signed-note: the body, and the line whose key hash is this key's under its name.
async function verifyCheckpoint(text, publicKey) {
  const split = text.indexOf("\n\n");
  if (split < 0) throw new Error("the checkpoint has no signature lines");
  const body = text.slice(0, split + 1);
  const [origin, size, root] = body.split("\n");
  const key = await crypto.subtle.importKey("raw", publicKey, { name: "Ed25519" }, false, ["verify"]);
  for (const line of text.slice(split + 2).split("\n")) {
    const match = /^\u2014 (\S+) (\S+)$/.exec(line);
    if (!match) continue;
    const [, name, signature64] = match;
    const signature = decode64(signature64);
    const keyHash = (await sha256(concat(utf8(name), utf8("\n"), [1], publicKey))).slice(0, 4);
    if (signature.length !== 68 || !same(signature.slice(0, 4), keyHash)) continue;
    if (!(await crypto.subtle.verify({ name: "Ed25519" }, key, signature.slice(4), utf8(body)))) {
      throw new Error(`the signature of ${name} does not verify under this key`);
    }
    return { origin, size: Number(size), root: decode64(root), name };
  }
  throw new Error("no signature line is from this key");
}

async function fetchOk(url, as) {
  const response = await fetch(url, { cache: "no-store" });
  if (!response.ok) throw new Error(`${url} answered ${response.status}`);
  return as === "text" ? response.text() : response.json();
}

async function verifyLeaf(index, output) {
  output.textContent = `Checking leaf ${index}…`;
  output.className = "notice";
  try {
    const publicKey = decode64(document.getElementById("key").value);
    if (publicKey.length !== 32) throw new Error("the key must be 32 bytes of base64 (an Ed25519 public key)");
    const checkpoint = await verifyCheckpoint(await fetchOk("/v1/log/checkpoint", "text"), publicKey);
    const entries = await fetchOk(`/v1/log/entries?start=${index}&end=${index + 1}`);
    const entry = entries.entries.find((e) => e.index === index);
    if (!entry) throw new Error(`the node gave no leaf ${index}`);
    const proof = await fetchOk(`/v1/log/proof/inclusion?index=${index}&size=${checkpoint.size}`);
    const leafHash = await sha256(concat([0], decode64(entry.leaf)));
    const root = await rootFromInclusion(leafHash, index, checkpoint.size, proof.hashes.map(decode64));
    if (!same(root, checkpoint.root)) throw new Error("the proof leads to another root than the signed checkpoint's");
    output.textContent = `Verified in this browser: leaf ${index} is in the log of ${checkpoint.size} leaves ` +
      `(root ${encode64(checkpoint.root)}), signed by ${checkpoint.name} with the key you gave.`;
    output.className = "notice ok";
  } catch (error) {
    output.textContent = `Not verified: ${error.message}`;
    output.className = "notice bad";
  }
}

document.addEventListener("DOMContentLoaded", () => {
  for (const button of document.querySelectorAll("button[data-leaf]")) {
    button.hidden = false;
    button.addEventListener("click", () => {
      const index = Number(button.dataset.leaf);
      verifyLeaf(index, document.getElementById(`verdict-${index}`));
    });
  }
});
