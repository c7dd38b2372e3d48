import { describe, expect, test } from "bun:test";
import { parseArgs } from "../../src/cli/args.ts";
import { ConfigError } from "../../src/errors.ts";
import { defaultSpec } from "../../src/oci/default-spec.ts";
import { parseConfig, validateSpec } from "../../src/oci/validate.ts";
import { parseSignal } from "../../src/runtime/signals.ts";
import { validateId } from "../../src/runtime/state.ts";

function errorOf(f: () => unknown): ConfigError {
  try {
    f();
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error("expected a ConfigError");
}

// biome-ignore lint/suspicious/noExplicitAny: tests corrupt the config on purpose
const base = () => JSON.parse(JSON.stringify(defaultSpec())) as Record<string, any>;

describe("config validation", () => {
  test("the default spec is valid", () => {
    expect(validateSpec(base()).ociVersion).toMatch(/^1\./);
  });

  test("a syntax error names the file", () => {
    expect(errorOf(() => parseConfig('{"ociVersion": ', "/b/config.json")).message).toMatch(
      /\/b\/config\.json: is not valid JSON/,
    );
  });

  test("every 1.x version is accepted; others are refused with a hint", () => {
    for (const v of ["1.0.0", "1.1.0", "1.3.0", "1.0.2-dev"])
      expect(validateSpec({ ...base(), ociVersion: v }).ociVersion).toBe(v);
    const err = errorOf(() => validateSpec({ ...base(), ociVersion: "2.0.0" }));
    expect(err.jsonPath).toBe("ociVersion");
    expect(err.hint).toMatch(/1\.x/);
  });

  test("missing root and missing process fields name the JSON path", () => {
    const noRoot = base();
    delete noRoot.root;
    expect(errorOf(() => validateSpec(noRoot)).jsonPath).toBe("root");
    const noArgs = base();
    delete noArgs.process.args;
    expect(errorOf(() => validateSpec(noArgs)).jsonPath).toBe("process.args");
    const noCwd = base();
    delete noCwd.process.cwd;
    expect(errorOf(() => validateSpec(noCwd)).jsonPath).toBe("process.cwd");
  });

  test("wrong types name the JSON path", () => {
    const s = base();
    s.process.args = ["sh", 3];
    expect(errorOf(() => validateSpec(s)).message).toMatch(
      /process\.args\[1\]: must be a string, got a number/,
    );
    const t = base();
    t.process.user.uid = "root";
    expect(errorOf(() => validateSpec(t)).jsonPath).toBe("process.user.uid");
    const u = base();
    u.mounts[2].destination = "dev/pts";
    expect(errorOf(() => validateSpec(u)).message).toMatch(
      /mounts\[2\]\.destination: must be an absolute path/,
    );
  });

  test("namespaces: unknown types and duplicates", () => {
    const s = base();
    s.linux.namespaces.push({ type: "bogus" });
    expect(errorOf(() => validateSpec(s)).jsonPath).toBe("linux.namespaces[6].type");
    const d = base();
    d.linux.namespaces.push({ type: "pid" });
    expect(errorOf(() => validateSpec(d)).message).toMatch(/listed twice/);
  });

  test("rlimits: 18446744073709551615 (Docker's and podman's unlimited) is accepted; inexact values are not", () => {
    const withRlimit = (json: string) =>
      parseConfig(
        JSON.stringify(base()).replace(
          '"rlimits":[',
          `"rlimits":[{"type":"RLIMIT_CORE","soft":${json},"hard":18446744073709551615},`,
        ),
        "/b/config.json",
      );
    const spec = withRlimit("18446744073709551615");
    expect(spec.process?.rlimits?.[0]?.type).toBe("RLIMIT_CORE");
    expect(withRlimit("9223372036854775807").process?.rlimits?.[0]?.soft).toBe(2 ** 63);
    const inexact = errorOf(() => withRlimit("90071992547409930"));
    expect(inexact.jsonPath).toBe("process.rlimits[0].soft");
    expect(inexact.hint).toContain("18446744073709551615 for unlimited");
    expect(errorOf(() => withRlimit("-1")).jsonPath).toBe("process.rlimits[0].soft");
  });

  test("sysctls: only those of a namespace the container has; the host kernel's are refused", () => {
    const withSysctl = (sysctl: Record<string, string>, drop: string[] = []) => {
      const spec = base();
      spec.linux.sysctl = sysctl;
      spec.linux.namespaces = spec.linux.namespaces.filter(
        (n: { type: string }) => !drop.includes(n.type),
      );
      return spec;
    };
    const ok = {
      "net.ipv4.ip_forward": "1",
      "kernel.msgmax": "8192",
      "kernel.shm_rmid_forced": "1",
      "fs.mqueue.msg_max": "20",
      "kernel.domainname": "example.org",
    };
    expect(validateSpec(withSysctl(ok)).linux?.sysctl).toEqual(ok);
    const global = errorOf(() => validateSpec(withSysctl({ "vm.overcommit_memory": "1" })));
    expect(global.jsonPath).toBe("linux.sysctl.vm.overcommit_memory");
    expect(global.message).toContain("would change the host's kernel");
    expect(global.hint).toContain("net.*");
    const sharedNet = errorOf(() =>
      validateSpec(withSysctl({ "net.ipv4.ip_forward": "1" }, ["network"])),
    );
    expect(sharedNet.message).toContain(
      "belongs to the network namespace, which this container shares with the host",
    );
    const sharedIpc = errorOf(() => validateSpec(withSysctl({ "kernel.sem": "1 2 3 4" }, ["ipc"])));
    expect(sharedIpc.message).toContain("ipc namespace");
    expect(errorOf(() => validateSpec(withSysctl({ "kernel.hostname": "x" }))).message).toContain(
      "the hostname field",
    );
  });

  test("sysctls named with slashes (net/ipv4/ip_forward), as runc accepts them, are checked as with dots", () => {
    const spec = base();
    spec.linux.sysctl = { "net/ipv4/ip_forward": "1", "kernel/domainname": "example.org" };
    expect(validateSpec(spec).linux?.sysctl).toEqual(spec.linux.sysctl);
    spec.linux.sysctl = { "vm/overcommit_memory": "1" };
    expect(errorOf(() => validateSpec(spec)).message).toContain("would change the host's kernel");
    spec.linux.sysctl = { "kernel/hostname": "x" };
    expect(errorOf(() => validateSpec(spec)).message).toContain("the hostname field");
  });

  test("env entries must be NAME=value", () => {
    const s = base();
    s.process.env = ["PATH=/bin", "oops"];
    expect(errorOf(() => validateSpec(s)).jsonPath).toBe("process.env[1]");
  });
});

describe("container ids", () => {
  test("valid ids pass", () => {
    for (const id of ["a", "abc-123_x.y+z", "x".repeat(255)])
      expect(() => validateId(id)).not.toThrow();
  });
  test("empty, path-like, and over-long ids are refused", () => {
    for (const id of ["", "../x", "/", "a/b", ".", "..", "x".repeat(256), "a b", "a\nb"]) {
      expect(() => validateId(id)).toThrow();
    }
  });
});

describe("signals", () => {
  test("names, SIG-prefixed names and numbers", () => {
    expect(parseSignal("KILL")).toBe(9);
    expect(parseSignal("SIGTERM")).toBe(15);
    expect(parseSignal("sigusr1")).toBe(10);
    expect(parseSignal("9")).toBe(9);
    expect(parseSignal(2)).toBe(2);
    expect(parseSignal("RTMIN+1")).toBe(35);
  });
  test("unknown signals are errors", () => {
    expect(() => parseSignal("FOO")).toThrow(/unknown signal/);
    expect(() => parseSignal("0")).toThrow();
    expect(() => parseSignal("65")).toThrow();
  });
});

describe("command-line parsing", () => {
  const specs = [
    { name: "bundle", aliases: ["b"], value: true },
    { name: "detach", aliases: ["d"] },
  ];
  test("runc's flag forms", () => {
    for (const argv of [
      ["--bundle", "/x", "id"],
      ["--bundle=/x", "id"],
      ["-b", "/x", "id"],
      ["-bundle", "/x", "id"],
      ["id", "--bundle", "/x"],
    ]) {
      const p = parseArgs(argv, specs);
      expect(p.flags.get("bundle")).toEqual(["/x"]);
      expect(p.positionals).toEqual(["id"]);
    }
  });
  test("exec's command keeps its own flags", () => {
    const p = parseArgs(["-d", "id", "sh", "-c", "echo hi"], specs, 1);
    expect(p.positionals).toEqual(["id"]);
    expect(p.rest).toEqual(["sh", "-c", "echo hi"]);
  });
  test("unknown flags and missing values are errors", () => {
    expect(() => parseArgs(["--nope"], specs)).toThrow(/unknown flag/);
    expect(() => parseArgs(["--bundle"], specs)).toThrow(/needs a value/);
  });
});
