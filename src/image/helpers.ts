/**
 * The few file operations Node's fs cannot do (mknod, setting extended
 * attributes) are done by spawning standard programs: `mknod` from coreutils
 * and `setfattr` from Debian's attr package. Both are only needed for layers
 * that contain device nodes, fifos, whiteouts, opaque directories or xattrs.
 */

import { childProcess } from "../util/child-process.ts";
import { HelperError } from "./errors.ts";

const INSTALL_HINT: Record<string, string> = {
  mknod: "mknod comes with coreutils; install it (apt-get install coreutils)",
  setfattr: "setfattr comes with the attr package; install it (apt-get install attr)",
  getfattr: "getfattr comes with the attr package; install it (apt-get install attr)",
  mount: "mount comes with util-linux; install it (apt-get install mount)",
  umount: "umount comes with util-linux; install it (apt-get install mount)",
};

export interface RunResult {
  stdout: string;
  stderr: string;
}

/** Runs a program without a shell; rejects with HelperError naming it and its stderr. */
export function runHelper(
  command: string,
  args: string[],
  options: { cwd?: string } = {},
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    childProcess().execFile(
      command,
      args,
      { cwd: options.cwd, encoding: "utf8", maxBuffer: 16 << 20 },
      (err, stdout, stderr) => {
        if (!err) {
          resolve({ stdout, stderr });
          return;
        }
        const code = (err as NodeJS.ErrnoException).code;
        if (code === "ENOENT") {
          reject(new HelperError(command, "program not found on PATH", INSTALL_HINT[command]));
          return;
        }
        const detail = stderr.trim() || err.message;
        reject(new HelperError(`${command} ${args.join(" ")}`, detail));
      },
    );
  });
}

/** Creates a device node or fifo at `path` (which must not exist). */
export async function mknod(
  path: string,
  type: "c" | "b" | "p",
  mode: number,
  major = 0,
  minor = 0,
): Promise<void> {
  const args = ["-m", (mode & 0o7777).toString(8).padStart(4, "0"), "--", path, type];
  if (type !== "p") args.push(String(major), String(minor));
  await runHelper("mknod", args);
}

/** Sets an extended attribute on `path` itself (symlinks are not followed). */
export async function lsetxattr(path: string, name: string, value: Buffer): Promise<void> {
  await runHelper("setfattr", [
    "-h",
    "-n",
    name,
    "-v",
    `0s${value.toString("base64")}`,
    "--",
    path,
  ]);
}

/** Reads all extended attributes of `path` (not following symlinks), by name. */
export async function lgetxattrs(path: string): Promise<Map<string, Buffer>> {
  const { stdout } = await runHelper("getfattr", [
    "-h",
    "-d",
    "-m",
    "-",
    "-e",
    "base64",
    "--absolute-names",
    "--",
    path,
  ]);
  const out = new Map<string, Buffer>();
  for (const line of stdout.split("\n")) {
    const m = /^([^=#][^=]*)=0s(.*)$/.exec(line);
    if (m) out.set(m[1]!, Buffer.from(m[2]!, "base64"));
    else {
      const empty = /^([^=#][^=]*)$/.exec(line.trim());
      if (empty && line.trim() !== "") out.set(empty[1]!, Buffer.alloc(0));
    }
  }
  return out;
}
