import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import {
  decodePayload,
  encodeMessage,
  encodeMessages,
  MessageReader,
  Op,
  renderWireHeader,
} from "../../src/runtime/wire.ts";

test("native/wire.h is generated from wire.ts (run `bun scripts/gen-wire-header.ts` after changing ops)", () => {
  const committed = readFileSync(join(import.meta.dir, "../../native/wire.h"), "utf8");
  expect(committed).toBe(renderWireHeader());
});

test("the C launcher handles every op defined in wire.ts", () => {
  const source = readFileSync(join(import.meta.dir, "../../native/launcher.c"), "utf8");
  const header = renderWireHeader();
  for (const name of Object.keys(Op)) {
    if (name === "End") continue;
    const macro = header.match(
      new RegExp(`#define (OP_[A-Z_0-9]+) ${Op[name as keyof typeof Op]}\\n`),
    )![1]!;
    expect(source.includes(`case ${macro}:`), `${macro} has no case in launcher.c`).toBe(true);
  }
});

test("messages round-trip integers, big integers and strings", () => {
  const msg = encodeMessage(Op.Mount, ["src", "/dst", 4096, 2n ** 62n, "", "ünïcode"]);
  expect(msg.readUInt32LE(0)).toBe(msg.length - 4);
  const decoded = decodePayload(msg.subarray(4));
  expect(decoded.code).toBe(Op.Mount);
  expect(decoded.args).toEqual(["src", "/dst", 4096, 2n ** 62n, "", "ünïcode"]);
});

test("negative integers survive", () => {
  const decoded = decodePayload(encodeMessage(Op.WriteFile, [-1000]).subarray(4));
  expect(decoded.args).toEqual([-1000]);
});

test("a reader splits a stream into messages across chunk boundaries", () => {
  const a = encodeMessage(Op.Sync, [1]);
  const b = encodeMessage(Op.Exec, [1, "sh", "PATH=/bin"]);
  const all = Buffer.concat([a, b]);
  const reader = new MessageReader();
  const out = [
    ...reader.push(all.subarray(0, 5)),
    ...reader.push(all.subarray(5, a.length + 3)),
    ...reader.push(all.subarray(a.length + 3)),
  ];
  expect(out.map((m) => m.code)).toEqual([Op.Sync, Op.Exec]);
  expect(out[1]!.args).toEqual([1, "sh", "PATH=/bin"]);
});

test("encodeMessages writes the messages one after another, as single encodings would be", () => {
  const messages = [
    { code: Op.Mount, args: ["src", "/dst", 4096, 2n ** 62n, "", "ünïcode"] },
    { code: Op.WriteFile, args: [new Uint8Array([1, 0, 255]), -7] },
    { code: Op.End, args: [] },
  ];
  const all = encodeMessages(messages);
  expect(all).toEqual(Buffer.concat(messages.map((m) => encodeMessage(m.code, m.args))));
  const decoded = new MessageReader().push(all);
  expect(decoded.map((m) => m.code)).toEqual([Op.Mount, Op.WriteFile, Op.End]);
  expect(decoded[0]!.args).toEqual(["src", "/dst", 4096, 2n ** 62n, "", "ünïcode"]);
  expect(decoded[1]!.args).toHaveLength(2);
  expect(decoded[1]!.args[1]).toBe(-7);
  // The byte argument's bytes, at their place: tag, length 3, then 1 0 255.
  const second = encodeMessage(Op.WriteFile, [new Uint8Array([1, 0, 255])]);
  expect([...second.subarray(8)]).toEqual([0x73, 3, 0, 0, 0, 1, 0, 255]);
});

test("strings with NUL bytes are refused (C would truncate them)", () => {
  expect(() => encodeMessage(Op.Chdir, ["/a\0b"])).toThrow(/NUL/);
});
