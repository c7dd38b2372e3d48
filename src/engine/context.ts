// What the engine's modules share: its directories, the runtime, the image store, volumes,
// networks and the commands conmon runs, set up once from the options by `createContext`.
import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { DEFAULT_STORE_ROOT, ImageStore } from "../image/store.ts";
import { NetworkManager } from "../network/attach.ts";
import type { NetworkSettings } from "../network/networks.ts";
import { Runtime } from "../runtime/runtime.ts";
import type { Trace } from "../runtime/trace.ts";
import { compiledBinary, compiledCommand } from "../util/self.ts";
import { writeAllSync } from "../util/write-fd.ts";
import { ContainerStore } from "./container-store.ts";
import { emitEvent } from "./events.ts";
import { findConmon } from "./monitor.ts";
import type { OciRuntimeCli } from "./oci-runtime.ts";
import { isRootlessEngine, rootlessPaths, rootlessRunRoot } from "./rootless.ts";
import { VolumeStore } from "./volumes.ts";

export interface EngineOptions {
  /** Image store, containers and volumes (default /var/lib/pivot; rootless ~/.local/share/pivot). */
  root?: string;
  /**
   * The runtime's state (default /run/pivot for the default root, else <root>/run; rootless
   * $XDG_RUNTIME_DIR/pivot).
   */
  runRoot?: string;
  /** The OCI runtime as a command, for conmon (default: this package's pivot-runtime). */
  runtimeCommand?: string[];
  /** The pivot CLI as a command, for conmon's exit hook (default: this package's bin/pivot.ts). */
  cliCommand?: string[];
  /** Path of conmon; null to run without it (detached containers then fail). */
  conmon?: string | null;
  warn?: (message: string) => void;
  /** Networks (default: definitions in <root>/networks, state in <runRoot>/network). */
  network?: Partial<NetworkSettings>;
  /** Where the time goes (`pivot --trace`): the engine's steps and the runtime's, on one clock. */
  trace?: Trace;
}

export interface EngineContext {
  readonly root: string;
  readonly runRoot: string;
  /** Run by a user other than root, in the user namespace of rootless.ts. */
  readonly rootless: boolean;
  readonly runtime: Runtime;
  readonly volumes: VolumeStore;
  readonly networks: NetworkManager;
  readonly containers: ContainerStore;
  readonly warn: (message: string) => void;
  readonly conmonPath: string | null;
  /** The OCI runtime as a command, for conmon. */
  readonly runtimeCommand: string[];
  /** The pivot CLI as a command, for conmon's exit hook. */
  readonly cliCommand: string[];
  /** Other OCI runtimes (`--runtime PATH`), one per path (container-runtime.ts). */
  readonly ociRuntimes: Map<string, OciRuntimeCli>;
  /** The image store (opened on first use). */
  images(): Promise<ImageStore>;
  readonly trace: Trace | undefined;
}

// The URL global, not node:url (~0.3 ms to load under Bun), as the launcher is found.
const HERE = dirname(decodeURIComponent(new URL(import.meta.url).pathname));
const PACKAGE_ROOT = resolve(HERE, "../..");

function bunCommand(): string {
  if (process.versions.bun) return process.execPath;
  const local = join(PACKAGE_ROOT, "node_modules/.bin/bun");
  return existsSync(local) ? local : "bun";
}

export function createContext(options: EngineOptions = {}): EngineContext {
  // A user other than root (or root of the rootless engine's user namespace): per-user places.
  const rootless = isRootlessEngine();
  const root = resolve(options.root ?? (rootless ? rootlessPaths().root : DEFAULT_STORE_ROOT));
  const runRoot = resolve(
    options.runRoot ??
      (options.root === undefined && rootless
        ? rootlessRunRoot()
        : root === DEFAULT_STORE_ROOT
          ? "/run/pivot"
          : join(root, "run")),
  );
  const volumes = new VolumeStore(join(root, "volumes"), (action, name) =>
    emitEvent({ runRoot, warn }, "volume", action, name, { driver: "local" }),
  );
  const warn = options.warn ?? ((m) => writeAllSync(2, `pivot: warning: ${m}\n`));
  const runtime = new Runtime({
    root: join(runRoot, "runtime"),
    warn,
    ...(options.trace ? { trace: options.trace } : {}),
  });
  // The network manager (it reads its settings) and conmon's path (a search of PATH) are made on
  // first use: `pivot run` without a network or -d needs neither (~0.6 ms of every command).
  let networks: NetworkManager | undefined;
  let conmonPath: string | null | undefined = options.conmon;
  // The commands conmon runs (detached containers only), found on first use. The compiled
  // binary runs its commands by the name they are called by (bin/pivot-multicall.ts).
  let binary: string | null | undefined;
  const commandOf = (name: "pivot" | "pivot-runtime"): string[] => {
    if (binary === undefined) binary = compiledBinary();
    return binary
      ? [compiledCommand(binary, name)]
      : [bunCommand(), join(PACKAGE_ROOT, `bin/${name}.ts`)];
  };
  let runtimeCommand = options.runtimeCommand;
  let cliCommand = options.cliCommand;
  let storePromise: Promise<ImageStore> | null = null;
  return {
    root,
    runRoot,
    rootless,
    runtime,
    volumes,
    get networks() {
      networks ??= new NetworkManager(
        { configDir: join(root, "networks"), runDir: join(runRoot, "network"), ...options.network },
        warn,
      );
      networks.onEvent ??= (action, id, attributes) =>
        emitEvent({ runRoot, warn }, "network", action, id, attributes);
      return networks;
    },
    containers: new ContainerStore(root),
    warn,
    get conmonPath() {
      if (conmonPath === undefined) conmonPath = findConmon();
      return conmonPath;
    },
    get runtimeCommand() {
      runtimeCommand ??= commandOf("pivot-runtime");
      return runtimeCommand;
    },
    get cliCommand() {
      cliCommand ??= commandOf("pivot");
      return cliCommand;
    },
    ociRuntimes: new Map(),
    trace: options.trace,
    images() {
      storePromise ??= ImageStore.open(root).then((store) => {
        store.onEvent = (action, id, attributes) =>
          emitEvent({ runRoot, warn }, "image", action, id, attributes);
        return store;
      });
      return storePromise;
    },
  };
}
