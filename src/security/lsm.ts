// AppArmor and SELinux: Pivot applies neither. A config that asks for a profile or a label gets a
// clear error rather than running unconfined in silence (runc, too, refuses a profile it cannot
// apply). The host this was built on has no LSM of either kind enabled; see docs/architecture.md.
import { NotSupportedError } from "../errors.ts";
import type { Linux, Process } from "../oci/spec.ts";

const HINT =
  "Pivot does not apply AppArmor profiles or SELinux labels; remove the field to run without one (`pivot-runtime features` reports apparmor and selinux as disabled)";

/** Throws for AppArmor and SELinux fields: they would otherwise be silently ignored. */
export function rejectSecurityModules(
  process: Process | undefined,
  linux: Linux | undefined,
  processPath = "process",
): void {
  if (process?.apparmorProfile) {
    throw new NotSupportedError(
      `${processPath}.apparmorProfile: cannot apply the AppArmor profile "${process.apparmorProfile}"`,
      { hint: HINT },
    );
  }
  if (process?.selinuxLabel) {
    throw new NotSupportedError(
      `${processPath}.selinuxLabel: cannot apply the SELinux label "${process.selinuxLabel}"`,
      { hint: HINT },
    );
  }
  if (linux?.mountLabel) {
    throw new NotSupportedError(
      `linux.mountLabel: cannot apply the SELinux mount label "${linux.mountLabel}"`,
      { hint: HINT },
    );
  }
}
