// `--network pasta` without running it: the options podman's way (pasta:OPT,...), the ones the
// engine owns refused, and pasta's command line for published ports.
import { describe, expect, test } from "bun:test";
import {
  PASTA_ENGINE_OWNED,
  PASTA_USER_OPTIONS,
  pastaArgs,
  pastaForward,
  pastaOptions,
} from "../../src/engine/pasta.ts";
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

  test("as getopt reads them: abbreviated long options and clustered short ones are refused too", () => {
    // pasta (getopt_long) takes any unambiguous prefix of a long option, and short options
    // clustered in one word: --no-netns-q would keep pasta (and the host ports) after the netns
    // link is gone.
    for (const o of [
      "--no-netns-q",
      "--no-netns",
      "--fore",
      "--fo",
      "--log-f=/tmp/x",
      "--log-s=1",
      "--netns-o",
      "--user=/x",
      "--pi,/x",
      "--run=0",
      "--vers",
      "-4f",
      "-df",
      "-dP/x",
      "-6l,/x",
      "-q1",
    ]) {
      expect(() => pastaOptions(`pasta:${o}`), o).toThrow("is set by the engine");
    }
    expect(() => pastaOptions("pasta:--no-netns-q")).toThrow(
      "--network pasta:--no-netns-q: pasta option --no-netns-q (--no-netns-quit) is set by the engine",
    );
    expect(() => pastaOptions("pasta:-4f")).toThrow("pasta option -f is set by the engine");
  });

  test("only the options pivot lets through, by their full names; a value only after its option", () => {
    for (const [o, why] of [
      ["--tcp", "full name"], // --tcp-ports or --tcp-ns: pasta would refuse it as ambiguous
      ["--ipv4", "full name"],
      ["--no-map", "full name"],
      ["--frobnicate", "not one of the pasta options"],
      ["-Z", "not one of the pasta options"],
      ["-4Z", "not one of the pasta options"],
      ["--", "not one of the pasta options"],
      ["8080", "not the value of an option"],
      ["--ipv4-only,sh", "not the value of an option"],
      ["-I", "needs a value"], // it would take the engine's --userns as its value
      ["--tcp-ports", "needs a value"],
      ["--ipv4-only=yes", "takes no value"],
    ]) {
      expect(() => pastaOptions(`pasta:${o}`), o).toThrow(why);
    }
    // A short option's value is the rest of its cluster, or the next item, whatever it looks like.
    expect(pastaOptions("pasta:-4It-f0").extra).toEqual(["-4It-f0"]);
    expect(pastaOptions("pasta:-4I,--foreground").extra).toEqual(["-4I", "--foreground"]);
    expect(pastaOptions("pasta:--ns-ifname,-f,-d,--trace,-q").extra).toEqual([
      "--ns-ifname",
      "-f",
      "-d",
      "--trace",
      "-q",
    ]);
    expect(
      pastaOptions(
        "pasta:--tcp-ports=8080,-u,53,--no-map-gw,-m1500,-a,10.0.2.5,-n24,-g,10.0.2.2,--dns-forward=10.0.2.3,-D,1.1.1.1,-S,none,--map-host-loopback,10.0.2.9,--ns-mac-addr=aa:bb:cc:dd:ee:ff,--outbound-if4,eth0,-46",
      ).extra,
    ).toHaveLength(21);
  });

  test("every option let through passes by its full name; none could be read as an owned one", () => {
    const owned = Object.keys(PASTA_ENGINE_OWNED);
    for (const [name, o] of Object.entries(PASTA_USER_OPTIONS)) {
      expect(
        owned.some((own) => own.startsWith(name)),
        name,
      ).toBe(false);
      expect(o.short && Object.values(PASTA_ENGINE_OWNED).includes(o.short), name).toBeFalsy();
      const given = o.value ? [`--${name},x`, `--${name}=x`] : [`--${name}`];
      if (o.short) given.push(`-${o.short}${o.value ? "x" : ""}`);
      for (const g of given) expect(pastaOptions(`pasta:${g}`).extra.join(","), g).toBe(g);
    }
    for (const name of owned) {
      expect(() => pastaOptions(`pasta:--${name}`), name).toThrow("is set by the engine");
    }
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

  test("the user's forwards replace the engine's 'none' in any spelling getopt takes", () => {
    const none = (extra: string[]) =>
      pastaArgs({ extra, mapGateway: false }, [], paths)
        .join(" ")
        .match(/-[tuTU] none/g);
    expect(none(["--tcp-ports=8080"])).toEqual(["-u none", "-T none", "-U none"]);
    expect(none(["--udp-ns", "53"])).toEqual(["-t none", "-u none", "-T none"]);
    expect(none(["-4t8080"])).toEqual(["-u none", "-T none", "-U none"]);
    expect(none(["-dU", "53"])).toEqual(["-t none", "-u none", "-T none"]);
    // A value is not an option: -I's "t" names an interface.
    expect(none(["-It"])).toEqual(["-t none", "-u none", "-T none", "-U none"]);
  });
});
