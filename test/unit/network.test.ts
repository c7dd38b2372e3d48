// Networking units: port specs, subnets, hosts/resolv.conf, isolation rules, CNI configs.
import { describe, expect, test } from "bun:test";
import { addHostLines, checkNameOptions } from "../../src/engine/config.ts";
import {
  checkResolvOptions,
  hostsContent,
  parseAddHost,
  resolvConfContent,
} from "../../src/network/dnsfiles.ts";
import {
  firewallRules,
  isolationRules,
  ownRules,
  parseInstalled,
  removalRules,
  splitRule,
  upToDate,
} from "../../src/network/firewall-rules.ts";
import {
  formatSubnet4,
  mustParseSubnet4,
  overlaps,
  parseSubnet4,
  pickFreeSubnet,
} from "../../src/network/ipnet.ts";
import { DEFAULT_SETTINGS, type NetworkDef, NetworkStore } from "../../src/network/networks.ts";
import { parsePublish, portsClash } from "../../src/network/ports.ts";

describe("-p", () => {
  test("the forms Docker accepts", () => {
    expect(parsePublish("8080:80")).toEqual([
      { hostIP: "", hostPort: 8080, containerPort: 80, protocol: "tcp" },
    ]);
    expect(parsePublish("127.0.0.1:8080:80/udp")).toEqual([
      { hostIP: "127.0.0.1", hostPort: 8080, containerPort: 80, protocol: "udp" },
    ]);
    expect(parsePublish("80")).toEqual([
      { hostIP: "", hostPort: 0, containerPort: 80, protocol: "tcp" },
    ]);
    expect(parsePublish("127.0.0.1::80")).toEqual([
      { hostIP: "127.0.0.1", hostPort: 0, containerPort: 80, protocol: "tcp" },
    ]);
    expect(parsePublish("[::1]:8080:80")[0]).toMatchObject({ hostIP: "::1", hostPort: 8080 });
    expect(parsePublish("8000-8002:80-82").map((m) => `${m.hostPort}:${m.containerPort}`)).toEqual([
      "8000:80",
      "8001:81",
      "8002:82",
    ]);
  });

  test("mistakes are errors that say what is wrong", () => {
    expect(() => parsePublish("8080:80/sctp")).toThrow('unsupported protocol "sctp"');
    expect(() => parsePublish("70000:80")).toThrow('invalid host port "70000"');
    expect(() => parsePublish("8000-8001:80-82")).toThrow("differ in size");
    expect(() => parsePublish("8002-8000:80")).toThrow("ends before it starts");
    expect(() => parsePublish("1.2.3:80:80")).toThrow("invalid host address");
    expect(() => parsePublish("a:b:c:d")).toThrow("invalid port specification");
    expect(() => parsePublish("8080:")).toThrow("invalid port specification");
  });

  test("clashes: same protocol and port, same or wildcard address", () => {
    const [a] = parsePublish("127.0.0.1:8080:80");
    const [b] = parsePublish("8080:81");
    const [c] = parsePublish("127.0.0.2:8080:80");
    const [d] = parsePublish("8080:80/udp");
    expect(portsClash(a!, b!)).toBe(true);
    expect(portsClash(a!, c!)).toBe(false);
    expect(portsClash(b!, d!)).toBe(false);
  });
});

describe("subnets", () => {
  test("parse, overlap, pick", () => {
    expect(parseSubnet4("10.88.0.0/16")).toEqual({ base: 0x0a580000, prefix: 16 });
    expect(parseSubnet4("10.88.0.1/16")).toBeNull();
    expect(formatSubnet4(parseSubnet4("10.88.0.1/16", true)!)).toBe("10.88.0.0/16");
    expect(() => mustParseSubnet4("10.88.0.1/16", "subnet")).toThrow("is not an IPv4 subnet");
    expect(overlaps(parseSubnet4("10.0.0.0/8")!, parseSubnet4("10.3.0.0/16")!)).toBe(true);
    expect(overlaps(parseSubnet4("10.0.0.0/16")!, parseSubnet4("10.1.0.0/16")!)).toBe(false);
    const pool = parseSubnet4("172.31.0.0/16")!;
    const taken = [parseSubnet4("172.31.0.0/24")!, parseSubnet4("172.31.1.128/25")!];
    expect(formatSubnet4(pickFreeSubnet(pool, 24, taken)!)).toBe("172.31.2.0/24");
    expect(pickFreeSubnet(pool, 24, [pool])).toBeNull();
  });
});

