// Writes native/wire.h from the wire tables in src/runtime/wire.ts (run after changing them).
import { writeFileSync } from "node:fs";
import { renderWireHeader } from "../src/runtime/wire.ts";

const target = new URL("../native/wire.h", import.meta.url);
writeFileSync(target, renderWireHeader());
console.log(`wrote ${target.pathname}`);
