// `features`: what this runtime supports, in the shape of the runtime-spec's features.md.

import { hostCgroups } from "../cgroups/hierarchy.ts";
import { Capability, MountOptionFlags, PropagationFlags } from "./linux.ts";

export function features(): Record<string, unknown> {
  const cg = hostCgroups();
  return {
    ociVersionMin: "1.0.0",
    ociVersionMax: "1.2.0",
    hooks: [
      "prestart",
      "createRuntime",
      "createContainer",
      "startContainer",
      "poststart",
      "poststop",
    ],
    mountOptions: [...Object.keys(MountOptionFlags), ...Object.keys(PropagationFlags)].sort(),
    linux: {
      namespaces: ["cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"],
      capabilities: Object.keys(Capability),
      cgroup: {
        v1: cg.mode !== "v2",
        v2: cg.mode !== "v1",
        systemd: false,
        systemdUser: false,
        rdma: false,
      },
      seccomp: { enabled: false },
      apparmor: { enabled: false },
      selinux: { enabled: false },
      intelRdt: { enabled: false },
      mountExtensions: { idmap: { enabled: false } },
    },
  };
}
