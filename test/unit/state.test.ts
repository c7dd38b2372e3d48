// The runtime's state store: records round-trip, and a record's spec (serialized once per object)
// cannot be changed in place, so what is saved is never stale.
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { defaultSpec } from "../../src/oci/default-spec.ts";
import { type ContainerRecord, deepFreeze, StateStore } from "../../src/runtime/state.ts";

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
    spec: deepFreeze(defaultSpec({ args: ["true"] })),
  };
}

test("a saved record loads back equal, with its spec frozen", () => {
  const store = new StateStore(root);
  const r = record("a");
  store.claim("a");
  store.save(r);
  r.pid = 42;
  store.save(r);
  const loaded = store.load("a");
  expect(loaded).toEqual(r);
  expect(() => {
    loaded.spec.process!.args = ["false"];
  }).toThrow(TypeError);
});

test("a changed spec is a new object, and that is what is saved", () => {
  const store = new StateStore(root);
  const r = record("b");
  store.claim("b");
  store.save(r);
  r.spec = deepFreeze({ ...r.spec, hostname: "changed" });
  store.save(r);
  expect(store.load("b").spec.hostname).toBe("changed");
  store.remove("b");
  expect(store.exists("b")).toBe(false);
});
