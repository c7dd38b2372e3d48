// The CNI protocol against fake plugins (shell scripts): environment, stdin, chaining, errors.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  addNetworkList,
  CniError,
  checkNetworkList,
  containerAddresses,
  delNetworkList,
  invokePlugin,
  type NetworkConfList,
  parseResult,
  pluginStdin,
} from "../../src/network/cni.ts";
import { rm, tempDir } from "../helpers.ts";

let dir: string;
let log: string;

function plugin(name: string, body: string): void {
  const path = join(dir, name);
  writeFileSync(path, `#!/bin/sh\n${body}\n`);
  chmodSync(path, 0o755);
}

beforeAll(() => {
  dir = tempDir("pivot-cni-");
  log = join(dir, "log");
  writeFileSync(log, "");
  // Records env and stdin, prints a result with one address (ADD), nothing otherwise.
  plugin(
    "fake-main",
    `stdin=$(cat)
echo "$CNI_COMMAND $CNI_CONTAINERID $CNI_NETNS $CNI_IFNAME $CNI_PATH args=$CNI_ARGS main $stdin" >> ${log}
if [ "$CNI_COMMAND" = ADD ]; then
  echo '{"cniVersion":"1.0.0","interfaces":[{"name":"br0","mac":"aa:aa:aa:aa:aa:aa"},{"name":"eth0","mac":"02:00:00:00:00:01","sandbox":"'$CNI_NETNS'"}],"ips":[{"interface":1,"address":"10.1.2.3/24","gateway":"10.1.2.1"}],"routes":[{"dst":"0.0.0.0/0"}]}'
fi`,
  );
  // Passes prevResult through (as portmap does) and logs what it got.
  plugin(
    "fake-chained",
    `stdin=$(cat)
echo "$CNI_COMMAND chained $stdin" >> ${log}
if [ "$CNI_COMMAND" = ADD ]; then echo "$stdin" | sed 's/.*"prevResult":\\(.*\\)}$/\\1/'; fi`,
  );
  plugin(
    "fake-fail",
    `cat >/dev/null
echo "$CNI_COMMAND fail" >> ${log}
echo '{"cniVersion":"1.0.0","code":11,"msg":"try again later","details":"busy"}'
exit 1`,
  );
  plugin("fake-garbage", "cat >/dev/null; echo not-json");
  plugin("fake-crash", "cat >/dev/null; echo oops >&2; exit 3");
});

afterAll(() => rm(dir));

/** The error a promise rejects with (the test fails if it resolves). */
async function failure(p: Promise<unknown>): Promise<CniError> {
  try {
    await p;
  } catch (e) {
    return e as CniError;
  }
  throw new Error("expected a rejection");
}

const rt = { containerId: "c1", netns: "/run/x/ns", ifName: "eth0" };

function logLines(): string[] {
  const lines = readFileSync(log, "utf8").split("\n").filter(Boolean);
  writeFileSync(log, "");
  return lines;
}

describe("invokePlugin", () => {
  test("passes the CNI_* environment and the configuration on stdin", async () => {
    const out = await invokePlugin(
      { cniVersion: "1.0.0", name: "n", type: "fake-main", x: 1 },
      "ADD",
      { ...rt, args: { IgnoreUnknown: "1", K8S_POD_NAME: "p" } },
      { cniPath: [dir] },
    );
    expect(parseResult(out, "fake-main").ips?.[0]?.address).toBe("10.1.2.3/24");
    const [line] = logLines();
    expect(line).toStartWith(
      `ADD c1 /run/x/ns eth0 ${dir} args=IgnoreUnknown=1;K8S_POD_NAME=p main`,
    );
    expect(JSON.parse(line!.slice(line!.indexOf("{")))).toEqual({
      cniVersion: "1.0.0",
      name: "n",
      type: "fake-main",
      x: 1,
    });
  });

  test("a plugin's error object becomes a CniError with its code and message", async () => {
    const err = await failure(
      invokePlugin({ cniVersion: "1.0.0", name: "n", type: "fake-fail" }, "ADD", rt, {
        cniPath: [dir],
      }),
    );
    expect(err).toBeInstanceOf(CniError);
    expect(err.cniCode).toBe(11);
    expect(err.msg).toBe("try again later");
    expect(err.message).toContain("fake-fail ADD failed (code 11): try again later (busy)");
    logLines();
  });

  test("crashes, garbage and missing plugins are clear errors", async () => {
    const crash = await failure(
      invokePlugin({ cniVersion: "1.0.0", name: "n", type: "fake-crash" }, "DEL", rt, {
        cniPath: [dir],
      }),
    );
    expect(crash.message).toContain("oops");
    const garbage = await failure(
      invokePlugin({ cniVersion: "1.0.0", name: "n", type: "fake-garbage" }, "ADD", rt, {
        cniPath: [dir],
      }),
    );
    expect(garbage.message).toContain("invalid JSON");
    const missing = await failure(
      invokePlugin({ cniVersion: "1.0.0", name: "n", type: "nope" }, "ADD", rt, {
        cniPath: [dir],
      }),
    );
    expect(missing.message).toContain('plugin "nope" not found');
    expect(missing.hint).toContain("containernetworking-plugins");
    const bad = await failure(
      invokePlugin({ cniVersion: "1.0.0", name: "n", type: "../x" }, "ADD", rt, {
        cniPath: [dir],
      }),
    );
    expect(bad.message).toContain("invalid plugin type");
  });
});

