import { afterAll, expect, test } from "bun:test";
import {
  chmodSync,
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { diagnoseExecEnoent, elfInterpreter, resolveInRoot } from "../../src/runtime/diagnose.ts";

const root = mkdtempSync(join(tmpdir(), "pivot-diagnose-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
mkdirSync(join(root, "bin"), { recursive: true });

function script(name: string, text: string): void {
  writeFileSync(join(root, "bin", name), text);
  chmodSync(join(root, "bin", name), 0o755);
}

test("symlinks resolve inside the root, absolute ones too", () => {
  symlinkSync("/etc/passwd", join(root, "bin", "escape"));
  // The host's /etc/passwd is not what the container sees: the link resolves under the root.
  expect(resolveInRoot(root, "/bin/escape")).toBeNull();
  mkdirSync(join(root, "etc"), { recursive: true });
  writeFileSync(join(root, "etc", "passwd"), "root:x:0:0::/:/bin/sh\n");
  expect(resolveInRoot(root, "/bin/escape")).toBe(join(root, "etc", "passwd"));
  expect(resolveInRoot(root, "/../../bin/../etc/passwd")).toBe(join(root, "etc", "passwd"));
});

test("a script with CRLF line endings", () => {
  script("crlf", "#!/bin/sh\r\necho hi\r\n");
  writeFileSync(join(root, "bin", "sh"), "");
  expect(diagnoseExecEnoent(root, "crlf", "/bin")).toMatch(
    /Windows line endings \(CRLF\).*dos2unix/,
  );
});

test("a script whose interpreter is missing", () => {
  script("py", "#!/usr/bin/python3 -u\nprint(1)\n");
  expect(diagnoseExecEnoent(root, "/bin/py", "/nowhere")).toBe(
    "/bin/py is a script for /usr/bin/python3, which the root filesystem does not have; install it in the image or change the #! line",
  );
});

test("a dynamically linked binary without its loader", () => {
  copyFileSync("/bin/ls", join(root, "bin", "ls"));
  const loader = elfInterpreter(readFileSync("/bin/ls"));
  expect(loader).toMatch(/^\/lib.*ld-linux.*\.so\.\d$/);
  expect(diagnoseExecEnoent(root, "ls", "/usr/bin:/bin")).toContain(`needs the loader ${loader}`);
});

test("nothing to say about a static binary or a missing program", () => {
  copyFileSync("/bin/busybox", join(root, "bin", "busybox"));
  expect(elfInterpreter(readFileSync("/bin/busybox"))).toBeNull();
  expect(diagnoseExecEnoent(root, "busybox", "/bin")).toBeUndefined();
  expect(diagnoseExecEnoent(root, "nothing-here", "/bin")).toBeUndefined();
});
