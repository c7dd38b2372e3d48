// `--network pasta` without running it: the options podman's way (pasta:OPT,...), the ones the
// engine owns refused, and pasta's command line for published ports.
import { describe, expect, test } from "bun:test";
import { pastaArgs, pastaForward, pastaOptions } from "../../src/engine/pasta.ts";
import { checkRootlessOptions } from "../../src/engine/rootless.ts";
import type { PortMapping } from "../../src/network/ports.ts";

const paths = {
  pidFile: "/r/pasta.pid",
  logFile: "/r/pasta.log",
  userns: "/proc/9/ns/user",
  netns: "/run/pasta/abc/netns",
};
const port = (p: Partial<PortMapping>): PortMapping => ({
  hostIP: "",
  hostPort: 8080,
  containerPort: 80,
  protocol: "tcp",
  ...p,
});

describe("pasta options", () => {
  test("pasta and pasta:OPT,...: pasta's own options, podman's --map-gw", () => {
    expect(pastaOptions("pasta")).toEqual({ extra: [], mapGateway: false });
    expect(pastaOptions("pasta:--ipv4-only,-I,tap0")).toEqual({
      extra: ["--ipv4-only", "-I", "tap0"],
      mapGateway: false,
    });
    expect(pastaOptions("pasta:--map-gw")).toEqual({ extra: [], mapGateway: true });
  });

  test("the options the engine sets are refused, in every spelling", () => {
    for (const o of [
      "-f",
      "--foreground",
      "-P,/x",
      "--pid=/x",
      "--netns,/x",
      "--userns=/x",
      "-l/x",
    ]) {
      expect(() => pastaOptions(`pasta:${o}`)).toThrow("is set by the engine");
    }
    // A value that looks like nothing pasta owns passes.
    expect(pastaOptions("pasta:-t,8080").extra).toEqual(["-t", "8080"]);
  });

  test("rootless: pasta allows -p and -P, refuses --ip, a privileged port and a bad option", () => {
    const image = "x";
    const p = [port({})];
    expect(() => checkRootlessOptions({ image, network: "pasta", publish: p })).not.toThrow();
    expect(() => checkRootlessOptions({ image, network: "pasta", publishAll: true })).not.toThrow();
    expect(() =>
      checkRootlessOptions({ image, network: "pasta", publish: [port({ hostPort: 80 })] }),
    ).toThrow("host port 80 is below");
    expect(() => checkRootlessOptions({ image, network: "pasta", ip: "10.0.0.2" })).toThrow(
      "--ip needs a network",
    );
    expect(() => checkRootlessOptions({ image, network: "pasta:--runas,0" })).toThrow(
      "--runas is set by the engine",
    );
    // IPv6 host addresses: pasta forwards them (slirp4netns refuses them).
    const v6 = [port({ hostIP: "::1" })];
    expect(() => checkRootlessOptions({ image, network: "pasta", publish: v6 })).not.toThrow();
    expect(() => checkRootlessOptions({ image, network: "slirp4netns", publish: v6 })).toThrow(
      "IPv6 host addresses are not supported with slirp4netns",
    );
  });
});

describe("pasta's command line", () => {
  test("no ports: nothing forwarded either way, DNS on 169.254.1.1, no gateway mapping", () => {
    expect(pastaArgs({ extra: [], mapGateway: false }, [], paths)).toEqual([
      "--config-net",
      "--dns-forward",
      "169.254.1.1",
      "--pid",
      "/r/pasta.pid",
      "--log-file",
      "/r/pasta.log",
      "--no-map-gw",
      "-t",
      "none",
      "-u",
      "none",
      "-T",
      "none",
      "-U",
      "none",
      "--userns",
      "/proc/9/ns/user",
      "--netns",
      "/run/pasta/abc/netns",
    ]);
  });

  test("-p as -t/-u [ADDR/]HOST:PORT; the user's options after the engine's, replacing its defaults", () => {
    const args = pastaArgs(
      { extra: ["-T", "5432"], mapGateway: true },
      [
        port({}),
        port({ hostIP: "127.0.0.1", hostPort: 8443, containerPort: 443 }),
        port({ hostIP: "::1", hostPort: 9000, containerPort: 9000 }),
        port({ hostPort: 5353, containerPort: 53, protocol: "udp" }),
      ],
      paths,
    ).join(" ");
    expect(args).toContain(
      "-t 8080:80 -t 127.0.0.1/8443:443 -t ::1/9000:9000 -u 5353:53 -U none -T 5432 --userns",
    );
    expect(args).not.toContain("--no-map-gw");
    expect(args).not.toContain("-t none");
    expect(args).not.toContain("-u none");
    expect(args).not.toContain("-T none");
    expect(pastaForward(port({ hostIP: "0.0.0.0" }))).toBe("0.0.0.0/8080:80");
  });
});
