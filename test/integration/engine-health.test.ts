// Docker's health checks: HEALTHCHECK built into an image's config (inherited, overridden, in the
// history and the build cache), the run flags over it, `pivot healthcheck run` inside a running
// container, and the periodic checks' scheduler, which never outlives its container.
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildContext } from "../fixtures/build-context.ts";
import { IMAGE, makeTestEngine, type TestEngine } from "../fixtures/engine.ts";
import { isRoot, pivotCli } from "../helpers.ts";

let t: TestEngine;
let scratch: string;

beforeAll(async () => {
  if (!isRoot) return;
  t = await makeTestEngine();
  scratch = mkdtempSync(join(tmpdir(), "pivot-health-"));
});

afterAll(async () => {
  await t?.cleanup();
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

afterEach(async () => {
  if (!t) return;
  for (const c of await t.engine.list({ all: true }))
    await t.engine.remove(c.id, { force: true }).catch(() => {});
});

const cli = (args: string[], timeoutMs = 60_000) => pivotCli(t.root, args, { timeoutMs });

/** Builds DOCKERFILE (its context has nothing else) as TAG through the CLI. */
function build(name: string, tag: string, dockerfile: string) {
  const dir = buildContext(scratch, name, { Dockerfile: dockerfile });
  return cli(["build", "-t", tag, dir], 120_000);
}

async function imageConfig(ref: string) {
  const image = await (await t.engine.images()).resolve(ref);
  return image.config;
}

describe.skipIf(!isRoot)("HEALTHCHECK in pivot build", () => {
  test("the config's Healthcheck and Docker's history line; inherited, overridden, NONE; cached", async () => {
    const first = build(
      "hc1",
      "localhost/hc:one",
      `FROM ${IMAGE}\nHEALTHCHECK --interval=5m --timeout=3s --retries=3 \\\n  CMD wget -q -O- http://localhost/ || exit 1\n`,
    );
    expect(first.stderr).toBe("");
    expect(first.status).toBe(0);
    const one = await imageConfig("localhost/hc:one");
    expect(one.config?.Healthcheck).toEqual({
      Test: ["CMD-SHELL", "wget -q -O- http://localhost/ || exit 1"],
      Interval: 300_000_000_000,
      Timeout: 3_000_000_000,
      Retries: 3,
    });
    expect(one.history?.at(-1)).toMatchObject({
      created_by:
        '/bin/sh -c #(nop)  HEALTHCHECK &{["CMD-SHELL" "wget -q -O- http://localhost/ || exit 1"] "5m0s" "3s" "0s" "0s" \'\\x03\'}',
      empty_layer: true,
    });

    // The same step again comes from the build cache; another interval is another key.
    const again = build(
      "hc1",
      "localhost/hc:one",
      `FROM ${IMAGE}\nHEALTHCHECK --interval=5m --timeout=3s --retries=3 \\\n  CMD wget -q -O- http://localhost/ || exit 1\n`,
    );
    expect(again.stdout).toContain("Using cache");
    const other = build(
      "hc1b",
      "localhost/hc:oneb",
      `FROM ${IMAGE}\nHEALTHCHECK --interval=4m --timeout=3s --retries=3 \\\n  CMD wget -q -O- http://localhost/ || exit 1\n`,
    );
    expect(other.status).toBe(0);
    expect(other.stdout).not.toContain("Using cache");
    expect((await imageConfig("localhost/hc:oneb")).config?.Healthcheck?.Interval).toBe(240e9);

    // Inherited from the base image.
    expect(build("hc2", "localhost/hc:two", 'FROM localhost/hc:one\nCMD ["sh"]\n').status).toBe(0);
    expect((await imageConfig("localhost/hc:two")).config?.Healthcheck).toEqual(
      one.config?.Healthcheck,
    );
    // A later HEALTHCHECK replaces it whole (its options are not merged).
    const exec = build(
      "hc3",
      "localhost/hc:three",
      'FROM localhost/hc:one\nHEALTHCHECK CMD ["/bin/true"]\n',
    );
    expect(exec.status).toBe(0);
    expect((await imageConfig("localhost/hc:three")).config?.Healthcheck).toEqual({
      Test: ["CMD", "/bin/true"],
    });
    expect(
      build("hc4", "localhost/hc:none", "FROM localhost/hc:one\nHEALTHCHECK NONE\n").status,
    ).toBe(0);
    expect((await imageConfig("localhost/hc:none")).config?.Healthcheck).toEqual({
      Test: ["NONE"],
    });
  }, 300_000);

  test("an unknown option or form fails the build before any step, naming the line", () => {
    const flag = build(
      "hc5",
      "localhost/hc:bad",
      `FROM ${IMAGE}\nHEALTHCHECK --every=5s CMD true\n`,
    );
    expect(flag.status).toBe(1);
    expect(flag.stderr).toContain("HEALTHCHECK --every");
    expect(flag.stderr).toContain("line 2");
    expect(flag.stderr).toContain("--interval --timeout --start-period --start-interval --retries");
    expect(flag.stdout).not.toContain("Step 1/2");
    const form = build("hc6", "localhost/hc:bad", `FROM ${IMAGE}\nHEALTHCHECK RUN true\n`);
    expect(form.status).toBe(1);
    expect(form.stdout).not.toContain("Step 1/2");
    expect(form.stderr).toContain(
      'HEALTHCHECK (line 2): unknown type "RUN" in HEALTHCHECK (try CMD)',
    );
  }, 120_000);
});
