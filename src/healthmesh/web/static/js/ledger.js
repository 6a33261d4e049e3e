// HealthMesh console, transparency log: check an entry's inclusion IN THE BROWSER.
//
// Fetch the latest checkpoint (a C2SP signed note: origin, tree size, base64 root hash) and the
// entry's inclusion proof from the public API, hash the entry's exact body bytes (RFC 9162 leaf
// hash: SHA-256(0x00 || UTF-8 body)), fold the proof into a root by RFC 9162 section 2.1.3.2
// (node hash: SHA-256(0x01 || left || right)) and compare it with the checkpoint's root hash.
// SHA-256 is WebCrypto's. The checkpoint's Ed25519 signature is checked too where WebCrypto
// offers Ed25519 (not every browser does), against the key the server publishes; the full check
// (keys you pinned, cosignatures, consistency) is `healthmesh ledger verify`.
(function () {
  "use strict";
  const API = "/api/v1/ledger";
  const encoder = new TextEncoder();

  // --- bytes ------------------------------------------------------------------------------------
  function fromBase64(text) {
    let binary;
    try { binary = atob(text); } catch (error) { throw new Error(`"${text.slice(0, 20)}" is not base64`); }
    return Uint8Array.from(binary, (c) => c.charCodeAt(0));
  }
  const toBase64 = (bytes) => btoa(String.fromCharCode(...bytes));
  const toHex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  const short = (hex) => `${hex.slice(0, 12)}…`;
  function equal(a, b) {
    if (a.length !== b.length) return false;
    return a.every((value, index) => value === b[index]);
  }
  async function sha256(...parts) {
    const total = parts.reduce((n, part) => n + part.length, 0);
    const joined = new Uint8Array(total);
    let offset = 0;
    for (const part of parts) { joined.set(part, offset); offset += part.length; }
    return new Uint8Array(await crypto.subtle.digest("SHA-256", joined));
  }

  // --- RFC 9162 -----------------------------------------------------------------------------------
  /** Leaf hash of an entry: SHA-256(0x00 || entry bytes); a string is taken as UTF-8. */
  const leafHash = (entry) => sha256(Uint8Array.of(0), typeof entry === "string" ? encoder.encode(entry) : entry);
  /** Interior node hash: SHA-256(0x01 || left || right). */
  const nodeHash = (left, right) => sha256(Uint8Array.of(1), left, right);

  /** RFC 9162 2.1.3.2: the root hash an inclusion proof leads to from leaf `index` of a tree of
   * `size` leaves (throws if the proof's length does not fit the path). */
  async function rootFromInclusion(index, size, leaf, proof) {
    if (!(index >= 0 && index < size)) throw new Error(`leaf ${index} is not in a tree of ${size} leaves`);
    let fn = index;
    let sn = size - 1;
    let r = leaf;
    const half = (n) => Math.floor(n / 2);
    for (const p of proof) {
      if (p.length !== 32) throw new Error(`a proof hash is ${p.length} bytes, not 32`);
      if (sn === 0) throw new Error("the proof is longer than the path to the root");
      if (fn % 2 === 1 || fn === sn) {
        r = await nodeHash(p, r);
        while (fn % 2 === 0 && fn !== 0) { fn = half(fn); sn = half(sn); }
      } else {
        r = await nodeHash(r, p);
      }
      fn = half(fn);
      sn = half(sn);
    }
    if (sn !== 0) throw new Error("the proof is shorter than the path to the root");
    return r;
  }

  // --- checkpoints (C2SP signed note, tlog-checkpoint) -------------------------------------------
  /** Parse a checkpoint note: {origin, size, root, body, signatures: [{name, bytes}]}. */
  function parseCheckpoint(note) {
    const split = note.indexOf("\n\n");
    if (split < 0) throw new Error("the checkpoint is not a signed note (no blank line before its signatures)");
    const body = note.slice(0, split + 1);
    const lines = body.slice(0, -1).split("\n");
    if (lines.length < 3) throw new Error("the checkpoint has fewer than three lines (origin, size, root hash)");
    const [origin, sizeText, rootText] = lines;
    if (!/^(0|[1-9][0-9]*)$/.test(sizeText)) throw new Error(`the checkpoint's tree size "${sizeText}" is not a number`);
    const root = fromBase64(rootText);
    if (root.length !== 32) throw new Error(`the checkpoint's root hash is ${root.length} bytes, not 32`);
    const signatures = note.slice(split + 2).split("\n").filter(Boolean).map((line) => {
      const match = /^\u2014 (\S+) (\S+)$/.exec(line);
      if (!match) throw new Error(`unreadable signature line "${line.slice(0, 40)}"`);
      return { name: match[1], bytes: fromBase64(match[2]) };
    });
    return { origin, size: Number(sizeText), root, body, signatures, note };
  }

  // The log's signature, where WebCrypto has Ed25519: "verified", "unsupported", or an Error.
  let keysPromise = null;
  async function checkSignature(checkpoint) {
    keysPromise = keysPromise || getJson(`${API}/keys`);
    const keys = await keysPromise;
    // <name>+<8 hex key id>+<base64 key>: the base64 may hold "+" too, so split twice only.
    const match = /^([^+]+)\+([0-9a-f]{8})\+(.+)$/.exec(String(keys.log || ""));
    if (!match) throw new Error("the log's published key is not a note verifier key");
    const [, name, idHex, keyText] = match;
    const raw = fromBase64(keyText || "");
    if (raw.length !== 33 || raw[0] !== 1) throw new Error("the log's published key is not an Ed25519 note key");
    const signature = checkpoint.signatures.find((s) => s.name === name && toHex(s.bytes.slice(0, 4)) === idHex);
    if (!signature) throw new Error(`the checkpoint carries no signature by the log's key (${name})`);
    let key;
    try {
      key = await crypto.subtle.importKey("raw", raw.slice(1), { name: "Ed25519" }, false, ["verify"]);
    } catch (error) {
      return "unsupported";
    }
    const valid = await crypto.subtle.verify({ name: "Ed25519" }, key, signature.bytes.slice(4), encoder.encode(checkpoint.body));
    if (!valid) throw new Error("the checkpoint's Ed25519 signature does not verify against the log's published key");
    return "verified";
  }

  // --- the API ------------------------------------------------------------------------------------
  async function getText(url, allowMissing) {
    const response = await fetch(url, { credentials: "same-origin", cache: "no-store" });
    if (allowMissing && response.status === 404) return null;
    if (!response.ok) throw new Error(`GET ${url} answered ${response.status}`);
    return response.text();
  }
  async function getJson(url) {
    const response = await fetch(url, { credentials: "same-origin", cache: "no-store", headers: { Accept: "application/json" } });
    if (!response.ok) {
      let detail = "";
      try { detail = (await response.json()).detail || ""; } catch (error) { /* not a problem document */ }
      throw new Error(`GET ${url} answered ${response.status}${detail ? `: ${detail}` : ""}`);
    }
    return response.json();
  }

  async function proveIn(checkpoint, index, leaf) {
    const proof = await getJson(`${API}/proofs/inclusion?index=${index}&size=${checkpoint.size}`);
    const root = await rootFromInclusion(index, checkpoint.size, leaf, proof.proof.map(fromBase64));
    return { root, logLeaf: proof.leaf_hash, matches: equal(root, checkpoint.root) };
  }

  /**
   * Check that `body` (the entry's exact text) is entry `index` of the log's latest checkpoint.
   * Resolves to {ok, message, size, root, leaf, signature, cosigned}; never rejects.
   */
  async function verifyInclusion(index, body) {
    const out = { ok: false, index, message: "", size: null, root: null, leaf: null, signature: null, cosigned: null };
    try {
      const checkpoint = parseCheckpoint(await getText(`${API}/checkpoint`));
      out.size = checkpoint.size;
      out.root = toBase64(checkpoint.root);
      try {
        out.signature = await checkSignature(checkpoint);
      } catch (error) {
        out.signature = "invalid";
        out.message = `Failed: ${error.message}.`;
        return out;
      }
      if (index >= checkpoint.size) {
        out.message = `Failed: entry ${index} is not in checkpoint ${checkpoint.size} (a tree of ${checkpoint.size} entries).`;
        return out;
      }
      const leaf = await leafHash(body);
      out.leaf = toHex(leaf);
      const latest = await proveIn(checkpoint, index, leaf);
      if (!latest.matches) {
        out.message = latest.logLeaf !== out.leaf
          ? `Failed: this body hashes to leaf ${short(out.leaf)}, not the leaf the log proves at index ${index} (${short(latest.logLeaf)}); with it the proof does not reach checkpoint ${checkpoint.size}'s root hash ${short(out.root)}.`
          : `Failed: the log's inclusion proof for entry ${index} leads to root ${short(toBase64(latest.root))}, not checkpoint ${checkpoint.size}'s root hash ${short(out.root)}.`;
        return out;
      }
      out.ok = true;
      const signed = out.signature === "verified"
        ? "its Ed25519 signature verified in this browser"
        : "its signature not checked here (this browser's WebCrypto has no Ed25519)";
      out.message = `Included in checkpoint ${checkpoint.size}: the root hash computed here matches (${short(out.root)}); ${signed}.`;
      out.cosigned = await cosignedPart(index, leaf, checkpoint);
      if (out.cosigned) out.message += ` ${out.cosigned.message}`;
      if (out.cosigned && out.cosigned.failed) { out.ok = false; out.message = `Failed: ${out.cosigned.message}`; }
    } catch (error) {
      out.ok = false;
      out.message = `Failed: ${error.message}.`;
    }
    return out;
  }

  // The newest checkpoint a witness cosigned, when it covers the entry: the entry must be in it too.
  async function cosignedPart(index, leaf, latest) {
    // The page says whether one exists (sparing the console a 404); elsewhere, ask.
    const known = document.querySelector("[data-cosigned]");
    const note = known && known.dataset.cosigned === "no" ? null : await getText(`${API}/checkpoint?cosigned=true`, true);
    if (note === null) return { message: "No checkpoint has been cosigned by a witness yet." };
    const checkpoint = parseCheckpoint(note);
    const witnesses = checkpoint.signatures.filter((s) => s.name !== checkpoint.origin).map((s) => s.name);
    const by = witnesses.length ? `cosigned by ${witnesses.join(", ")}` : "cosigned";
    if (index >= checkpoint.size) {
      return { message: `It is newer than the latest cosigned checkpoint (${checkpoint.size}, ${by}).` };
    }
    const result = checkpoint.size === latest.size ? { matches: equal(checkpoint.root, latest.root) } : await proveIn(checkpoint, index, leaf);
    if (!result.matches) return { failed: true, message: `entry ${index} does not lead to the root hash of cosigned checkpoint ${checkpoint.size}.` };
    return { size: checkpoint.size, witnesses, message: `Also included in checkpoint ${checkpoint.size}, ${by}.` };
  }

  // --- the page -----------------------------------------------------------------------------------
  async function refreshCheckpoint() {
    const panel = document.querySelector("[data-latest-checkpoint]");
    if (!panel) return;
    const put = (selector, text) => { const node = panel.querySelector(selector); if (node) node.textContent = text; };
    try {
      const checkpoint = parseCheckpoint(await getText(`${API}/checkpoint`));
      put("[data-cp-size]", checkpoint.size.toLocaleString("en"));
      put("[data-cp-root]", toBase64(checkpoint.root));
      put("[data-cp-note]", checkpoint.note);
      put("[data-cp-created]", "fetched from the public API just now");
      put("[data-cp-pending]", `The log signed its current head for this page: ${checkpoint.size.toLocaleString("en")} entries.`);
      let signature;
      try {
        signature = await checkSignature(checkpoint);
        signature = signature === "verified"
          ? "Ed25519 signature verified in this browser, against the key this server publishes"
          : "not checked here: this browser's WebCrypto has no Ed25519 (use healthmesh ledger verify)";
      } catch (error) {
        signature = `INVALID: ${error.message}`;
      }
      put("[data-cp-signature]", signature);
    } catch (error) {
      put("[data-cp-signature]", `could not fetch the checkpoint: ${error.message}`);
    }
  }

  document.addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-verify]");
    if (!button) return;
    const row = button.closest("[data-entry]");
    const output = row.querySelector("[data-verify-result]");
    const body = row.querySelector("[data-entry-body]").textContent;
    button.disabled = true;
    output.className = "";
    output.textContent = "Checking…";
    const result = await verifyInclusion(Number(button.dataset.verify), body);
    output.textContent = result.message;
    output.className = result.ok ? "ok" : "error";
    button.disabled = false;
  });
  document.addEventListener("DOMContentLoaded", refreshCheckpoint);

  window.HealthMeshLedger = { verifyInclusion, parseCheckpoint, leafHash, nodeHash, rootFromInclusion, checkSignature };
})();
