// Showing a launch plan to people: numbered steps, JSON, or a shell script that reproduces the
// container by hand with unshare, mount and pivot_root.
import { CloneFlag, MOUNT_ATTR, MountOptionFlags, MS, PropagationFlags, Rlimit } from "./linux.ts";
import type { Plan, PlanStep } from "./plan.ts";
import { type Arg, Op, opName } from "./wire.ts";

/** Which process runs a step: the launcher, the setup child, or the container's init. */
export type StepProcess = "launcher" | "setup" | "init";

export function stepProcesses(plan: Plan): StepProcess[] {
  let current: StepProcess = "launcher";
  return plan.steps.map((step) => {
    const at = current;
    if (step.op === Op.ForkSetup) current = "setup";
    if (step.op === Op.ForkInit) current = "init";
    return at;
  });
}

const PROCESS_TITLES: Record<StepProcess, string> = {
  launcher: "launcher (outside the container)",
  setup: "setup process (joins and creates namespaces)",
  init: "container init (PID 1 inside)",
};

/** Numbered human-readable steps, grouped by the process that runs them. */
export function renderPlanText(plan: Plan): string {
  const processes = stepProcesses(plan);
  const lines: string[] = [];
  let last: StepProcess | null = null;
  const width = String(plan.steps.length).length;
  plan.steps.forEach((step, i) => {
    const proc = processes[i]!;
    if (proc !== last) {
      if (last) lines.push("");
      lines.push(`${PROCESS_TITLES[proc]}:`);
      last = proc;
    }
    lines.push(`  ${String(i + 1).padStart(width)}. ${step.text}`);
  });
  return `${lines.join("\n")}\n`;
}

function jsonArg(a: Arg): string | number {
  if (typeof a === "bigint") return a <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(a) : a.toString();
  if (a instanceof Uint8Array) return Buffer.from(a).toString("base64");
  return a;
}

export function renderPlanJson(plan: Plan): string {
  const processes = stepProcesses(plan);
  const steps = plan.steps.map((s, i) => ({
    step: i + 1,
    process: processes[i],
    op: opName(s.op),
    args: s.args.map(jsonArg),
    text: s.text,
  }));
  return `${JSON.stringify({ newUserNamespace: plan.newUserNamespace, steps }, null, 2)}\n`;
}

