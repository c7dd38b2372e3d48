import { describe, expect, test } from "bun:test";
import { NotSupportedError } from "../../src/errors.ts";
import { defaultSpec } from "../../src/oci/default-spec.ts";
import type { Spec } from "../../src/oci/spec.ts";
import { compileContainerPlan, compileExecPlan } from "../../src/runtime/plan.ts";
import { planInput } from "../fixtures/plan.ts";

function plan(edit: (s: Spec) => void) {
  const input = planInput({ edit });
  return () => compileContainerPlan(input);
}

describe("AppArmor and SELinux", () => {
  test("a profile or label that cannot be applied is an error naming the field, not silence", () => {
    const cases: [(s: Spec) => void, string][] = [
      [(s) => (s.process!.apparmorProfile = "docker-default"), "process.apparmorProfile"],
      [
        (s) => (s.process!.selinuxLabel = "system_u:system_r:container_t:s0"),
        "process.selinuxLabel",
      ],
      [(s) => (s.linux!.mountLabel = "system_u:object_r:container_file_t:s0"), "linux.mountLabel"],
    ];
    for (const [edit, field] of cases) {
      expect(plan(edit)).toThrow(NotSupportedError);
      expect(plan(edit)).toThrow(field);
    }
  });

  test("exec refuses them too", () => {
    const process = { ...defaultSpec().process!, terminal: false, args: ["ls"] };
    expect(() =>
      compileExecPlan({
        initPid: 1,
        namespaces: [],
        process: { ...process, apparmorProfile: "unconfined-not" },
        waitForExit: true,
      }),
    ).toThrow("process.apparmorProfile");
  });
});