describe("hosts and resolv.conf", () => {
  test("hosts: localhost, self, --add-host, then peers; each name once", () => {
    const text = hostsContent({
      self: [{ ip: "10.0.0.2", names: ["web1", "web"] }],
      peers: [
        { ip: "10.0.0.3", names: ["db", "database", "0123456789ab"] },
        { ip: "10.0.0.4", names: ["web", "cache"] },
      ],
      extra: [parseAddHost("gw:10.0.0.1")],
    });
    const lines = text.trim().split("\n");
    expect(lines[0]).toBe("127.0.0.1\tlocalhost");
    expect(lines).toContain("10.0.0.2\tweb1 web");
    expect(lines).toContain("10.0.0.1\tgw");
    expect(lines).toContain("10.0.0.3\tdb database 0123456789ab");
    expect(lines).toContain("10.0.0.4\tcache");
    expect(() => parseAddHost("nocolon")).toThrow("NAME:IP");
    expect(parseAddHost("v6:[fd00::1]")).toEqual({ ip: "fd00::1", names: ["v6"] });
  });

  test("--add-host, --hostname, --network-alias and --dns* cannot add lines to hosts or resolv.conf", () => {
    // Each of these was written as given: a newline added a hosts line or a nameserver.
    for (const bad of [
      "db:1.2.3.4\n6.6.6.6 evil",
      "db:not-an-ip",
      "db:1.2.3.4 evil",
      "d#b:1.2.3.4",
    ])
      expect(() => addHostLines([bad])).toThrow("invalid --add-host");
    expect(addHostLines(["db:10.0.0.5", "v6:[fd00::1]"])).toEqual(["10.0.0.5\tdb", "fd00::1\tv6"]);
    const refused: Record<string, unknown>[] = [
      { hostname: "h\n6.6.6.6 evil" },
      { hostname: "two words" },
      { hostname: "h".repeat(65) },
      { networkAliases: ["ok", "db\n6.6.6.6 evil"] },
      { dns: ["10.0.0.2\nnameserver 6.6.6.6"] },
      { dns: ["dns.example"] },
      { dnsSearch: ["a\nnameserver 6.6.6.6"] },
      { dnsSearch: ["a b"] },
      { dnsOptions: ["ndots:1\nnameserver 6.6.6.6"] },
    ];
    for (const o of refused)
      expect(() => checkNameOptions({ image: "x", ...o }), JSON.stringify(o)).toThrow("invalid");
    checkNameOptions({
      image: "x",
      hostname: "web-1.example",
      networkAliases: ["db"],
      dns: ["10.0.0.2", "fd00::53"],
      dnsSearch: ["example.com", "."],
      dnsOptions: ["ndots:2", "edns0"],
    });
    // The network library checks too (its own callers).
    expect(() => checkResolvOptions({ search: ["x\ny"] })).toThrow("invalid --dns-search");
  });

  test("resolv.conf: loopback nameservers dropped, search and options kept, --dns overrides", () => {
    const host =
      "# comment\nnameserver 127.0.0.53\nnameserver 10.1.1.1\nnameserver ::1\nsearch example.org corp\noptions edns0 trust-ad\n";
    expect(resolvConfContent(host)).toBe(
      "search example.org corp\nnameserver 10.1.1.1\noptions edns0 trust-ad\n",
    );
    expect(resolvConfContent("nameserver 127.0.0.1\n")).toBe("");
    expect(resolvConfContent(host, { nameservers: ["192.0.2.53"], search: [] })).toBe(
      "nameserver 192.0.2.53\noptions edns0 trust-ad\n",
    );
  });
});

describe("network definitions", () => {
  test("a gateway must be a host address of the subnet: not its network or broadcast address", async () => {
    const store = new NetworkStore({ ...DEFAULT_SETTINGS, configDir: "/nonexistent-pivot-test" });
    // 198.18.0.0/15 is for benchmarks: no address of this host.
    for (const gateway of ["198.18.250.0", "198.18.250.3", "198.18.251.1", "nope"])
      await expect(
        store.define("pvt-gw", { subnet: "198.18.250.0/30", gateway, bridge: "pvt-gw0" }),
      ).rejects.toThrow(`gateway ${gateway} is not a host address`);
    const def = await store.define("pvt-gw", {
      subnet: "198.18.250.0/30",
      gateway: "198.18.250.2",
      bridge: "pvt-gw0",
    });
    expect(def.gateway).toBe("198.18.250.2");
  });
});

