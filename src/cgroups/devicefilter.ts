// The cgroup v2 device controller: an eBPF program (BPF_PROG_TYPE_CGROUP_DEVICE) compiled here,
// in TypeScript, from the same reduced rule state the v1 writer uses (devices.ts), as runc's
// devicefilter does. The launcher only loads the bytes and attaches them to the cgroup
// (Op.AttachDeviceFilter). For every device access the kernel runs the program with a
// struct bpf_cgroup_dev_ctx { u32 access_type (access << 16 | type); u32 major; u32 minor; }
// and allows the access when it returns 1.
import type { DeviceState } from "./devices.ts";

/** BPF_DEVCG_DEV_*: the device type in the low 16 bits of access_type. */
export const DEV_BLOCK = 1;
export const DEV_CHAR = 2;
/** BPF_DEVCG_ACC_*: the access in the high 16 bits of access_type. */
export const ACC_MKNOD = 1;
export const ACC_READ = 2;
export const ACC_WRITE = 4;
const ACC_ALL = ACC_MKNOD | ACC_READ | ACC_WRITE;

/**
 * The license given to BPF_PROG_LOAD. The kernel checks it only for GPL-only helpers, which a
 * device program does not call; runc uses "Apache" too.
 */
export const DEVICE_FILTER_LICENSE = "Apache";

// Opcodes (linux/bpf_common.h, linux/bpf.h): class | operation | source.
const LDX_MEM_W = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const ALU32_AND_K = 0x54; // BPF_ALU | BPF_AND | BPF_K
const ALU32_RSH_K = 0x74; // BPF_ALU | BPF_RSH | BPF_K
const ALU32_MOV_K = 0xb4; // BPF_ALU | BPF_MOV | BPF_K
const ALU32_MOV_X = 0xbc; // BPF_ALU | BPF_MOV | BPF_X
const JMP32_JEQ_K = 0x16; // BPF_JMP32 | BPF_JEQ | BPF_K
const JMP32_JNE_K = 0x56; // BPF_JMP32 | BPF_JNE | BPF_K
const JMP32_JNE_X = 0x5e; // BPF_JMP32 | BPF_JNE | BPF_X
const EXIT = 0x95; // BPF_JMP | BPF_EXIT

/** One instruction: struct bpf_insn { u8 code; u8 dst:4, src:4; s16 off; s32 imm; }. */
export interface Insn {
  code: number;
  dst: number;
  src: number;
  off: number;
  imm: number;
}

/** Whether this machine stores integers little-endian (the kernel reads instructions in its order). */
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

const insn = (code: number, dst: number, src: number, off: number, imm: number): Insn => ({
  code,
  dst,
  src,
  off,
  imm,
});

/** A v1-style rule key ("c 1:3", "b *:*") back into its parts (-1 for *). */
function parseKey(key: string): { type: "b" | "c"; major: number; minor: number } {
  const m = /^([bc]) (\*|\d+):(\*|\d+)$/.exec(key);
  if (!m) throw new Error(`internal error: bad device rule key "${key}"`);
  const n = (s: string) => (s === "*" ? -1 : Number(s));
  return { type: m[1] as "b" | "c", major: n(m[2]!), minor: n(m[3]!) };
}

export function accessBits(access: string): number {
  let bits = 0;
  if (access.includes("m")) bits |= ACC_MKNOD;
  if (access.includes("r")) bits |= ACC_READ;
  if (access.includes("w")) bits |= ACC_WRITE;
  return bits;
}

/**
 * The program's instructions for a reduced rule state. Every exception goes against the
 * default, so the first one that matches decides; no match returns the default. As in the v1
 * controller, an allow-list exception matches only when it grants every access asked for, a
 * deny-list exception as soon as it denies any of them (so "c 1:3 w" denied also refuses an
 * open for reading and writing). Registers: r2 type, r3 access, r4 major, r5 minor, r1 scratch.
 */
