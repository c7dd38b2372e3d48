// Explaining why a program could not be executed: execve says only ENOENT when a script's
// interpreter or a binary's dynamic loader is missing, which reads as "the program is missing"
// although it is right there. This looks at the program inside the root filesystem and says which.
import { closeSync, lstatSync, openSync, readlinkSync, readSync } from "node:fs";
import { posix } from "node:path";

/** Resolves PATH inside ROOTFS the way the kernel would from inside it: symlinks stay in the root. */
export function resolveInRoot(rootfs: string, path: string, maxLinks = 40): string | null {
  const parts = path.split("/").filter((p) => p !== "" && p !== ".");
  const done: string[] = [];
  let links = 0;
  while (parts.length > 0) {
    const part = parts.shift()!;
    if (part === "..") {
      done.pop();
      continue;
    }
    const host = posix.join(rootfs, ...done, part);
    let st: ReturnType<typeof lstatSync>;
    try {
      st = lstatSync(host);
    } catch {
      return null;
    }
    if (st.isSymbolicLink()) {
      if (++links > maxLinks) return null;
      let target: string;
      try {
        target = readlinkSync(host);
      } catch {
        // e.g. /proc/self of a container's procfs seen from the host: a link with no target here.
        return null;
      }
      if (target.startsWith("/")) done.length = 0;
      parts.unshift(...target.split("/").filter((p) => p !== "" && p !== "."));
      continue;
    }
    done.push(part);
  }
  return posix.join(rootfs, ...done);
}

function readHead(file: string, bytes: number): Buffer {
  const fd = openSync(file, "r");
  try {
    const buf = Buffer.alloc(bytes);
    const n = readSync(fd, buf, 0, bytes, 0);
    return buf.subarray(0, n);
  } finally {
    closeSync(fd);
  }
}

/** The PT_INTERP of a 64- or 32-bit little-endian ELF file, if it has one. */
export function elfInterpreter(head: Buffer): string | null {
  if (head.length < 52 || head.readUInt32BE(0) !== 0x7f454c46) return null;
  const is64 = head[4] === 2;
  if (head[5] !== 1) return null; // big-endian: not on this host's architectures
  const phoff = is64 ? Number(head.readBigUInt64LE(32)) : head.readUInt32LE(28);
  const phentsize = head.readUInt16LE(is64 ? 54 : 42);
  const phnum = head.readUInt16LE(is64 ? 56 : 44);
  for (let i = 0; i < phnum; i++) {
    const at = phoff + i * phentsize;
    if (at + phentsize > head.length) return null;
    if (head.readUInt32LE(at) !== 3) continue; // PT_INTERP
    const offset = is64 ? Number(head.readBigUInt64LE(at + 8)) : head.readUInt32LE(at + 4);
    const size = is64 ? Number(head.readBigUInt64LE(at + 32)) : head.readUInt32LE(at + 16);
    if (offset + size > head.length) return null;
    return head.toString("latin1", offset, offset + size).replace(/\0.*$/, "");
  }
  return null;
}

function findInPath(rootfs: string, program: string, pathEnv: string, cwd: string): string | null {
  if (program.includes("/")) return posix.resolve(cwd, program);
  for (const dir of pathEnv.split(":")) {
    const candidate = posix.join(dir || ".", program);
    const host = resolveInRoot(rootfs, posix.resolve(cwd, candidate));
    if (host) {
      try {
        if (lstatSync(host).isFile()) return posix.resolve(cwd, candidate);
      } catch {}
    }
  }
  return null;
}

/**
 * A hint for "exec PROGRAM: no such file or directory" when the program itself exists: a script
 * whose interpreter is missing or has a CRLF line ending, or a binary whose dynamic loader is
 * missing. Returns undefined when none of these explains it.
 */
export function diagnoseExecEnoent(
  rootfs: string,
  program: string,
  pathEnv: string,
  cwd = "/",
): string | undefined {
  const inContainer = findInPath(rootfs, program, pathEnv, cwd);
  if (!inContainer) return undefined;
  const host = resolveInRoot(rootfs, inContainer);
  if (!host) return undefined;
  let head: Buffer;
  try {
    head = readHead(host, 4096);
  } catch {
    return undefined;
  }
  if (head.subarray(0, 2).toString("latin1") === "#!") {
    const line = head.toString("latin1", 2, head.includes(0x0a) ? head.indexOf(0x0a) : head.length);
    if (line.endsWith("\r")) {
      return `${inContainer} has Windows line endings (CRLF): the kernel looks for the interpreter "${line.trim()}\\r"; convert the script with dos2unix`;
    }
    const interpreter = line.trim().split(/\s+/)[0] ?? "";
    if (interpreter && !resolveInRoot(rootfs, interpreter)) {
      return `${inContainer} is a script for ${interpreter}, which the root filesystem does not have; install it in the image or change the #! line`;
    }
    return undefined;
  }
  const loader = elfInterpreter(head);
  if (loader && !resolveInRoot(rootfs, loader)) {
    return `${inContainer} is dynamically linked and needs the loader ${loader}, which the root filesystem does not have (a binary built for another system?); use a static binary or add its libraries`;
  }
  return undefined;
}
