// The runtime's state store: records round-trip through save and load, every save is whole
// (written aside, then renamed over state.json), and removal leaves no directory.
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { defaultSpec } from "../../src/oci/default-spec.ts";
import { type ContainerRecord, StateStore } from "../../src/runtime/state.ts";

const root = mkdtempSync(join(tmpdir(), "pivot-state-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

function record(id: string): ContainerRecord {
  return {
    id,
    pid: 0,
    pidStartTime: "",
    bundle: "/b",
    rootfs: "/b/rootfs",
    created: "2026-11-29T00:00:00.000Z",
    annotations: {},
    cgroupPaths: {},
    namespaces: ["pid"],
    spec: defaultSpec({ args: ["true"] }),
  };
}

test("a record saved, changed and saved again loads back as last saved", () => {
  const store = new StateStore(root);
  const r = record("a");
  store.claim("a");
  store.save(r);
  r.pid = 42;
  r.spec.hostname = "changed";
  store.save(r);
  expect(store.load("a")).toEqual(r);
  expect(readdirSync(join(root, "a"))).toEqual(["state.json"]);
});

test("remove takes the directory, and the id can be claimed again", () => {
  const store = new StateStore(root);
  store.claim("b");
  store.save(record("b"));
  store.remove("b");
  expect(store.exists("b")).toBe(false);
  expect(readdirSync(root)).not.toContain("b");
  expect(() => store.claim("b")).not.toThrow();
});