export function deviceFilterInstructions(state: DeviceState): Insn[] {
  const out: Insn[] = [
    insn(LDX_MEM_W, 2, 1, 0, 0),
    insn(ALU32_AND_K, 2, 0, 0, 0xffff),
    insn(LDX_MEM_W, 3, 1, 0, 0),
    insn(ALU32_RSH_K, 3, 0, 0, 16),
    insn(LDX_MEM_W, 4, 1, 4, 0),
    insn(LDX_MEM_W, 5, 1, 8, 0),
  ];
  const verdict = state.defaultAllow ? 0 : 1;
  for (const [key, access] of state.exceptions) {
    const { type, major, minor } = parseKey(key);
    const bits = accessBits(access);
    if (bits === 0) continue;
    // Jumps to the next block are patched once the block's length is known.
    const block: Insn[] = [insn(JMP32_JNE_K, 2, 0, 0, type === "b" ? DEV_BLOCK : DEV_CHAR)];
    if (bits !== ACC_ALL) {
      block.push(insn(ALU32_MOV_X, 1, 3, 0, 0), insn(ALU32_AND_K, 1, 0, 0, bits));
      // Allow list: (access & granted) != access → next. Deny list: (access & denied) == 0 → next.
      block.push(
        state.defaultAllow ? insn(JMP32_JEQ_K, 1, 0, 0, 0) : insn(JMP32_JNE_X, 1, 3, 0, 0),
      );
    }
    if (major >= 0) block.push(insn(JMP32_JNE_K, 4, 0, 0, major));
    if (minor >= 0) block.push(insn(JMP32_JNE_K, 5, 0, 0, minor));
    block.push(insn(ALU32_MOV_K, 0, 0, 0, verdict), insn(EXIT, 0, 0, 0, 0));
    block.forEach((ins, i) => {
      // Every conditional jump in a block skips to the block after it.
      if (ins.code === JMP32_JNE_K || ins.code === JMP32_JNE_X || ins.code === JMP32_JEQ_K)
        ins.off = block.length - i - 1;
    });
    out.push(...block);
  }
  out.push(insn(ALU32_MOV_K, 0, 0, 0, state.defaultAllow ? 1 : 0), insn(EXIT, 0, 0, 0, 0));
  return out;
}

/** Instructions as the kernel reads them (8 bytes each, in this machine's byte order). */
export function encodeInstructions(
  insns: readonly Insn[],
  littleEndian = LITTLE_ENDIAN,
): Uint8Array {
  const bytes = new Uint8Array(insns.length * 8);
  const view = new DataView(bytes.buffer);
  insns.forEach((ins, i) => {
    const at = i * 8;
    view.setUint8(at, ins.code);
    // The dst_reg:4, src_reg:4 bitfield: dst in the low nibble on little-endian machines.
    view.setUint8(at + 1, littleEndian ? (ins.src << 4) | ins.dst : (ins.dst << 4) | ins.src);
    view.setInt16(at + 2, ins.off, littleEndian);
    view.setInt32(at + 4, ins.imm, littleEndian);
  });
  return bytes;
}

export function decodeInstructions(bytes: Uint8Array, littleEndian = LITTLE_ENDIAN): Insn[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: Insn[] = [];
  for (let at = 0; at + 8 <= bytes.length; at += 8) {
    const regs = view.getUint8(at + 1);
    out.push({
      code: view.getUint8(at),
      dst: littleEndian ? regs & 0xf : regs >> 4,
      src: littleEndian ? regs >> 4 : regs & 0xf,
      off: view.getInt16(at + 2, littleEndian),
      imm: view.getInt32(at + 4, littleEndian),
    });
  }
  return out;
}

/** A compiled program and the cgroup v2 directory it goes to: what Op.AttachDeviceFilter takes. */
export interface DeviceFilter {
  dir: string;
  program: Uint8Array;
  license: string;
  /** The exceptions to the default, for people. */
  summary: string;
}

/** The program for a reduced rule state, ready for BPF_PROG_LOAD. */
export function compileDeviceFilter(state: DeviceState): Uint8Array {
  return encodeInstructions(deviceFilterInstructions(state));
}

/** "deny all but 11 devices", "allow all but c 1:3 w": one line for a plan step. */
export function describeDeviceState(state: DeviceState): string {
  const n = state.exceptions.size;
  if (n === 0) return state.defaultAllow ? "allow every device" : "deny every device";
  const list = [...state.exceptions].map(([k, a]) => `${k} ${a}`);
  const shown = n <= 3 ? list.join(", ") : `${n} rules`;
  return `${state.defaultAllow ? "allow every device but" : "deny every device but"} ${shown}`;
}

/** The filter for a reduced rule state and a container's cgroup v2 directory. */
export function deviceFilter(state: DeviceState, dir: string): DeviceFilter {
  return {
    dir,
    program: compileDeviceFilter(state),
    license: DEVICE_FILTER_LICENSE,
    summary: describeDeviceState(state),
  };
}