/** Quotes a word for POSIX sh. */
export function shq(s: string | number | bigint): string {
  const str = String(s);
  return /^[A-Za-z0-9_./:=,+@%-]+$/.test(str) ? str : `'${str.replace(/'/g, `'\\''`)}'`;
}

function mountOptions(flags: number, data: string): string {
  const opts: string[] = [];
  for (const [name, [set, bit]] of Object.entries(MountOptionFlags)) {
    if (!set || name === "bind" || name === "rbind" || name === "remount") continue;
    if ((flags & bit) === bit) opts.push(name);
  }
  if (data) opts.push(data);
  return opts.join(",");
}

/** mount(8) options for mount_setattr attributes (BindInRoot). */
function attributeOptions(set: number, clear: number): string {
  const names: [number, string][] = [
    [MOUNT_ATTR.RDONLY, "ro"],
    [MOUNT_ATTR.NOSUID, "nosuid"],
    [MOUNT_ATTR.NODEV, "nodev"],
    [MOUNT_ATTR.NOEXEC, "noexec"],
    [MOUNT_ATTR.NODIRATIME, "nodiratime"],
    [MOUNT_ATTR.NOSYMFOLLOW, "nosymfollow"],
  ];
  const opts = names.filter(([bit]) => (set & bit) !== 0).map(([, name]) => name);
  if (clear & MOUNT_ATTR._ATIME) {
    const atime = set & MOUNT_ATTR._ATIME;
    opts.push(
      atime === MOUNT_ATTR.NOATIME
        ? "noatime"
        : atime === MOUNT_ATTR.STRICTATIME
          ? "strictatime"
          : "relatime",
    );
  }
  return opts.join(",");
}

function propagationOption(flags: number): string {
  for (const [name, value] of Object.entries(PropagationFlags)) {
    if (value === flags) return `--make-${name}`;
  }
  return `--make-private`;
}

function inRoot(rootfs: Arg, path: Arg): string {
  const p = String(path);
  return rootfs === "/" ? p : `${String(rootfs)}${p === "/" ? "" : p}`;
}

function unshareFlags(flags: number): string[] {
  const names: [keyof typeof CloneFlag, string][] = [
    ["mount", "--mount"],
    ["uts", "--uts"],
    ["ipc", "--ipc"],
    ["network", "--net"],
    ["pid", "--pid --fork"],
    ["cgroup", "--cgroup"],
    ["time", "--time"],
    ["user", "--user"],
  ];
  return names.filter(([k]) => (flags & CloneFlag[k]) !== 0).map(([, f]) => f);
}

/** ulimit flags for the limits counted in units, not bytes (so the numbers carry over as is). */
const ULIMIT_FLAGS: Record<string, string> = {
  RLIMIT_NOFILE: "-n",
  RLIMIT_NPROC: "-u",
  RLIMIT_CPU: "-t",
};

function shellForStep(step: PlanStep): string[] {
  const a = step.args;
  switch (step.op) {
    case Op.MakeFifo:
      return [`# ${step.text} (the runtime's own synchronisation; not needed by hand)`];
    case Op.JoinNamespace:
      return [
        `# join ${String(a[0])}: prefix the rest with nsenter --${nsenterName(Number(a[1]))}=${shq(String(a[0]))}`,
      ];
    case Op.Unshare:
      return [`# ${step.text} (see the unshare below)`];
    case Op.Propagation:
      return [`mount ${propagationOption(Number(a[1]))} ${shq(String(a[0]))}`];
    case Op.PrivateMountOf:
      return [`mount --make-private "$(findmnt -n -o TARGET -T ${shq(String(a[0]))})"`];
    case Op.Mount: {
      const flags = Number(a[3]);
      if (flags & MS.BIND)
        return [
          `mount ${flags & MS.REC ? "--rbind" : "--bind"} ${shq(String(a[0]))} ${shq(String(a[1]))}`,
        ];
      return [`mount -t ${shq(String(a[2]))} ${shq(String(a[0]))} ${shq(String(a[1]))}`];
    }
    case Op.MkdirInRoot:
      return [`mkdir -p ${shq(inRoot(a[0]!, a[1]!))}`];
    case Op.TouchInRoot: {
      // Only a missing file is created: touching an existing one on an overlay copies it up.
      const file = shq(inRoot(a[0]!, a[1]!));
      return [`[ -e ${file} ] || { mkdir -p "$(dirname ${file})" && : > ${file}; }`];
    }
    case Op.MountInRoot:
    case Op.MountInRootNoSymlinks: {
      const target = shq(inRoot(a[0]!, a[1]!));
      const [source, fstype, flags, data] = [
        String(a[2]),
        String(a[3]),
        Number(a[4]),
        String(a[5]),
      ];
      const propagation = flags & (MS.PRIVATE | MS.SLAVE | MS.SHARED | MS.UNBINDABLE);
      if (propagation) return [`mount ${propagationOption(flags)} ${target}`];
      if (flags & MS.REMOUNT) {
        const opts = `remount${flags & MS.BIND ? ",bind" : ""},${mountOptions(flags, data) || "rw"}`;
        return [
          `if awk -v t=${target} '$5 == t {f = 1} END {exit !f}' /proc/self/mountinfo; then mount -o ${opts} ${target}; fi`,
        ];
      }
      if (flags & MS.BIND) {
        const bind = `mount ${flags & MS.REC ? "--rbind" : "--bind"} ${shq(source)} ${target}`;
        // The container's own cgroup exists only once pivot-runtime made it.
        if (source.startsWith("/sys/fs/cgroup/"))
          return [`if [ -d ${shq(source)} ]; then ${bind}; fi`];
        return [bind];
      }
      const opts = mountOptions(flags, data);
      return [`mount -t ${shq(fstype)}${opts ? ` -o ${shq(opts)}` : ""} ${shq(source)} ${target}`];
    }
    case Op.BindInRoot: {
      const target = shq(inRoot(a[0]!, a[1]!));
      const source = String(a[2]);
      const recursive = Number(a[3]) === 1;
      const opts = attributeOptions(Number(a[4]), Number(a[5]));
      const parts = [`mount ${recursive ? "--rbind" : "--bind"} ${shq(source)} ${target}`];
      // mount(8)'s remount reaches the top mount only; the runtime sets them on the submounts too.
      if (opts) parts.push(`mount -o remount,bind,${opts} ${target}`);
      for (const p of a.slice(7)) parts.push(`mount ${propagationOption(Number(p))} ${target}`);
      const bind = parts.join(" && ");
      // The container's own cgroup exists only once pivot-runtime made it.
      if (source.startsWith("/sys/fs/cgroup/"))
        return [`if [ -d ${shq(source)} ]; then ${bind}; fi`];
      return [bind];
    }
    case Op.MknodInRoot: {
      const mode = Number(a[2]);
      const type =
        (mode & 0o170000) === 0o060000 ? "b" : (mode & 0o170000) === 0o010000 ? "p" : "c";
      const path = shq(inRoot(a[0]!, a[1]!));
      const dev = type === "p" ? "" : ` ${a[3]} ${a[4]}`;
      return [
        `mknod -m ${(mode & 0o7777).toString(8)} ${path} ${type}${dev} && chown ${a[5]}:${a[6]} ${path}`,
      ];
    }
    case Op.SymlinkInRoot:
      return [`ln -sfn ${shq(String(a[2]))} ${shq(inRoot(a[0]!, a[1]!))}`];
    case Op.PivotRoot:
      return [`cd ${shq(String(a[0]))} && pivot_root . . && umount -l . && cd /`];
    case Op.MoveRoot:
      return [
        `cd ${shq(String(a[0]))} && mount --move . / && exec chroot . sh -es <<'PIVOT_CHROOT'`,
      ];
    case Op.ForkInit:
      return [];
    case Op.MaskPath: {
      const p = shq(String(a[0]));
      return [
        `if [ -d ${p} ]; then mount -t tmpfs -o ro,size=0 tmpfs ${p}; elif [ -e ${p} ]; then mount --bind /dev/null ${p}; fi`,
      ];
    }
    case Op.ReadonlyPath: {
      const p = shq(String(a[0]));
      return [`if [ -e ${p} ]; then mount --rbind ${p} ${p} && mount -o remount,bind,ro ${p}; fi`];
    }
    case Op.SetHostname:
      return [`hostname ${shq(String(a[0]))}`];
    case Op.SetDomainname:
      return [`domainname ${shq(String(a[0]))}`];
    case Op.WriteFile:
      return [`echo ${shq(String(a[1]))} > ${shq(String(a[0]))}`];
    case Op.SetRlimit: {
      // The shell's own ulimit, since the root filesystem may have no prlimit(1).
      const name = Object.entries(Rlimit).find(([, v]) => v === Number(a[0]))?.[0] ?? "";
      const flag = ULIMIT_FLAGS[name];
      if (!flag) return [`# not reproduced by this script: ${step.text}`];
      // Soft first (it may be lowered below the new hard limit), then hard, then soft again.
      return [
        `ulimit -S${flag.slice(1)} ${a[1]} 2>/dev/null; ulimit -H${flag.slice(1)} ${a[2]} && ulimit -S${flag.slice(1)} ${a[1]}`,
      ];
    }
    case Op.Chdir:
      return [`cd ${shq(String(a[0]))}`];
    case Op.Umask:
      return [`umask ${Number(a[0]).toString(8).padStart(4, "0")}`];
    case Op.Exec: {
      const argc = Number(a[0]);
      const args = a.slice(1, 1 + argc).map((x) => shq(String(x)));
      const env = a.slice(1 + argc).map((x) => shq(String(x)));
      return [`exec env -i ${env.join(" ")} ${args.join(" ")}`];
    }
    case Op.JoinCgroup:
      // The runtime creates the cgroup; a dry run has none to join.
      return [`# ${step.text}: echo 0 > ${shq(`${String(a[0])}/tasks`)}`];
    case Op.Sync:
    case Op.ForkSetup:
    case Op.WaitForInit:
    case Op.UnmountAfterExit:
    case Op.NewSession:
    case Op.BecomeNamespaceRoot:
    case Op.FindExecutable:
    case Op.WaitExecFifo:
      return [`# ${step.text}`];
    default:
      // Credentials, capabilities, seccomp, terminals and hooks have no plain shell form.
      return [`# not reproduced by this script: ${step.text}`];
  }
}

