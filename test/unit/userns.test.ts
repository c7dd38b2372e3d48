import { describe, expect, test } from "bun:test";
import { ConfigError, NotSupportedError, type PivotError } from "../../src/errors.ts";
import { defaultSpec } from "../../src/oci/default-spec.ts";
import type { Spec } from "../../src/oci/spec.ts";
import { kernelHasIdmappedMounts } from "../../src/runtime/features.ts";
import { MOUNT_ATTR, MS } from "../../src/runtime/linux.ts";
import {
  compileContainerPlan,
  compileExecPlan,
  parseMountOptions,
} from "../../src/runtime/plan.ts";
import {
  type Caller,
  checkIdMapHelpers,
  defaultStateRoot,
  firstUncoveredMapping,
  idMapMethod,
  subordinateRanges,
} from "../../src/runtime/userns.ts";
import { Op } from "../../src/runtime/wire.ts";
import { planInput } from "../fixtures/plan.ts";

const ROOT: Caller = { uid: 0, gid: 0 };
const ALICE: Caller = { uid: 1000, gid: 1000, name: "alice" };
const own = [{ containerID: 0, hostID: 1000, size: 1 }];
const ranges = [...own, { containerID: 1, hostID: 100000, size: 65536 }];

const input = (edit: (s: Spec) => void = () => {}, caller: Caller = ROOT) =>
  planInput({ edit, caller, kindOf: () => "directory" });

const withUserns =
  (uid = ranges, gid = ranges) =>
  (s: Spec) => {
    s.linux!.namespaces!.push({ type: "user" });
    s.linux!.uidMappings = uid;
    s.linux!.gidMappings = gid;
  };

describe("id map method", () => {
  test("root writes every map itself", () => {
    expect(idMapMethod(ranges, ranges, ROOT)).toEqual({
      uid: "write",
      gid: "write",
      denySetgroups: false,
    });
  });

  test("a user writes a map of its own id (setgroups denied), and uses the helpers for more", () => {
    expect(idMapMethod(own, own, ALICE)).toEqual({
      uid: "write",
      gid: "write",
      denySetgroups: true,
    });
    expect(idMapMethod(ranges, ranges, ALICE)).toEqual({
      uid: "newuidmap",
      gid: "newgidmap",
      denySetgroups: false,
    });
    expect(idMapMethod(own, ranges, ALICE).uid).toBe("write");
  });
});

describe("subordinate ids", () => {
  const file = "# comment\nbob:200000:65536\nalice:100000:65536\n1000:500000:10\nbad line\n";

  test("ranges are found by name and by uid", () => {
    expect(subordinateRanges(file, ALICE)).toEqual([
      { start: 100000, count: 65536 },
      { start: 500000, count: 10 },
    ]);
    expect(subordinateRanges(file, { uid: 7, gid: 7 })).toEqual([]);
  });

  test("a mapping must fit in one range; the caller's own id of size 1 is always allowed", () => {
    const r = subordinateRanges(file, ALICE);
    expect(firstUncoveredMapping(ranges, 1000, r)).toBe(-1);
    expect(firstUncoveredMapping([{ containerID: 0, hostID: 100000, size: 65537 }], 1000, r)).toBe(
      0,
    );
    expect(
      firstUncoveredMapping([...own, { containerID: 1, hostID: 200000, size: 1 }], 1000, r),
    ).toBe(1);
  });

  test("missing helpers and missing ranges are errors that say what to install or edit", () => {
    const method = idMapMethod(ranges, ranges, ALICE);
    expect(() =>
      checkIdMapHelpers(
        ranges,
        ranges,
        method,
        ALICE,
        () => "",
        () => null,
      ),
    ).toThrow(/needs newuidmap, and it is not installed/);
    let err: unknown;
    try {
      checkIdMapHelpers(
        ranges,
        ranges,
        method,
        ALICE,
        () => "bob:1:2\n",
        () => "/usr/bin/x",
      );
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as PivotError).message).toContain("/etc/subuid has no range for alice");
    expect((err as PivotError).hint).toContain('"alice:100000:65536" to /etc/subuid');
    expect(() =>
      checkIdMapHelpers(
        ranges,
        ranges,
        method,
        ALICE,
        () => "alice:100000:65536\n",
        () => "/x",
      ),
    ).not.toThrow();
  });
});

test("state goes under $XDG_RUNTIME_DIR when not root", () => {
  expect(defaultStateRoot(0, { XDG_RUNTIME_DIR: "/run/user/0" })).toBe("/run/pivot-runtime");
  expect(defaultStateRoot(1000, { XDG_RUNTIME_DIR: "/run/user/1000" })).toBe(
    "/run/user/1000/pivot-runtime",
  );
  expect(defaultStateRoot(1000, {})).toBe("/run/user/1000/pivot-runtime");
});

