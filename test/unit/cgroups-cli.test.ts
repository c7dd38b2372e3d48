// pivot-runtime update and events: runc's flags, sizes and durations.
import { describe, expect, test } from "bun:test";
import { parseArgs } from "../../src/cli/args.ts";
import { parseDuration, parseMemorySize, updatePatch } from "../../src/cli/cgroups.ts";

describe("update and events flags", () => {
  test("runc's flags, memory sizes with suffixes", () => {
    expect(parseMemorySize("20m")).toBe(20 << 20);
    expect(parseMemorySize("1g")).toBe(1 << 30);
    expect(parseMemorySize("512k")).toBe(512 << 10);
    expect(parseMemorySize("1.5GiB")).toBe(1.5 * 2 ** 30);
    expect(parseMemorySize("4096")).toBe(4096);
    expect(parseMemorySize("-1")).toBe(-1);
    expect(() => parseMemorySize("20x")).toThrow(/not a size/);
    const p = parseArgs(
      [
        "--memory",
        "30m",
        "--memory-swap=60m",
        "--memory-reservation",
        "10m",
        "--cpu-quota",
        "20000",
        "--cpu-period",
        "100000",
        "--cpu-shares",
        "512",
        "--cpuset-cpus",
        "0",
        "--pids-limit",
        "50",
        "--blkio-weight",
        "300",
        "ctr",
      ],
      [
        { name: "memory", value: true },
        { name: "memory-swap", value: true },
        { name: "memory-reservation", value: true },
        { name: "cpu-quota", value: true },
        { name: "cpu-period", value: true },
        { name: "cpu-share", aliases: ["cpu-shares"], value: true },
        { name: "cpuset-cpus", value: true },
        { name: "pids-limit", value: true },
        { name: "blkio-weight", value: true },
      ],
    );
    expect(updatePatch(p)).toEqual({
      memory: { limit: 30 << 20, reservation: 10 << 20, swap: 60 << 20 },
      cpu: { shares: 512, quota: 20000, period: 100000, cpus: "0" },
      pids: { limit: 50 },
      blockIO: { weight: 300 },
    });
  });

  test("Go durations for --interval", () => {
    expect(parseDuration("5s")).toBe(5000);
    expect(parseDuration("250ms")).toBe(250);
    expect(parseDuration("1m30s")).toBe(90_000);
    expect(() => parseDuration("5")).toThrow(/not a duration/);
  });
});