function nsenterName(flag: number): string {
  const map: [number, string][] = [
    [CloneFlag.mount, "mount"],
    [CloneFlag.uts, "uts"],
    [CloneFlag.ipc, "ipc"],
    [CloneFlag.network, "net"],
    [CloneFlag.pid, "pid"],
    [CloneFlag.cgroup, "cgroup"],
    [CloneFlag.user, "user"],
    [CloneFlag.time, "time"],
  ];
  return map.find(([f]) => f === flag)?.[1] ?? "mount";
}

/**
 * A shell script equivalent to the plan, for reading and for reproducing the container by hand
 * on a test machine. Steps with no shell form (capabilities, seccomp, hooks) appear as comments.
 * Unlike the launcher, mount targets are not resolved safely inside the root: use it on trusted
 * root filesystems only.
 */
export function renderPlanShell(plan: Plan, title: string): string {
  const lines = [
    "#!/bin/sh",
    `# ${title}`,
    "# Generated by pivot-runtime --dry-run --format shell. Run as root on a test machine.",
    "# Unlike pivot-runtime, this script does not resolve mount targets safely inside the root",
    "# filesystem: use it with trusted root filesystems only.",
    "set -e",
  ];
  const processes = stepProcesses(plan);
  // unshare(1) runs the rest of the script in the new namespaces: every namespace the plan
  // creates is created there, where the container's init begins.
  const allFlags = plan.steps
    .filter((s) => s.op === Op.Unshare)
    .reduce((acc, s) => acc | Number(s.args[0]), 0);
  const heredocs: string[] = [];
  let last: StepProcess | null = null;
  plan.steps.forEach((step, i) => {
    const proc = processes[i]!;
    if (proc !== last) {
      lines.push("", `# --- ${PROCESS_TITLES[proc]} ---`);
      last = proc;
    }
    if (step.op === Op.ForkInit && allFlags) {
      if (allFlags & CloneFlag.user)
        lines.push(
          "# write the uid and gid maps of the user namespace here (see linux.uidMappings)",
        );
      lines.push(
        `exec unshare ${unshareFlags(allFlags).join(" ")} --propagation unchanged sh -es <<'PIVOT_INIT'`,
      );
      heredocs.push("PIVOT_INIT");
    }
    if (step.op === Op.MoveRoot) heredocs.push("PIVOT_CHROOT");
    lines.push(...shellForStep(step));
  });
  lines.push(...heredocs.reverse());
  return `${lines.join("\n")}\n`;
}
