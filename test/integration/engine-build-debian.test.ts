// `pivot build` on a real distribution (Debian bookworm minbase, test/fixtures/debian.ts): a user
// made by one RUN owns what a later COPY --chown copies (names from the image's /etc/passwd as
// the layers so far left it), files a RUN deleted are gone from the image (whiteouts in its
// layer), WORKDIR and USER apply to the RUNs after them. No network: nothing is installed.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DEBIAN, DEBIAN_SETUP_TIMEOUT_MS, makeDebianEngine } from "../fixtures/debian.ts";
import type { TestEngine } from "../fixtures/engine.ts";
import { isRoot, pivotCli } from "../helpers.ts";

let t: TestEngine | undefined;
let dir: string | undefined;

beforeAll(async () => {
  if (!isRoot) return;
  t = await makeDebianEngine();
  dir = mkdtempSync(join(tmpdir(), "pivot-build-debian-"));
}, DEBIAN_SETUP_TIMEOUT_MS);

afterAll(async () => {
  await t?.cleanup();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe.skipIf(!isRoot)("pivot build FROM debian", () => {
  test("useradd in one RUN, COPY --chown by name, deleted files gone, WORKDIR and USER for later RUNs", () => {
    const ctx = dir!;
    writeFileSync(
      join(ctx, "app.sh"),
      "cat out.txt; stat -c %U:%G app.sh; ls /usr/share/doc 2>&1; getent passwd app | cut -d: -f3\n",
    );
    writeFileSync(
      join(ctx, "Dockerfile"),
      `FROM ${DEBIAN}
ARG APP_USER=app
RUN useradd --create-home --uid 1234 "$APP_USER" && rm -rf /usr/share/doc
COPY --chown=app:app app.sh /home/app/
WORKDIR /home/app
USER app
RUN bash -c 'echo "built as $(id -un) in $PWD" > out.txt'
CMD ["bash", "/home/app/app.sh"]
`,
    );
    const root = t!.root;
    const build = pivotCli(
      root,
      ["build", "-t", "localhost/debian-app:1", "--network", "none", ctx],
      {
        timeoutMs: 300_000,
      },
    );
    expect(build.stderr).toBe("");
    expect(build.status).toBe(0);
    const run = pivotCli(root, ["run", "--rm", "localhost/debian-app:1"], { timeoutMs: 60_000 });
    expect(run.stdout).toBe(
      "built as app in /home/app\napp:app\nls: cannot access '/usr/share/doc': No such file or directory\n1234\n",
    );
    expect(pivotCli(root, ["ps", "-a", "-q"]).stdout).toBe("");
    expect(pivotCli(root, ["rmi", "localhost/debian-app:1"]).status).toBe(0);
  }, 400_000);
});
