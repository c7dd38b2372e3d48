// `pivot network create/ls/inspect/rm/prune/connect/disconnect`, over src/network, for the
// engine CLI to dispatch to.
import { formatError } from "../errors.ts";
import type { NetworkManager } from "../network/attach.ts";
import { boolFlag, flag, type Parsed, parseArgs, UsageError } from "./args.ts";
import { renderInspect } from "./inspect-format.ts";
import { writeErr, writeOut } from "./output.ts";

const FLAGS = [
  { name: "subnet", value: true },
  { name: "gateway", value: true },
  { name: "internal" },
  { name: "label", value: true, multiple: true },
  { name: "quiet", aliases: ["q"] },
  { name: "force", aliases: ["f"] },
  { name: "alias", value: true, multiple: true },
  { name: "ip", value: true },
  { name: "driver", aliases: ["d"], value: true },
  { name: "format", value: true },
  { name: "help" },
];

/** inspect's -f is --format, rm's --force, as Docker's. */
const INSPECT_FLAGS = FLAGS.map((f) =>
  f.name === "format" ? { ...f, aliases: ["f"] } : f.name === "force" ? { name: "force" } : f,
);

function multi(p: Parsed, name: string): string[] {
  return p.flags.get(name) ?? [];
}

function print(text: string): void {
  writeOut(text);
}

/** Runs one `network` subcommand; `resolve` maps a container name or id to its id. */
export async function networkCommand(
  manager: NetworkManager,
  args: string[],
  resolve: (ref: string) => string,
): Promise<number> {
  const sub = args[0];
  const p = parseArgs(args.slice(1), sub === "inspect" ? INSPECT_FLAGS : FLAGS);
  const names = [...p.positionals, ...p.rest];
  switch (sub) {
    case "create": {
      const name = names[0];
      if (!name) throw new UsageError("network create needs a name");
      const driver = flag(p, "driver");
      if (driver !== undefined && driver !== "bridge")
        throw new UsageError(`network driver "${driver}" is not supported`, {
          hint: "bridge is the only driver",
        });
      const labels: Record<string, string> = {};
      for (const l of multi(p, "label")) {
        const eq = l.indexOf("=");
        labels[eq < 0 ? l : l.slice(0, eq)] = eq < 0 ? "" : l.slice(eq + 1);
      }
      const def = await manager.createNetwork(name, {
        ...(flag(p, "subnet") ? { subnet: flag(p, "subnet")! } : {}),
        ...(flag(p, "gateway") ? { gateway: flag(p, "gateway")! } : {}),
        internal: boolFlag(p, "internal"),
        labels,
      });
      print(`${def.id}\n`);
      return 0;
    }
    case "ls": {
      const list = manager.listNetworks();
      if (boolFlag(p, "quiet")) {
        for (const n of list) print(`${n.id.slice(0, 12)}\n`);
        return 0;
      }
      const rows = [["NETWORK ID", "NAME", "DRIVER", "SUBNET", "BRIDGE", "INTERNAL"]];
      for (const n of list)
        rows.push([n.id.slice(0, 12), n.name, n.driver, n.subnet, n.bridge, String(n.internal)]);
      const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
      for (const r of rows)
        print(
          `${r
            .map((c, i) => c.padEnd(widths[i]!))
            .join("   ")
            .trimEnd()}\n`,
        );
      return 0;
    }
    case "inspect": {
      if (names.length === 0) throw new UsageError("network inspect needs a network name");
      print(
        renderInspect(
          names.map((n) => manager.inspectNetwork(n)),
          flag(p, "format"),
          "network",
        ),
      );
      return 0;
    }
    case "rm": {
      if (names.length === 0) throw new UsageError("network rm needs a network name");
      // Each in turn, as Docker's: one that fails is reported and the next is still removed;
      // with -f, one that does not exist is skipped in silence.
      let failed = 0;
      for (const n of names) {
        try {
          if (await manager.removeNetwork(n, { force: boolFlag(p, "force") })) print(`${n}\n`);
        } catch (err) {
          writeErr(`pivot: ${formatError(err)}\n`);
          failed++;
        }
      }
      return failed ? 1 : 0;
    }
    case "prune": {
      for (const n of await manager.pruneNetworks()) print(`${n}\n`);
      return 0;
    }
    case "connect": {
      const [network, container] = names;
      if (!network || !container) throw new UsageError("network connect needs NETWORK CONTAINER");
      const a = await manager.connect(resolve(container), network, {
        aliases: multi(p, "alias"),
        ...(flag(p, "ip") ? { ip: flag(p, "ip")! } : {}),
      });
      print(`${a.ip}/${a.prefixLength}\n`);
      return 0;
    }
    case "disconnect": {
      const [network, container] = names;
      if (!network || !container)
        throw new UsageError("network disconnect needs NETWORK CONTAINER");
      await manager.disconnect(resolve(container), network);
      return 0;
    }
    default:
      throw new UsageError(`unknown network command "${sub ?? ""}"`, {
        hint: "use network create, ls, inspect, rm, prune, connect or disconnect",
      });
  }
}
