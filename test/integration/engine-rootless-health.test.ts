// Health checks of the rootless engine: `pivot healthcheck run` and the periodic checks'
// pivot-timer as an ordinary user (its own test user, removed afterwards with everything it left).
import { afterEach, describe, expect, test } from "bun:test";
import { ROOTLESS_IMAGE, rootlessUserForFile, until } from "../fixtures/rootless-user.ts";

const u = rootlessUserForFile("pivhc");

afterEach(() => u.removeContainers());

function health(name: string): { Status: string; Log: unknown[] } | undefined {
  return (
    JSON.parse(u.ok(["inspect", name]))[0] as {
      State: { Health?: { Status: string; Log: unknown[] } };
    }
  ).State.Health;
}

describe("rootless health checks", () => {
  test("healthcheck run and the timer work as the user; the timer ends with the container", async () => {
    u.ok([
      "run",
      "-d",
      "--name",
      "web",
      "--health-cmd",
      "test -e /tmp/ok",
      "--health-interval",
      "300ms",
      ROOTLESS_IMAGE,
      "sleep",
      "1000",
    ]);
    const r = u.pivot(["healthcheck", "run", "web"]);
    expect([r.status, r.stdout]).toEqual([1, "starting\n"]);
    u.ok(["exec", "web", "touch", "/tmp/ok"]);
    await until("healthy by the timer", () => health("web")?.Status === "healthy");
    expect(u.livePids(["pivot-timer"])).toHaveLength(1);
    u.ok(["stop", "-t", "1", "web"]);
    await until("no timer after stop", () => u.livePids(["pivot-timer"]).length === 0, 5000);
  }, 120_000);
});
