// seccomp: profile validation, compilation to launcher rules, plan placement, Docker's default.
import { afterAll, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { arch, release, tmpdir } from "node:os";
import { join } from "node:path";
import { ConfigError, NotSupportedError } from "../../src/errors.ts";
import { defaultSpec } from "../../src/oci/default-spec.ts";
import type { Seccomp, Spec } from "../../src/oci/spec.ts";
import { compileContainerPlan, compileExecPlan } from "../../src/runtime/plan.ts";
import { decodePayload, encodeMessage, Op } from "../../src/runtime/wire.ts";
import {
  compileSeccomp,
  listenerState,
  SeccompActionValue,
  SeccompAttribute,
  SeccompOperator,
} from "../../src/security/seccomp.ts";
import { SeccompCache } from "../../src/security/seccomp-cache.ts";
import { defaultSeccompProfile } from "../../src/security/seccomp-default.ts";
import { planInput as basePlanInput } from "../fixtures/plan.ts";

/** The ConfigError's JSON path for a profile, or "" when it compiles. */
function errorPath(profile: unknown): string {
  try {
    compileSeccomp(profile);
    return "";
  } catch (err) {
    if (err instanceof ConfigError) return err.jsonPath;
    throw err;
  }
}

const allow = (names: string[]) => ({ names, action: "SCMP_ACT_ALLOW" });

describe("seccomp profile validation", () => {
  test("a profile without default action and syscalls disables seccomp, as in runc", () => {
    expect(compileSeccomp(undefined)).toBeNull();
    expect(compileSeccomp({})).toBeNull();
    expect(compileSeccomp({ defaultAction: "", syscalls: [] })).toBeNull();
  });

  test("errors name the JSON path of the offending entry", () => {
    const syscalls = [allow(["read"]), allow(["write"]), allow(["open"]), allow(["close"])];
    const bad = (edit: (s: Record<string, unknown>) => void) => {
      const p = structuredClone({ defaultAction: "SCMP_ACT_ERRNO", syscalls }) as Record<
        string,
        unknown
      >;
      edit(p);
      return errorPath(p);
    };
    const entry = (p: Record<string, unknown>, i: number) =>
      (p.syscalls as Record<string, unknown>[])[i]!;
    expect(bad(() => {})).toBe("");
    expect(bad((p) => (entry(p, 3).action = "SCMP_ACT_BOGUS"))).toBe(
      "linux.seccomp.syscalls[3].action",
    );
    expect(bad((p) => (entry(p, 3).action = 7))).toBe("linux.seccomp.syscalls[3].action");
    expect(bad((p) => (p.defaultAction = "ALLOW"))).toBe("linux.seccomp.defaultAction");
    expect(bad((p) => (entry(p, 1).names = "write"))).toBe("linux.seccomp.syscalls[1].names");
    expect(bad((p) => (entry(p, 1).names = ["write", 3]))).toBe(
      "linux.seccomp.syscalls[1].names[1]",
    );
    expect(bad((p) => (entry(p, 0).names = ["../etc"]))).toBe("linux.seccomp.syscalls[0].names[0]");
    expect(bad((p) => (p.syscalls = [4]))).toBe("linux.seccomp.syscalls[0]");
    expect(bad((p) => (p.architectures = ["SCMP_ARCH_X86_64", "SCMP_ARCH_Z80"]))).toBe(
      "linux.seccomp.architectures[1]",
    );
    expect(bad((p) => (p.flags = ["SECCOMP_FILTER_FLAG_NOPE"]))).toBe("linux.seccomp.flags[0]");
    expect(bad((p) => (p.defaultErrnoRet = -1))).toBe("linux.seccomp.defaultErrnoRet");
    expect(bad((p) => (entry(p, 2).args = [{ index: 6, value: 1, op: "SCMP_CMP_EQ" }]))).toBe(
      "linux.seccomp.syscalls[2].args[0].index",
    );
    expect(bad((p) => (entry(p, 2).args = [{ index: 0, value: 1, op: "EQ" }]))).toBe(
      "linux.seccomp.syscalls[2].args[0].op",
    );
    expect(bad((p) => (entry(p, 2).args = [{ index: 0, value: -1, op: "SCMP_CMP_EQ" }]))).toBe(
      "linux.seccomp.syscalls[2].args[0].value",
    );
    // Above 2^53 a JSON number has lost precision: refused rather than silently changed.
    expect(bad((p) => (entry(p, 2).args = [{ index: 0, value: 2 ** 60, op: "SCMP_CMP_EQ" }]))).toBe(
      "linux.seccomp.syscalls[2].args[0].value",
    );
    expect(bad((p) => (p.listenerPath = "relative.sock"))).toBe("linux.seccomp.listenerPath");
  });

  test("errnoRet only goes with actions that return an errno", () => {
    expect(errorPath({ defaultAction: "SCMP_ACT_ALLOW", defaultErrnoRet: 5, syscalls: [] })).toBe(
      "linux.seccomp.defaultErrnoRet",
    );
    expect(
      errorPath({
        defaultAction: "SCMP_ACT_ERRNO",
        syscalls: [{ names: ["read"], action: "SCMP_ACT_ALLOW", errnoRet: 1 }],
      }),
    ).toBe("linux.seccomp.syscalls[0].errnoRet");
    expect(
      errorPath({
        defaultAction: "SCMP_ACT_ALLOW",
        syscalls: [{ names: ["read"], action: "SCMP_ACT_ERRNO", errnoRet: 4096 }],
      }),
    ).toBe("linux.seccomp.syscalls[0].errnoRet");
  });

  test("SCMP_ACT_NOTIFY needs a listener, cannot be the default and cannot catch write", () => {
    expect(
      errorPath({
        defaultAction: "SCMP_ACT_ALLOW",
        syscalls: [{ names: ["mkdir"], action: "SCMP_ACT_NOTIFY" }],
      }),
    ).toBe("linux.seccomp.listenerPath");
    expect(errorPath({ defaultAction: "SCMP_ACT_NOTIFY", listenerPath: "/run/a.sock" })).toBe(
      "linux.seccomp.defaultAction",
    );
    expect(
      errorPath({
        defaultAction: "SCMP_ACT_ALLOW",
        listenerPath: "/run/a.sock",
        syscalls: [{ names: ["mkdir", "write"], action: "SCMP_ACT_NOTIFY" }],
      }),
    ).toBe("linux.seccomp.syscalls[0].names");
    expect(
      errorPath({
        defaultAction: "SCMP_ACT_ALLOW",
        listenerPath: "/run/a.sock",
        syscalls: [allow(["read"]), { names: ["sendmsg"], action: "SCMP_ACT_NOTIFY" }],
      }),
    ).toBe("linux.seccomp.syscalls[1].names");
  });
});

describe("seccomp compilation", () => {
  test("every action of the runtime-spec has its kernel value; errno goes in the low bits", () => {
    const actions = Object.keys(SeccompActionValue).filter((a) => a !== "SCMP_ACT_NOTIFY");
    const c = compileSeccomp({
      defaultAction: "SCMP_ACT_ERRNO",
      defaultErrnoRet: 38,
      syscalls: actions.map((action, i) => ({ names: [`call${i}`], action })),
    })!;
    expect(c.defaultAction).toBe(0x0005_0000 + 38);
    const byName = Object.fromEntries(c.rules.map((r) => [r.syscall, r.action]));
    expect(byName).toEqual({
      call0: 0, // SCMP_ACT_KILL = KILL_THREAD
      call1: 0,
      call2: 0x8000_0000,
      call3: 0x0003_0000,
      call4: 0x0005_0001, // ERRNO without errnoRet: EPERM
      call5: 0x7ff0_0001, // TRACE without errnoRet: EPERM, as runc
      call6: 0x7ffc_0000,
      call7: 0x7fff_0000,
    });
    expect(actions).toEqual([
      "SCMP_ACT_KILL",
      "SCMP_ACT_KILL_THREAD",
      "SCMP_ACT_KILL_PROCESS",
      "SCMP_ACT_TRAP",
      "SCMP_ACT_ERRNO",
      "SCMP_ACT_TRACE",
      "SCMP_ACT_LOG",
      "SCMP_ACT_ALLOW",
    ]);
  });

  test("one rule per name; rules with the default action are dropped", () => {
    const c = compileSeccomp({
      defaultAction: "SCMP_ACT_ERRNO",
      syscalls: [
        { names: ["read", "write"], action: "SCMP_ACT_ALLOW" },
        { names: ["mkdir"], action: "SCMP_ACT_ERRNO" }, // = default (EPERM)
        { names: ["rmdir"], action: "SCMP_ACT_ERRNO", errnoRet: 2 },
      ],
    })!;
    expect(c.rules.map((r) => r.text)).toEqual([
      "read -> SCMP_ACT_ALLOW",
      "write -> SCMP_ACT_ALLOW",
      "rmdir -> SCMP_ACT_ERRNO(2)",
    ]);
  });

  test("conditions on different arguments are ANDed; on the same argument they become separate rules", () => {
    const c = compileSeccomp({
      defaultAction: "SCMP_ACT_ALLOW",
      syscalls: [
        {
          names: ["socket"],
          action: "SCMP_ACT_ERRNO",
          args: [
            { index: 0, value: 16, op: "SCMP_CMP_EQ" },
            { index: 2, value: 9, op: "SCMP_CMP_NE" },
          ],
        },
        {
          names: ["personality"],
          action: "SCMP_ACT_ERRNO",
          args: [
            { index: 0, value: 8, op: "SCMP_CMP_EQ" },
            { index: 0, value: 0xffff_ffff, op: "SCMP_CMP_EQ" },
          ],
        },
        {
          names: ["clone"],
          action: "SCMP_ACT_ERRNO",
          args: [{ index: 0, value: 0x7e02_0000, valueTwo: 0, op: "SCMP_CMP_MASKED_EQ" }],
        },
      ],
    })!;
    expect(c.rules.map((r) => r.text)).toEqual([
      "socket -> SCMP_ACT_ERRNO(1) if arg0 == 16 && arg2 != 9",
      "personality -> SCMP_ACT_ERRNO(1) if arg0 == 8",
      "personality -> SCMP_ACT_ERRNO(1) if arg0 == 4294967295",
      "clone -> SCMP_ACT_ERRNO(1) if arg0 & 2114060288 == 0",
    ]);
    expect(c.rules[0]!.conditions).toEqual([
      { index: 0, op: SeccompOperator.SCMP_CMP_EQ!, value: 16n, valueTwo: 0n },
      { index: 2, op: SeccompOperator.SCMP_CMP_NE!, value: 9n, valueTwo: 0n },
    ]);
  });

  test("architectures and flags become libseccomp names and attributes", () => {
    const c = compileSeccomp({
      defaultAction: "SCMP_ACT_ALLOW",
      architectures: ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32", "SCMP_ARCH_X86"],
      flags: ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_TSYNC"],
    })!;
    expect(c.architectures).toEqual(["x86_64", "x86", "x32"]);
    expect(c.attributes.map((a) => [a.attribute, a.value, a.optional])).toEqual([
      [SeccompAttribute.CTL_NNP, 0, false], // no_new_privs is process.noNewPrivileges' business
      [SeccompAttribute.CTL_LOG, 1, false],
      [SeccompAttribute.CTL_TSYNC, 1, false],
    ]);
    // Without flags: runc's default SPEC_ALLOW, if the host supports it.
    const d = compileSeccomp({ defaultAction: "SCMP_ACT_ALLOW" })!;
    expect(d.attributes.map((a) => [a.attribute, a.optional])).toEqual([
      [SeccompAttribute.CTL_NNP, false],
      [SeccompAttribute.CTL_SSB, true],
    ]);
    // An explicit empty list means no flags at all.
    expect(compileSeccomp({ defaultAction: "SCMP_ACT_ALLOW", flags: [] })!.attributes).toHaveLength(
      1,
    );
  });
});

const planInput = (edit: (s: Spec) => void) => basePlanInput({ args: ["echo", "hi"], edit });

const blockMkdir: Seccomp = {
  defaultAction: "SCMP_ACT_ALLOW",
  architectures: ["SCMP_ARCH_X86_64"],
  syscalls: [{ names: ["mkdir", "mkdirat"], action: "SCMP_ACT_ERRNO", errnoRet: 95 }],
};

describe("seccomp in the launch plan", () => {
  test("with noNewPrivileges the filter is loaded after the credentials and the program lookup, before the wait for start", () => {
    const plan = compileContainerPlan(
      planInput((s) => {
        s.process!.noNewPrivileges = true;
        s.linux!.seccomp = blockMkdir;
      }),
    );
    const o = plan.steps.map((s) => s.op);
    const load = o.indexOf(Op.SeccompLoad);
    expect(o.indexOf(Op.SetCapabilities)).toBeLessThan(load);
    expect(o.indexOf(Op.NoNewPrivileges)).toBeLessThan(load);
    expect(o.indexOf(Op.FindExecutable)).toBeLessThan(o.indexOf(Op.SeccompInit));
    expect(load).toBe(o.indexOf(Op.WaitExecFifo) - 1);
    const seccompSteps = plan.steps.filter((s) => s.op >= Op.SeccompInit && s.op <= Op.SeccompLoad);
    expect(seccompSteps.map((s) => [s.op, ...s.args])).toEqual([
      [Op.SeccompInit, 0x7fff_0000],
      [Op.SeccompAttr, SeccompAttribute.CTL_NNP, 0, 0],
      [Op.SeccompAttr, SeccompAttribute.CTL_SSB, 1, 1],
      [Op.SeccompArch, "x86_64"],
      [Op.SeccompRule, "mkdir", 0x0005_0000 + 95, 0],
      [Op.SeccompRule, "mkdirat", 0x0005_0000 + 95, 0],
      [Op.SeccompLoad, -1],
    ]);
  });

  test("without noNewPrivileges the filter is loaded before the user switch drops CAP_SYS_ADMIN", () => {
    const plan = compileContainerPlan(
      planInput((s) => {
        s.process!.noNewPrivileges = false;
        s.linux!.seccomp = blockMkdir;
      }),
    );
    const o = plan.steps.map((s) => s.op);
    expect(o).not.toContain(Op.NoNewPrivileges);
    expect(o.indexOf(Op.SeccompLoad)).toBeLessThan(o.indexOf(Op.SetBoundingSet));
    expect(o.indexOf(Op.SeccompLoad)).toBeLessThan(o.indexOf(Op.SetUser));
    expect(o.indexOf(Op.PivotRoot)).toBeLessThan(o.indexOf(Op.SeccompInit));
  });

  test("exec'd processes get the container's filter", () => {
    const plan = compileExecPlan({
      initPid: 42,
      namespaces: ["pid", "mount"],
      process: { ...defaultSpec().process!, terminal: false, args: ["ls"] },
      waitForExit: true,
      seccomp: blockMkdir,
    });
    const o = plan.steps.map((s) => s.op);
    expect(o).toContain(Op.SeccompLoad);
    expect(o.indexOf(Op.SeccompLoad)).toBeLessThan(o.indexOf(Op.Exec));
  });

  test("an invalid profile fails the plan with its JSON path", () => {
    expect(() =>
      compileContainerPlan(
        planInput((s) => {
          s.linux!.seccomp = {
            defaultAction: "SCMP_ACT_ALLOW",
            syscalls: [{ names: ["x"], action: "NOPE" }],
          };
        }),
      ),
    ).toThrow("linux.seccomp.syscalls[0].action");
  });

  test("with SCMP_ACT_NOTIFY the launcher connects to the listener and sends it the notification fd", () => {
    const notify: Seccomp = {
      defaultAction: "SCMP_ACT_ALLOW",
      listenerPath: "/run/agent.sock",
      listenerMetadata: "meta",
      syscalls: [{ names: ["mkdir"], action: "SCMP_ACT_NOTIFY" }],
    };
    const plan = compileContainerPlan(
      planInput((s) => {
        s.linux!.seccomp = notify;
      }),
    );
    const o = plan.steps.map((s) => s.op);
    const connect = plan.steps.findIndex(
      (s) => s.op === Op.ConnectSocket && s.args[1] === "/run/agent.sock",
    );
    // Connected from the host's view, before any namespace exists.
    expect(connect).toBeGreaterThanOrEqual(0);
    expect(connect).toBeLessThan(o.indexOf(Op.ForkSetup));
    const slot = plan.steps[connect]!.args[0]!;
    expect(plan.steps.find((s) => s.op === Op.SeccompLoad)!.args).toEqual([slot]);
    expect(plan.seccompListener?.listenerMetadata).toBe("meta");
    const state = JSON.parse(
      listenerState(
        plan.seccompListener!,
        1234,
        { ociVersion: "1.2.0", id: "c1", status: "creating", bundle: "/b", pid: 1234 },
        "1.2.0",
      ),
    );
    expect(state).toEqual({
      ociVersion: "1.2.0",
      fds: ["seccompFd"],
      pid: 1234,
      metadata: "meta",
      state: { ociVersion: "1.2.0", id: "c1", status: "creating", bundle: "/b", pid: 1234 },
    });
    // Without notify rules, no listener is involved even when listenerPath is set.
    const quiet = compileContainerPlan(
      planInput((s) => {
        s.linux!.seccomp = { ...blockMkdir, listenerPath: "/run/agent.sock" };
      }),
    );
    expect(quiet.seccompListener).toBeUndefined();
    expect(quiet.steps.some((s) => s.args[1] === "/run/agent.sock")).toBe(false);
    // exec cannot hand a notification fd over: a clear error rather than a hang.
    expect(() =>
      compileExecPlan({
        initPid: 42,
        namespaces: ["pid"],
        process: { ...defaultSpec().process!, terminal: false, args: ["ls"] },
        waitForExit: true,
        seccomp: notify,
      }),
    ).toThrow(NotSupportedError);
  });

  test("argument values travel as 64-bit integers, also above 2^63", () => {
    const c = compileSeccomp({
      defaultAction: "SCMP_ACT_ALLOW",
      syscalls: [
        {
          names: ["ioctl"],
          action: "SCMP_ACT_ERRNO",
          args: [{ index: 1, value: 2 ** 53 - 1, op: "SCMP_CMP_EQ" }],
        },
      ],
    })!;
    expect(c.rules[0]!.conditions[0]!.value).toBe(9007199254740991n);
    const big = BigInt.asIntN(64, (1n << 64n) - 1n);
    const m = decodePayload(
      encodeMessage(Op.SeccompRule, ["ioctl", 1, 1, 1, 4, big, 0]).subarray(4),
    );
    expect(BigInt.asUintN(64, BigInt(m.args[5] as bigint))).toBe((1n << 64n) - 1n);
  });
});

describe("Docker's default profile", () => {
  const names = (p: Seccomp) => p.syscalls!.flatMap((s) => s.names);

  test("an allow-list with EPERM as default, for the host's architectures", () => {
    const p = defaultSeccompProfile({ arch: "amd64", kernelRelease: "6.1.0-18-amd64" });
    expect(p.defaultAction).toBe("SCMP_ACT_ERRNO");
    expect(p.defaultErrnoRet).toBe(1);
    expect(p.architectures).toEqual(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]);
    expect(names(p)).toContain("read");
    expect(names(p)).toContain("arch_prctl");
    expect(names(p)).toContain("ptrace"); // minKernel 4.8
    expect(names(p)).not.toContain("mount");
    expect(names(p)).not.toContain("init_module");
    expect(names(p)).not.toContain("keyctl");
    expect(names(p)).not.toContain("arm_fadvise64_64");
    // clone without namespace flags only; clone3 answers ENOSYS so libc falls back to clone.
    const clone = p.syscalls!.find((s) => s.names.includes("clone"))!;
    expect(clone.args).toEqual([{ index: 0, value: 2114060288, op: "SCMP_CMP_MASKED_EQ" }]);
    const clone3 = p.syscalls!.find((s) => s.names.includes("clone3"))!;
    expect(clone3).toMatchObject({ action: "SCMP_ACT_ERRNO", errnoRet: 38 });
  });

  test("capabilities of the bounding set open their syscalls, as in Docker", () => {
    const p = defaultSeccompProfile({
      arch: "amd64",
      kernelRelease: "6.1.0",
      capabilities: ["CAP_SYS_ADMIN", "CAP_SYS_MODULE"],
    });
    expect(names(p)).toContain("mount");
    expect(names(p)).toContain("init_module");
    // With CAP_SYS_ADMIN clone and clone3 are allowed without conditions.
    const rulesFor = (name: string) => p.syscalls!.filter((s) => s.names.includes(name));
    expect(rulesFor("clone3").map((s) => s.action)).toEqual(["SCMP_ACT_ALLOW"]);
    expect(rulesFor("clone").map((s) => s.args)).toEqual([undefined]);
  });

  test("architecture and kernel conditions", () => {
    const arm = defaultSeccompProfile({ arch: "arm64", kernelRelease: "5.10.0" });
    expect(arm.architectures).toEqual(["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]);
    expect(names(arm)).toContain("arm_fadvise64_64");
    expect(names(arm)).not.toContain("arch_prctl");
    const old = defaultSeccompProfile({ arch: "amd64", kernelRelease: "4.4.0-210-generic" });
    expect(names(old)).not.toContain("ptrace");
  });

  test("compiles into a filter of several hundred rules", () => {
    const c = compileSeccomp(defaultSeccompProfile({ arch: "amd64", kernelRelease: "6.1.0" }))!;
    expect(c.rules.length).toBeGreaterThan(300);
    expect(c.defaultAction).toBe(0x0005_0001);
    expect(c.attributes.some((a) => a.attribute === SeccompAttribute.CTL_OPTIMIZE)).toBe(true);
  });
});

describe("the cache of compiled filters: keys", () => {
  // The launcher's identity is part of the key: a real file stands in for it.
  const dir = mkdtempSync(join(tmpdir(), "pivot-seccomp-key-"));
  const launcher = join(dir, "launcher");
  writeFileSync(launcher, "x");
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test("a key is the SHA-256 of the versioned input, as caches written before have it", async () => {
    const cache = new SeccompCache(join(dir, "cache"), launcher);
    const profile = defaultSeccompProfile({ capabilities: ["CAP_KILL"] });
    const st = statSync(launcher);
    const input = `pivot-seccomp-v1\0${release()}\0${arch()}\0${launcher}:${st.ino}:${st.size}:${st.mtimeMs}\0${JSON.stringify(profile)}`;
    expect(await cache.key(profile)).toBe(createHash("sha256").update(input).digest("hex"));
  });

  test("other profiles get other keys; no profile, or one that cannot be serialized, none", async () => {
    const cache = new SeccompCache(join(dir, "cache"), launcher);
    const a = await cache.key(defaultSeccompProfile({ capabilities: ["CAP_KILL"] }));
    const b = await cache.key(
      defaultSeccompProfile({ capabilities: ["CAP_KILL", "CAP_SYS_ADMIN"] }),
    );
    expect(a).toMatch(/^[0-9a-f]{64}$/);
    expect(b).toMatch(/^[0-9a-f]{64}$/);
    expect(a).not.toBe(b);
    expect(await cache.key(undefined)).toBeNull();
    expect(await cache.key({ defaultAction: "SCMP_ACT_ALLOW", n: 1n })).toBeNull();
  });

  test("a launcher with libseccomp linked in (no library file) is the file an entry watches", async () => {
    const own = join(dir, "static-launcher");
    writeFileSync(own, "static");
    const cache = new SeccompCache(join(dir, "cache-static"), own);
    const compiled = compileSeccomp({ defaultAction: "SCMP_ACT_ALLOW" })!;
    const key = (await cache.key({ defaultAction: "SCMP_ACT_ALLOW" }))!;
    const report = { flags: 0, hex: "0600000000000000", version: "2.5.4", library: "" };
    cache.store(key, compiled, report);
    expect(cache.lookup(key)?.program).toEqual(Buffer.from(report.hex, "hex"));
    // A rebuilt launcher (another size or time) may carry another libseccomp: the entry misses.
    writeFileSync(own, "static, rebuilt");
    expect(cache.lookup(key)).toBeNull();
  });
});