describe("network configuration lists", () => {
  const list: NetworkConfList = {
    cniVersion: "1.0.0",
    name: "testnet",
    plugins: [
      { type: "fake-main", capabilities: { ips: true } },
      { type: "fake-chained", capabilities: { portMappings: true } },
    ],
  };
  const ports = [{ hostIP: "", hostPort: 8080, containerPort: 80, protocol: "tcp" }];

  test("runtimeConfig carries only the capabilities a plugin declares", () => {
    const conf = pluginStdin(
      list,
      list.plugins[1]!,
      { ...rt, capabilityArgs: { portMappings: ports, ips: ["x"] } },
      null,
    );
    expect(conf.runtimeConfig).toEqual({ portMappings: ports });
    expect(conf.name).toBe("testnet");
    const none = pluginStdin(list, list.plugins[0]!, rt, null);
    expect(none.runtimeConfig).toBeUndefined();
  });

  test("ADD chains results, CHECK gets the result, DEL runs in reverse", async () => {
    const saved: number[] = [];
    const result = await addNetworkList(
      list,
      { ...rt, capabilityArgs: { portMappings: ports } },
      { cniPath: [dir], onResult: (i) => void saved.push(i) },
    );
    expect(saved).toEqual([0, 1]);
    expect(containerAddresses(result)).toEqual([
      {
        address: "10.1.2.3",
        prefixLength: 24,
        gateway: "10.1.2.1",
        mac: "02:00:00:00:00:01",
        family: 4,
      },
    ]);
    const add = logLines();
    expect(add[0]).toContain("ADD c1");
    const chained = JSON.parse(add[1]!.slice(add[1]!.indexOf("{")));
    expect(chained.prevResult.ips[0].address).toBe("10.1.2.3/24");
    expect(chained.runtimeConfig.portMappings).toEqual(ports);

    await checkNetworkList(list, rt, result, { cniPath: [dir] });
    const check = logLines();
    expect(check.map((l) => l.split(" ")[0])).toEqual(["CHECK", "CHECK"]);
    expect(check[0]).toContain('"prevResult"');

    await delNetworkList(list, rt, result, { cniPath: [dir] });
    const del = logLines();
    expect(del[0]).toStartWith("DEL chained");
    expect(del[1]).toStartWith("DEL c1");
  });

  test("DEL calls every plugin even when one fails, then reports the first error", async () => {
    const failing: NetworkConfList = {
      ...list,
      plugins: [{ type: "fake-main" }, { type: "fake-fail" }],
    };
    const err = await failure(delNetworkList(failing, rt, null, { cniPath: [dir] }));
    expect(err).toBeInstanceOf(CniError);
    const lines = logLines();
    expect(lines[0]).toBe("DEL fail");
    expect(lines[1]).toStartWith("DEL c1");
  });

  test("ADD stops at the first failing plugin", async () => {
    const failing: NetworkConfList = {
      ...list,
      plugins: [{ type: "fake-main" }, { type: "fake-fail" }, { type: "fake-chained" }],
    };
    const err = await failure(addNetworkList(failing, rt, { cniPath: [dir] }));
    expect(err.cniCode).toBe(11);
    expect(logLines().length).toBe(2);
  });

  test("results are checked", () => {
    expect(() => parseResult(null, "p")).toThrow("returned no result");
    expect(() => parseResult({ ips: [{ address: "10.0.0.1" }] }, "p")).toThrow("CIDR");
    expect(() => parseResult({ interfaces: {} }, "p")).toThrow("not an array");
  });
});
