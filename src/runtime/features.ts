// `features`: what this runtime supports, in the shape of the runtime-spec's features.md.

import { hostCgroups } from "../cgroups/hierarchy.ts";
import { HOOK_KINDS } from "../oci/spec.ts";
import {
  SeccompActionValue,
  SeccompArchName,
  SeccompFlagAttribute,
  SeccompOperator,
} from "../security/seccomp.ts";
import { kernelAtLeast } from "../util/kernel.ts";
import { Capability, MountOptionFlags, PropagationFlags } from "./linux.ts";

/** Id-mapped mounts (mount_setattr with MOUNT_ATTR_IDMAP) came with Linux 5.12. */
export function kernelHasIdmappedMounts(kernelRelease?: string): boolean {
  return kernelAtLeast(5, 12, kernelRelease);
}

export function features(): Record<string, unknown> {
  const cg = hostCgroups();
  return {
    ociVersionMin: "1.0.0",
    ociVersionMax: "1.2.0",
    hooks: [...HOOK_KINDS],
    mountOptions: [
      ...Object.keys(MountOptionFlags),
      ...Object.keys(PropagationFlags),
      "idmap",
      "ridmap",
      "tmpcopyup",
    ].sort(),
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
      mountExtensions: { idmap: { enabled: kernelHasIdmappedMounts() } },
    },
  };
}
