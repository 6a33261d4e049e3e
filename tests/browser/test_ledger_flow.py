"""The transparency log in the console: the browser checks an entry's inclusion in the latest
checkpoint itself (WebCrypto SHA-256, RFC 9162), and a tampered body fails the check."""

from __future__ import annotations

import base64
from typing import Any

from playwright.sync_api import expect

from healthmesh.ledger import merkle

SLOW = 30_000


def test_the_browser_verifies_an_entrys_inclusion_and_catches_tampering(visit_as: Any) -> None:
    visit = visit_as("fp.tha")
    page = visit.open("/console/ledger")
    expect(page.get_by_role("heading", name="Transparency log", exact=True)).to_be_visible()
    expect(page.locator("[data-cp-size]")).not_to_have_text("—", timeout=SLOW)  # fetched and parsed
    expect(page.locator("[data-cp-signature]")).not_to_contain_text("INVALID")
    expect(page.get_by_test_id("entries").locator("tbody tr").first).to_be_attached()

    page.get_by_label("Kind").select_option("allocation.plan_approved")
    page.get_by_role("button", name="Show").click()
    rows = page.get_by_test_id("entries").locator("tbody tr")
    expect(rows.first).to_contain_text("allocation.plan_approved")
    row = rows.first
    index = int(row.get_attribute("data-entry") or "-1")
    row.get_by_role("button", name="Verify inclusion").click()
    result = row.locator("[data-verify-result]")
    expect(result).to_contain_text("Included in checkpoint", timeout=SLOW)
    expect(result).to_have_class("ok")
    visit.screenshot("ledger")

    checks = page.evaluate(
        """async (index) => {
          const row = document.querySelector(`tr[data-entry="${index}"]`);
          const body = row.querySelector("[data-entry-body]").textContent;
          const good = await HealthMeshLedger.verifyInclusion(index, body);
          const bad = await HealthMeshLedger.verifyInclusion(index, body.replace('"units":', '"units":1'));
          const elsewhere = await HealthMeshLedger.verifyInclusion(index === 0 ? 1 : index - 1, body);
          return { good, bad, elsewhere };
        }""",
        index,
    )
    assert checks["good"]["ok"], checks["good"]["message"]
    assert not checks["bad"]["ok"]
    assert "does not reach" in checks["bad"]["message"]
    assert not checks["elsewhere"]["ok"]  # the right body at the wrong index fails too

    # Tamper with the page's own copy of the entry, then check it again through the button.
    page.evaluate(
        """(index) => {
          const pre = document.querySelector(`tr[data-entry="${index}"] [data-entry-body]`);
          pre.textContent = pre.textContent.replace('"units":', '"units":1');
        }""",
        index,
    )
    row.get_by_role("button", name="Verify inclusion").click()
    expect(result).to_contain_text("Failed: this body hashes to leaf", timeout=SLOW)
    expect(result).to_have_class("error")
    assert not visit.console_errors


def test_the_browsers_rfc_9162_matches_the_logs_for_every_leaf_of_small_trees(visit_as: Any) -> None:
    """The in-browser verifier against `ledger.merkle`: every index of trees of 1 to 17 leaves,
    and a proof for another index or size refused."""
    store = merkle.MemoryStore()
    entries = [f'{{"n":{n},"note":"entrée {n}"}}' for n in range(17)]  # non-ASCII: UTF-8 bytes
    store.append([merkle.leaf_hash(entry.encode()) for entry in entries])
    cases = [
        {
            "index": index,
            "size": size,
            "entry": entries[index],
            "proof": [base64.b64encode(p).decode() for p in merkle.inclusion_proof(index, size, store)],
            "root": base64.b64encode(merkle.root(size, store)).decode(),
        }
        for size in range(1, 18)
        for index in range(size)
    ]
    visit = visit_as("researcher")
    page = visit.open("/console/ledger")
    outcome = page.evaluate(
        """async (cases) => {
          const L = window.HealthMeshLedger;
          const b64 = (t) => Uint8Array.from(atob(t), (c) => c.charCodeAt(0));
          const same = (a, b) => a.length === b.length && a.every((v, i) => v === b[i]);
          const bad = [];
          for (const c of cases) {
            const leaf = await L.leafHash(c.entry);
            const root = await L.rootFromInclusion(c.index, c.size, leaf, c.proof.map(b64));
            if (!same(root, b64(c.root))) bad.push(`${c.index}/${c.size}`);
            if (c.size > 2) {  // the same proof for the neighbouring leaf must not reach the root
              const other = c.index === 0 ? 1 : c.index - 1;
              let reached = false;
              try {
                const wrong = await L.rootFromInclusion(other, c.size, leaf, c.proof.map(b64));
                reached = same(wrong, b64(c.root));
              } catch (error) { reached = false; }
              if (reached) bad.push(`wrong index ${other}/${c.size}`);
            }
          }
          return bad;
        }""",
        cases,
    )
    assert outcome == []
