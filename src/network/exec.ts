// Spawning the host's network tools (ip, iptables, nft, mount, unshare) without a shell.
import { PivotError } from "../errors.ts";
import { childProcess } from "../util/child-process.ts";

const PACKAGE_OF: Record<string, string> = {
  ip: "iproute2",
  iptables: "iptables",
  "iptables-save": "iptables",
  "iptables-restore": "iptables",
  nft: "nftables",
  mount: "mount",
  umount: "mount",
  unshare: "util-linux",
  nsenter: "util-linux",
};

export class HostCommandError extends PivotError {
  constructor(
    readonly command: string,
    readonly status: number | null,
    readonly stderr: string,
    hint?: string,
  ) {
    super(`${command} failed: ${stderr.trim() || `status ${status}`}`, hint ? { hint } : {});
  }
}

export interface ExecResult {
  status: number;
  stdout: string;
  stderr: string;
}

const ENV = { PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", LC_ALL: "C" };

/** Runs a program; resolves with its output whatever the status (ENOENT rejects with a hint). */
export function execTool(cmd: string, args: string[], input?: string): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    const child = childProcess().execFile(
      cmd,
      args,
      { encoding: "utf8", maxBuffer: 64 << 20, env: ENV },
      (err, stdout, stderr) => {
        if (err && (err as NodeJS.ErrnoException).code === "ENOENT") {
          const pkg = PACKAGE_OF[cmd];
          reject(
            new HostCommandError(
              cmd,
              null,
              "program not found",
              pkg ? `install ${pkg} (apt-get install ${pkg})` : undefined,
            ),
          );
          return;
        }
        const status = err ? (typeof err.code === "number" ? err.code : 1) : 0;
        resolve({ status, stdout, stderr });
      },
    );
    if (input !== undefined) {
      child.stdin?.on("error", () => {});
      child.stdin?.end(input);
    }
  });
}

/** Runs a program and rejects unless it exits 0. */
export async function mustExec(cmd: string, args: string[], input?: string): Promise<string> {
  const r = await execTool(cmd, args, input);
  if (r.status !== 0) throw new HostCommandError(`${cmd} ${args.join(" ")}`, r.status, r.stderr);
  return r.stdout;
}
