import { test } from "node:test";
import assert from "node:assert/strict";
import { runAddress } from "../src/address.js";

test("a Hub run is its web folder at its revision, main without one", () => {
  assert.equal(runAddress("owner/name@abc123"), "https://huggingface.co/owner/name/resolve/abc123/web/");
  assert.equal(runAddress("owner/name"), "https://huggingface.co/owner/name/resolve/main/web/");
  assert.equal(runAddress("owner/name@refs/pr/1"),
    "https://huggingface.co/owner/name/resolve/refs%2Fpr%2F1/web/");
});

test("a folder ends in / and is read on the page's own site", () => {
  assert.equal(runAddress("run/", "http://127.0.0.1:8000/index.html?run=run/"), "http://127.0.0.1:8000/run/");
});

test("no run is null, and a malformed one is named", () => {
  assert.equal(runAddress(null), null);
  for (const bad of ["owner", "a/b/c", "../..", "owner/name@", "hf://owner/name"]) {
    assert.throws(() => runAddress(bad), /names no run/);
  }
});
