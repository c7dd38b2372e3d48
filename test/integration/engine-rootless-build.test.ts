// `pivot build` as an ordinary user (the rootless engine): RUN in rootless containers, COPY into
// a build container's root mounted in the user's namespace, nothing left after a failure. The
// throwaway user, its store and image come from test/fixtures/rootless-user.ts.
import { afterEach, describe, expect, test } from "bun:test";
import { chownSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { mountsUnder } from "../fixtures/engine.ts";
import { ROOTLESS_IMAGE, rootlessUserForFile } from "../fixtures/rootless-user.ts";

const u = rootlessUserForFile("pivrb");

/** A build context owned by the user, with FILES (name → content). */
function context(name: string, files: Record<string, string>): string {
  const dir = u.dir(name);
  for (const [file, content] of Object.entries(files)) {
    mkdirSync(join(dir, file, ".."), { recursive: true });
    writeFileSync(join(dir, file), content);
    chownSync(join(dir, file), u.uid, u.gid);
  }
  return dir;
}

describe("rootless pivot build", () => {
  afterEach(() => u.removeContainers(), 60_000);

  test("COPY, RUN, USER and CMD as an ordinary user; a failing RUN leaves nothing", () => {
    const dir = context("app", {
      "hello.txt": "hello rootless\n",
      Dockerfile: `FROM ${ROOTLESS_IMAGE}
COPY hello.txt /app/
RUN cat /app/hello.txt > /app/copy && chown -R 1000:1000 /app
USER 1000
CMD ["sh", "-c", "cat /app/copy; id -u; stat -c %u /app/copy"]
`,
    });
    const r = u.pivot(["build", "-t", "localhost/rootless-built:1", "--network", "none", dir], {
      timeoutMs: 120_000,
    });
    // Warnings only (a host without delegated cgroups says the containers run without one).
    expect(r.stderr.split("\n").filter((l) => l && !l.startsWith("pivot: warning:"))).toEqual([]);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain("Successfully tagged localhost/rootless-built:1");
    expect(u.ok(["run", "--rm", "localhost/rootless-built:1"])).toBe(
      "hello rootless\n1000\n1000\n",
    );
    u.ok(["rmi", "localhost/rootless-built:1"]);

    writeFileSync(
      join(dir, "Dockerfile"),
      `FROM ${ROOTLESS_IMAGE}\nCOPY hello.txt /\nRUN exit 7\n`,
    );
    const failed = u.pivot(["build", "--network", "none", dir], { timeoutMs: 120_000 });
    expect(failed.status).toBe(1);
    expect(failed.stderr).toContain("returned a non-zero code: 7");
    expect(u.ok(["ps", "-a", "-q"])).toBe("");
    expect(u.ok(["images", "-q"]).trim().split("\n")).toHaveLength(1);
    expect(mountsUnder(u.store)).toEqual([]);
  }, 240_000);

  test("RUN gets a user-mode network by default (pasta, or slirp4netns), as podman's rootless builds", () => {
    const dir = context("net", {
      Dockerfile: `FROM ${ROOTLESS_IMAGE}\nRUN ip -o link show | grep -v ' lo:' | wc -l > /links\nCMD ["cat", "/links"]\n`,
    });
    const r = u.pivot(["build", "-t", "localhost/rootless-net:1", dir], { timeoutMs: 120_000 });
    expect(r.status).toBe(0);
    // An interface besides loopback: the RUN had a network.
    expect(Number(u.ok(["run", "--rm", "localhost/rootless-net:1"]).trim())).toBeGreaterThan(0);
    u.ok(["rmi", "localhost/rootless-net:1"]);
    expect(u.ok(["ps", "-a", "-q"])).toBe("");
  }, 240_000);
});