const net = (name: string, bridge: string, internal = false): NetworkDef => ({
  name,
  id: "0".repeat(64),
  driver: "bridge",
  bridge,
  subnet: "172.31.5.0/24",
  gateway: "172.31.5.1",
  internal,
  labels: {},
  created: "",
});

describe("iptables", () => {
  test("isolation: two stages per network, internal networks closed both ways", () => {
    const text = isolationRules("PIVOT", [net("a", "pv-a"), net("b", "pv-b", true)]);
    expect(text.split("\n")).toEqual([
      "*filter",
      ":PIVOT-ISOLATION - [0:0]",
      ":PIVOT-ISOLATION-2 - [0:0]",
      "-A PIVOT-ISOLATION -i pv-b ! -o pv-b -j DROP",
      "-A PIVOT-ISOLATION ! -i pv-b -o pv-b -j DROP",
      "-A PIVOT-ISOLATION -i pv-a ! -o pv-a -j PIVOT-ISOLATION-2",
      "-A PIVOT-ISOLATION -i pv-b ! -o pv-b -j PIVOT-ISOLATION-2",
      "-A PIVOT-ISOLATION-2 -o pv-a -j DROP",
      "-A PIVOT-ISOLATION-2 -o pv-b -j DROP",
      "COMMIT",
      "",
    ]);
  });

  test("per network with containers: forward accepts, masquerade unless internal; the jumps made right", () => {
    const a = { ...net("a", "pv-a"), id: "ida" };
    const b = { ...net("b", "pv-b", true), id: "idb", subnet: "172.31.6.0/24" };
    const c = { ...net("c", "pv-c"), id: "idc", subnet: "172.31.7.0/24" };
    // FORWARD's jump exists but is not first: moved; POSTROUTING's is there: left.
    const text = firewallRules("PIVOT", [a, b, c], new Set(["ida", "idb"]), {
      forward: 1,
      forwardFirst: false,
      postrouting: 1,
    });
    expect(text.split("\n")).toEqual([
      "*filter",
      ":PIVOT-FORWARD - [0:0]",
      ":PIVOT-ISOLATION - [0:0]",
      ":PIVOT-ISOLATION-2 - [0:0]",
      "-A PIVOT-FORWARD -j PIVOT-ISOLATION",
      "-A PIVOT-FORWARD -o pv-a -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
      "-A PIVOT-FORWARD -s 172.31.5.0/24 -i pv-a -j ACCEPT",
      "-A PIVOT-FORWARD ! -s 172.31.5.0/24 -i pv-a -j DROP",
      "-A PIVOT-FORWARD -o pv-b -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
      "-A PIVOT-FORWARD -s 172.31.6.0/24 -i pv-b -j ACCEPT",
      "-A PIVOT-FORWARD ! -s 172.31.6.0/24 -i pv-b -j DROP",
      // Isolation covers every network, with containers or not.
      "-A PIVOT-ISOLATION -i pv-b ! -o pv-b -j DROP",
      "-A PIVOT-ISOLATION ! -i pv-b -o pv-b -j DROP",
      "-A PIVOT-ISOLATION -i pv-a ! -o pv-a -j PIVOT-ISOLATION-2",
      "-A PIVOT-ISOLATION -i pv-b ! -o pv-b -j PIVOT-ISOLATION-2",
      "-A PIVOT-ISOLATION -i pv-c ! -o pv-c -j PIVOT-ISOLATION-2",
      "-A PIVOT-ISOLATION-2 -o pv-a -j DROP",
      "-A PIVOT-ISOLATION-2 -o pv-b -j DROP",
      "-A PIVOT-ISOLATION-2 -o pv-c -j DROP",
      "-D FORWARD -j PIVOT-FORWARD",
      "-I FORWARD -j PIVOT-FORWARD",
      "COMMIT",
      "*nat",
      ":PIVOT-POSTROUTING - [0:0]",
      "-A PIVOT-POSTROUTING -s 172.31.5.0/24 ! -d 224.0.0.0/4 ! -o pv-a -j MASQUERADE",
      "COMMIT",
      "",
    ]);
  });

  test("the kernel's rules read from iptables-save, compared with those wanted", () => {
    const a = { ...net("a", "pv-a"), id: "ida" };
    const want = ownRules("PIVOT", [a], new Set(["ida"]));
    const save = (forward: string[], post: string[]) =>
      [
        "# Generated by iptables-save",
        "*filter",
        ":FORWARD ACCEPT [0:0]",
        ":PIVOT-FORWARD - [0:0]",
        ":PIVOT-ISOLATION - [0:0]",
        ":PIVOT-ISOLATION-2 - [0:0]",
        ...forward,
        ...[...want].filter(([c]) => c !== "PIVOT-POSTROUTING").flatMap(([, l]) => l),
        "COMMIT",
        "*nat",
        ":POSTROUTING ACCEPT [0:0]",
        ":PIVOT-POSTROUTING - [0:0]",
        ...post,
        ...want.get("PIVOT-POSTROUTING")!,
        "COMMIT",
      ].join("\n");
    const jump = "-A FORWARD -j PIVOT-FORWARD";
    const nat = "-A POSTROUTING -j PIVOT-POSTROUTING";
    const ok = parseInstalled("PIVOT", save([jump, "-A FORWARD -j DROP"], [nat]));
    expect(ok.jumps).toEqual({ forward: 1, forwardFirst: true, postrouting: 1 });
    expect(upToDate(ok, want)).toBe(true);
    const late = parseInstalled("PIVOT", save(["-A FORWARD -j DROP", jump], [nat, nat]));
    expect(late.jumps).toEqual({ forward: 1, forwardFirst: false, postrouting: 2 });
    expect(upToDate(late, want)).toBe(false);
    expect(upToDate(parseInstalled("PIVOT", save([jump], [])), want)).toBe(false);
    expect(upToDate(ok, ownRules("PIVOT", [a], new Set()))).toBe(false);
  });

  test("removal: the jumps, then the chains, both tables", () => {
    expect(removalRules("PIVOT").split("\n")).toEqual([
      "*filter",
      "-D FORWARD -j PIVOT-FORWARD",
      ":PIVOT-FORWARD - [0:0]",
      ":PIVOT-ISOLATION - [0:0]",
      ":PIVOT-ISOLATION-2 - [0:0]",
      "-X PIVOT-FORWARD",
      "-X PIVOT-ISOLATION",
      "-X PIVOT-ISOLATION-2",
      "COMMIT",
      "*nat",
      "-D POSTROUTING -j PIVOT-POSTROUTING",
      ":PIVOT-POSTROUTING - [0:0]",
      "-X PIVOT-POSTROUTING",
      "COMMIT",
      "",
    ]);
  });

  test("splitRule undoes iptables -S quoting", () => {
    expect(
      splitRule(
        '-A POSTROUTING -s 10.0.0.2/32 -m comment --comment "name: \\"exp\\" id: \\"c1\\"" -j X',
      ),
    ).toEqual([
      "-A",
      "POSTROUTING",
      "-s",
      "10.0.0.2/32",
      "-m",
      "comment",
      "--comment",
      'name: "exp" id: "c1"',
      "-j",
      "X",
    ]);
  });
});

