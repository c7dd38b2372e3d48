import { expect, test } from "bun:test";
import {
  renderPlanJson,
  renderPlanShell,
  renderPlanText,
  shq,
  stepProcesses,
} from "../../src/runtime/explain.ts";
import { compileContainerPlan } from "../../src/runtime/plan.ts";
import { planInput } from "../fixtures/plan.ts";

function plan() {
  const args = ["sh", "-c", "echo it's $HOME"];
  return compileContainerPlan(planInput({ args, kindOf: () => "directory" }));
}

test("steps are attributed to launcher, setup process and init in order", () => {
  const p = stepProcesses(plan());
  expect(p[0]).toBe("launcher");
  expect(p.indexOf("setup")).toBeGreaterThan(0);
  expect(p.indexOf("init")).toBeGreaterThan(p.indexOf("setup"));
  expect(p.at(-1)).toBe("init");
});

test("text: numbered steps under process headings", () => {
  const text = renderPlanText(plan());
  expect(text).toContain("launcher (outside the container):");
  expect(text).toContain("container init (PID 1 inside):");
  expect(text).toMatch(/\n +\d+\. pivot_root into \/b\/rootfs\n/);
  expect(text.trim().split("\n").at(-1)).toMatch(/\d+\. exec sh -c echo it's \$HOME$/);
});

test("json: every step with its op name and arguments", () => {
  const json = JSON.parse(renderPlanJson(plan()));
  expect(json.steps[0]).toEqual({
    step: 1,
    process: "launcher",
    op: "MakeFifo",
    args: [0, "/run/x/exec.fifo"],
    text: expect.any(String),
  });
  expect(json.steps.at(-1).op).toBe("Exec");
});

test("shell: unshare, mounts into the rootfs, pivot_root, exec, with the heredoc closed", () => {
  const sh = renderPlanShell(plan(), "test");
  expect(sh.startsWith("#!/bin/sh\n")).toBe(true);
  expect(sh).toContain(
    "exec unshare --mount --uts --ipc --net --pid --fork --cgroup --propagation unchanged sh -es <<'PIVOT_INIT'",
  );
  expect(sh).toContain("mount --rbind /b/rootfs /b/rootfs");
  expect(sh).toContain("mount -t proc proc /b/rootfs/proc");
  expect(sh).toContain("mknod -m 666 /b/rootfs/dev/null c 1 3 && chown 0:0 /b/rootfs/dev/null");
  expect(sh).toContain("cd /b/rootfs && pivot_root . . && umount -l . && cd /");
  expect(sh).toContain(
    `exec env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin TERM=xterm sh -c 'echo it'\\''s $HOME'`,
  );
  expect(sh.trimEnd().endsWith("PIVOT_INIT")).toBe(true);
});

test("shell quoting", () => {
  expect(shq("plain/path-1.2")).toBe("plain/path-1.2");
  expect(shq("a b")).toBe("'a b'");
  expect(shq("it's")).toBe(`'it'\\''s'`);
  expect(shq("$x")).toBe("'$x'");
});
