// `features`: what this runtime supports, in the shape of the runtime-spec's features.md.

import { hostCgroups } from "../cgroups/hierarchy.ts";
import {
  SeccompActionValue,
  SeccompArchName,
  SeccompFlagAttribute,
  SeccompOperator,
} from "../security/seccomp.ts";
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
      seccomp: {
        enabled: true,
        actions: Object.keys(SeccompActionValue).sort(),
        operators: Object.keys(SeccompOperator).sort(),
        archs: Object.keys(SeccompArchName).sort(),
        knownFlags: Object.keys(SeccompFlagAttribute),
        // SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV needs libseccomp 2.6.
        supportedFlags: Object.keys(SeccompFlagAttribute).filter(
          (f) => f !== "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
        ),
      },
      apparmor: { enabled: false },
      selinux: { enabled: false },
      intelRdt: { enabled: false },
      mountExtensions: { idmap: { enabled: false } },
    },
  };
}
