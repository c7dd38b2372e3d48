// The rootless engine's decisions, without root or a user namespace: id maps, the unshare
// command and its errors, per-user directories, what a rootless container is refused.
import { describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { Engine } from "../../src/engine/engine.ts";
import {
  checkRootlessOptions,
  NEEDS_USER_NAMESPACE,
  OUTSIDE_USER_NAMESPACE_OK,
  refuseOutsideUserNamespace,
  rootlessPaths,
  rootlessRunRoot,
  userNamespaceCommand,
} from "../../src/engine/rootless.ts";
import { parseIdMap, userName } from "../../src/runtime/userns.ts";

const me = userName(process.geteuid?.() ?? 0) ?? String(process.geteuid?.() ?? 0);
const found = (name: string) => `/usr/bin/${name}`;

describe("rootless engine", () => {
  test("parseIdMap reads /proc/PID/uid_map lines", () => {
    expect(
      parseIdMap("         0        999          1\n         1     400000      65536\n"),
    ).toEqual([
      { inner: 0, outer: 999, count: 1 },
      { inner: 1, outer: 400000, count: 65536 },
    ]);
  });

  test("the unshare command maps root to the caller and 1..N to its first subordinate range", () => {
    const files: Record<string, string> = {
      "/etc/subuid": `other:100000:65536\n${me}:200000:65536\n${me}:300000:10\n`,
      "/etc/subgid": `${me}:500000:1000\n`,
    };
    const cmd = userNamespaceCommand(["/bin/pivot", "ps"], (p) => files[p]!, found);
    expect(cmd).toEqual([
      "/usr/bin/unshare",
      "--user",
      "--mount",
      "--map-root-user",
      "--map-users=200000,1,65536",
      "--map-groups=500000,1,1000",
      "--",
      "/bin/pivot",
      "ps",
    ]);
  });

  test("errors name the missing piece and the command that adds it", () => {
    const none = () => "";
    expect(() => userNamespaceCommand(["x"], none, found)).toThrow(
      `/etc/subuid has no range for ${me}`,
    );
    try {
      userNamespaceCommand(["x"], none, found);
    } catch (err) {
      expect((err as { hint: string }).hint).toContain(
        `usermod --add-subuids 100000-165535 --add-subgids 100000-165535 ${me}`,
      );
    }
    const noHelper = (name: string) => (name === "newuidmap" ? null : found(name));
    expect(() => userNamespaceCommand(["x"], none, noHelper)).toThrow("newuidmap is not installed");
    try {
      userNamespaceCommand(["x"], none, noHelper);
    } catch (err) {
      expect((err as { hint: string }).hint).toContain("apt-get install uidmap");
    }
  });

  test("per-user directories: XDG_DATA_HOME or ~/.local/share, XDG_RUNTIME_DIR", () => {
    expect(rootlessPaths({ HOME: "/home/a", XDG_RUNTIME_DIR: "/run/user/1000" })).toEqual({
      root: "/home/a/.local/share/pivot",
      runRoot: "/run/user/1000/pivot",
    });
    expect(
      rootlessPaths({ HOME: "/home/a", XDG_DATA_HOME: "/data/a", XDG_RUNTIME_DIR: "/r" }),
    ).toEqual({ root: "/data/a/pivot", runRoot: "/r/pivot" });
    expect(() => rootlessPaths({})).toThrow("neither XDG_DATA_HOME nor HOME is set");
    // Without XDG_RUNTIME_DIR: /run/user/UID if it is the caller's, else an error saying what to set.
    if (!existsSync(`/run/user/${process.geteuid?.() ?? 0}`)) {
      expect(() => rootlessRunRoot({ HOME: "/home/a" })).toThrow("XDG_RUNTIME_DIR is not set");
    }
  });

  test("networks and published ports are refused; none and host are fine", () => {
    const image = "x";
    expect(() => checkRootlessOptions({ image })).not.toThrow();
    expect(() => checkRootlessOptions({ image, network: "host" })).not.toThrow();
    expect(() => checkRootlessOptions({ image, network: "bridge" })).toThrow(
      "cannot join a network",
    );
    expect(() => checkRootlessOptions({ image, network: "container:web" })).toThrow(
      "not supported rootless",
    );
    expect(() =>
      checkRootlessOptions({
        image,
        publish: [{ hostIP: "", hostPort: 80, containerPort: 80, protocol: "tcp" }],
      }),
    ).toThrow("-p/--publish needs a network");
    expect(() => checkRootlessOptions({ image, publishAll: true })).toThrow("-P/--publish-all");
  });

  test("outside the user namespace: every Engine method is either allowed there or refused, and none is in both lists", () => {
    // Whoever adds a method to Engine decides here: OUTSIDE_USER_NAMESPACE_OK if it only reads
    // or was tested outside the namespace, NEEDS_USER_NAMESPACE otherwise.
    const ok = new Set<string>(OUTSIDE_USER_NAMESPACE_OK);
    const needs = new Set<string>(NEEDS_USER_NAMESPACE);
    const members = Object.getOwnPropertyNames(Engine.prototype).filter((n) => n !== "constructor");
    const unlisted = members.filter((n) => !ok.has(n) && !needs.has(n));
    expect(unlisted).toEqual([]);
    expect(members.filter((n) => ok.has(n) && needs.has(n))).toEqual([]);
    expect([...ok, ...needs].filter((n) => !members.includes(n))).toEqual([]);
  });

  test("outside the user namespace: every method but the allowed ones is refused, a new one too", async () => {
    const added = "aMethodNobodyListed";
    Object.defineProperty(Engine.prototype, added, {
      value: () => Promise.resolve("worked"),
      configurable: true,
    });
    try {
      const e = Object.create(Engine.prototype) as Engine;
      refuseOutsideUserNamespace(e);
      const message = (m: string) =>
        `Engine.${m} needs the rootless engine's user namespace, which this process is not in (a running Node or Bun process cannot enter one: it has threads)`;
      for (const m of [...NEEDS_USER_NAMESPACE, added]) {
        let err: unknown = null;
        try {
          await (e as unknown as Record<string, () => unknown>)[m]!();
        } catch (x) {
          err = x;
        }
        expect((err as Error | null)?.message, m).toBe(message(m));
        expect((err as { hint?: string }).hint, m).toContain("`pivot unshare bun app.ts`");
      }
      // The synchronous ones throw (not a rejected promise), as they would themselves.
      expect(() => e.removeVolume("v")).toThrow(message("removeVolume"));
      expect(() => e.pause("c")).toThrow(message("pause"));
      // A promise's ones reject.
      await expect(e.create({ image: "x" })).rejects.toThrow(message("create"));
      for (const m of OUTSIDE_USER_NAMESPACE_OK) expect(Object.hasOwn(e, m), m).toBe(false);
    } finally {
      delete (Engine.prototype as unknown as Record<string, unknown>)[added];
    }
  });
});
