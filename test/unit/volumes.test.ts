// Volumes as Docker's `volume inspect` shows them.
import { expect, test } from "bun:test";
import type { VolumeInfo } from "../../src/engine/types.ts";
import { dockerVolume } from "../../src/engine/volumes.ts";

test("dockerVolume: Docker's fields first (CreatedAt to the second), then Pivot's own", () => {
  const v: VolumeInfo = {
    name: "db",
    mountpoint: "/var/lib/pivot/volumes/db/_data",
    created: "2026-03-01T10:20:30.456Z",
    labels: { tier: "db" },
    anonymous: false,
    driver: "local",
    scope: "local",
    options: {},
  };
  const d = dockerVolume(v);
  expect(JSON.parse(JSON.stringify(d))).toEqual({
    CreatedAt: "2026-03-01T10:20:30Z",
    Driver: "local",
    Labels: { tier: "db" },
    Mountpoint: "/var/lib/pivot/volumes/db/_data",
    Name: "db",
    Options: {},
    Scope: "local",
    ...v,
  });
  expect(Object.keys(d).slice(0, 7)).toEqual([
    "CreatedAt",
    "Driver",
    "Labels",
    "Mountpoint",
    "Name",
    "Options",
    "Scope",
  ]);
});