describe("rootless plans", () => {
  test("without a user namespace: refused with a hint", () => {
    expect(() => compileContainerPlan(input(() => {}, ALICE))).toThrow(/needs a user namespace/);
  });

  test("a map of the caller's own ids only: no SetGroups step, and additionalGids refused", () => {
    const plan = compileContainerPlan(input(withUserns(own, own), ALICE));
    expect(plan.idMaps).toEqual({ uid: "write", gid: "write", denySetgroups: true });
    expect(plan.steps.some((s) => s.op === Op.SetGroups)).toBe(false);
    expect(() =>
      compileContainerPlan(
        input((s) => {
          withUserns(own, own)(s);
          s.process!.user.additionalGids = [5];
        }, ALICE),
      ),
    ).toThrow(/additionalGids/);
    const exec = compileExecPlan({
      initPid: 1,
      namespaces: ["user", "mount"],
      process: { ...defaultSpec().process!, terminal: false },
      waitForExit: true,
      denySetgroups: true,
    });
    expect(exec.steps.some((s) => s.op === Op.SetGroups)).toBe(false);
  });

  test("with newgidmap, setgroups stays allowed", () => {
    const plan = compileContainerPlan(input(withUserns(), ALICE));
    expect(plan.idMaps?.denySetgroups).toBe(false);
    expect(plan.steps.some((s) => s.op === Op.SetGroups)).toBe(true);
  });
});

describe("id-mapped mounts", () => {
  test('"idmap" and "ridmap" are options of their own, not filesystem data', () => {
    expect(parseMountOptions(["rbind", "ridmap", "ro"])).toMatchObject({
      idmap: "ridmap",
      data: [],
    });
    expect(parseMountOptions(["bind"]).idmap).toBeUndefined();
  });

  test("the launcher opens the id-mapped tree before forking; the init attaches it", () => {
    const plan = compileContainerPlan(
      input((s) => {
        withUserns()(s);
        s.mounts!.push(
          {
            destination: "/data",
            type: "bind",
            source: "/srv/data",
            options: ["rbind", "ro"],
            uidMappings: [{ containerID: 1000, hostID: 100000, size: 1 }],
            gidMappings: [{ containerID: 1000, hostID: 100000, size: 1 }],
          },
          { destination: "/own", source: "rel", options: ["bind", "ridmap"] },
        );
      }),
    );
    const opens = plan.steps.filter((s) => s.op === Op.OpenIdmappedTree);
    // The copies become slaves, as every mount does at the first step (rslave by default).
    expect(opens.map((s) => s.args)).toEqual([
      // "ro": set on the detached copy (and its submounts: rbind), before it is attached.
      [4, "/srv/data", 1, 0, "1000 100000 1\n", "1000 100000 1\n", MS.SLAVE, MOUNT_ATTR.RDONLY, 0],
      // Without mappings: the container's, verbatim.
      [
        5,
        "/b/rel",
        0,
        1,
        "0 1000 1\n1 100000 65536\n",
        "0 1000 1\n1 100000 65536\n",
        MS.SLAVE,
        0,
        0,
      ],
    ]);
    const o = plan.steps.map((s) => s.op);
    expect(o.lastIndexOf(Op.OpenIdmappedTree)).toBeLessThan(o.indexOf(Op.ForkSetup));
    const moves = plan.steps.filter((s) => s.op === Op.MoveMountInRoot);
    // (slot, rootfs, dest, kernel filesystems allowed, propagation...)
    expect(moves.map((s) => s.args)).toEqual([
      [4, "/b/rootfs", "/data", 0],
      [5, "/b/rootfs", "/own", 0],
    ]);
    // No remount by path after the attach: the destination is looked up once.
    expect(plan.steps.filter((s) => s.args[1] === "/data" || s.args[2] === "/data").length).toBe(2);
  });

  test("refused: rootless, not a bind mount, half the mappings, idmap without a user namespace", () => {
    const bind = { destination: "/d", type: "bind", source: "/srv", options: ["idmap"] };
    expect(() =>
      compileContainerPlan(
        input((s) => {
          withUserns(own, own)(s);
          s.mounts!.push(bind);
        }, ALICE),
      ),
    ).toThrow(NotSupportedError);
    expect(() =>
      compileContainerPlan(
        input((s) => {
          withUserns()(s);
          s.mounts!.push({ ...bind, type: "tmpfs", options: ["idmap"] });
        }),
      ),
    ).toThrow(/bind mounts only/);
    expect(() =>
      compileContainerPlan(
        input((s) => {
          s.mounts!.push({ ...bind, options: ["bind"], uidMappings: own });
        }),
      ),
    ).toThrow(/mounts\[\d+\]\.gidMappings/);
    expect(() => compileContainerPlan(input((s) => s.mounts!.push(bind)))).toThrow(
      /creates no user namespace/,
    );
  });
});

test("features: id-mapped mounts from Linux 5.12 on", () => {
  expect(kernelHasIdmappedMounts("5.11.22")).toBe(false);
  expect(kernelHasIdmappedMounts("5.12.0-1-amd64")).toBe(true);
  expect(kernelHasIdmappedMounts("6.18.44-fc-v657")).toBe(true);
});