describe("CNI configuration of a network", () => {
  const store = new NetworkStore({ ...DEFAULT_SETTINGS, runDir: "/run/pivot-x" });

  test("bridge with host-local, portmap; no per-container masquerade or firewall plugin", () => {
    const list = store.conflist({ ...net("a", "pv-a"), mtu: 1400 });
    expect(list.name).toBe("a");
    expect(list.plugins.map((p) => p.type)).toEqual(["bridge", "portmap"]);
    expect(list.plugins[0]).toMatchObject({
      bridge: "pv-a",
      isGateway: true,
      ipMasq: false,
      hairpinMode: true,
      mtu: 1400,
      ipam: {
        type: "host-local",
        ranges: [[{ subnet: "172.31.5.0/24", gateway: "172.31.5.1" }]],
        routes: [{ dst: "0.0.0.0/0" }],
        dataDir: "/run/pivot-x/ipam",
      },
    });
  });

  test("a container that publishes no port gets no portmap", () => {
    const list = store.conflist(net("a", "pv-a"), false);
    expect(list.plugins.map((p) => p.type)).toEqual(["bridge"]);
  });

  test("internal: no masquerade, no default route", () => {
    const list = store.conflist(net("b", "pv-b", true));
    expect(list.plugins[0]).toMatchObject({ ipMasq: false, ipam: { routes: [] } });
  });
});
