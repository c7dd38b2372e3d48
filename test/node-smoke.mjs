// Proves that Node.js (20+) programs can import the library: no Bun APIs in library code.
import assert from "node:assert/strict";
import { compileContainerPlan, defaultSpec, PIVOT_VERSION, validateSpec } from "../dist/index.js";

const spec = validateSpec(defaultSpec({ args: ["true"] }));
spec.process.terminal = false;
const plan = compileContainerPlan({
  spec,
  rootfs: "/tmp/rootfs",
  bundle: "/tmp",
  execFifo: "/tmp/exec.fifo",
  waitForInit: false,
  host: { kindOf: () => "directory" },
});
assert.ok(plan.steps.length > 10);
assert.match(PIVOT_VERSION, /^\d+\.\d+\.\d+/);
console.log(
  `node ${process.version}: imported pivot ${PIVOT_VERSION}, compiled a plan of ${plan.steps.length} steps`,
);
