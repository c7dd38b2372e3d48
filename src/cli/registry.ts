// `pivot pull`, `push`, `login`, `logout`: the registry commands of the engine CLI, over src/registry.
import type { ImageStore } from "../image/store.ts";
import {
  createProgress,
  login,
  logout,
  type PullOptions,
  pullImage,
  pushImage,
} from "../registry/index.ts";
import { normalizeRegistry } from "../registry/login.ts";
import { tty } from "../util/lazy-require.ts";
import {
  boolFlag,
  type FlagSpec,
  flag,
  intFlag,
  type Parsed,
  parseArgs,
  UsageError,
} from "./args.ts";
import { REGISTRY_USAGE } from "./command-groups.ts";
import { writeOut } from "./output.ts";

const COMMON: FlagSpec[] = [
  { name: "tls-verify", value: true },
  { name: "authfile", value: true },
  { name: "creds", value: true },
  { name: "cert-dir", value: true },
  { name: "quiet", aliases: ["q"] },
  { name: "help" },
];

const FLAGS: Record<string, FlagSpec[]> = {
  pull: [...COMMON, { name: "platform", value: true }, { name: "all-tags", aliases: ["a"] }],
  push: [...COMMON, { name: "chunk-size", value: true }],
  login: [
    ...COMMON,
    { name: "username", aliases: ["u"], value: true },
    { name: "password", aliases: ["p"], value: true },
    { name: "password-stdin" },
  ],
  logout: [{ name: "authfile", value: true }, { name: "help" }],
};

function tlsVerify(p: Parsed): boolean | undefined {
  const v = flag(p, "tls-verify");
  if (v === undefined) return undefined;
  if (v === "true" || v === "1") return true;
  if (v === "false" || v === "0") return false;
  throw new UsageError(`--tls-verify takes true or false, got "${v}"`);
}

function clientOptions(p: Parsed): PullOptions {
  const o: PullOptions = {};
  const verify = tlsVerify(p);
  if (verify !== undefined) o.tlsVerify = verify;
  const authFile = flag(p, "authfile");
  if (authFile !== undefined) o.authFile = authFile;
  const certDir = flag(p, "cert-dir");
  if (certDir !== undefined) o.certsDirs = [certDir];
  const creds = flag(p, "creds");
  if (creds !== undefined) {
    const colon = creds.indexOf(":");
    if (colon < 0) throw new UsageError("--creds takes USER:PASSWORD");
    o.credentials = { username: creds.slice(0, colon), password: creds.slice(colon + 1) };
  }
  return o;
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin as AsyncIterable<Buffer>) chunks.push(c);
  return Buffer.concat(chunks)
    .toString("utf8")
    .replace(/\r?\n$/, "");
}

/**
 * Where pull and push report progress: fd 1 through writeOut, as the line that follows it. With
 * process.stdout the stream could still hold progress when that line went out directly (out of
 * order), and it would make a pipe non-blocking.
 */
function progressOut(): { write(s: string): void; isTTY: boolean; readonly columns?: number } {
  const isTTY = tty().isatty(1);
  return {
    write: writeOut,
    isTTY,
    // A terminal's width, as it is at each redraw.
    get columns() {
      return isTTY ? process.stdout.columns : undefined;
    },
  };
}

/** Runs one registry command; `images` opens the engine's store. Returns the exit status. */
export async function registryCommand(
  command: string,
  args: string[],
  images: () => Promise<ImageStore>,
): Promise<number> {
  const specs = FLAGS[command];
  if (!specs) throw new UsageError(`unknown registry command ${command}`);
  const p = parseArgs(args, specs);
  if (boolFlag(p, "help")) {
    writeOut(REGISTRY_USAGE);
    return 0;
  }
  const quiet = boolFlag(p, "quiet");
  switch (command) {
    case "pull": {
      const ref = p.positionals[0];
      if (!ref || p.positionals.length > 1) throw new UsageError("usage: pivot pull [flags] IMAGE");
      if (boolFlag(p, "all-tags")) throw new UsageError("pull --all-tags is not supported");
      const platform = flag(p, "platform");
      const result = await pullImage(await images(), ref, {
        ...clientOptions(p),
        ...(platform ? { platform } : {}),
        progress: createProgress(quiet ? { quiet } : { out: progressOut() }),
      });
      writeOut(`${result.reference}\n`);
      return 0;
    }
    case "push": {
      const [source, dest] = p.positionals;
      if (!source || p.positionals.length > 2) {
        throw new UsageError("usage: pivot push [flags] IMAGE [DESTINATION]");
      }
      const chunkSize = intFlag(p, "chunk-size");
      const result = await pushImage(await images(), source, dest, {
        ...clientOptions(p),
        ...(chunkSize !== undefined ? { chunkSize } : {}),
        progress: createProgress(quiet ? { quiet } : { out: progressOut() }),
      });
      if (quiet) writeOut(`${result.digest}\n`);
      return 0;
    }
    case "login": {
      const registry = p.positionals[0];
      const username = flag(p, "username");
      let password = flag(p, "password");
      if (boolFlag(p, "password-stdin")) password = await readStdin();
      if (username === undefined || password === undefined) {
        throw new UsageError("login needs a user name and a password", {
          hint: "pivot login -u USER --password-stdin [REGISTRY] < password-file (or -p PASSWORD)",
        });
      }
      const where = await login(registry, { username, password }, clientOptions(p));
      writeOut(`Login Succeeded (${normalizeRegistry(registry)}, credentials in ${where})\n`);
      return 0;
    }
    case "logout": {
      const registry = p.positionals[0];
      const authFile = flag(p, "authfile");
      const removed = await logout(registry, authFile !== undefined ? { authFile } : {});
      const host = normalizeRegistry(registry);
      writeOut(removed ? `Removed login credentials for ${host}\n` : `Not logged in to ${host}\n`);
      return 0;
    }
  }
  return 1;
}
