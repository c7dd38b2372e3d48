// debug mounts / debug path: the mountinfo parser, the provenance matcher and the layer verdicts,
// as pure functions on crafted input.
import { describe, expect, test } from "bun:test";
import { explainLayers, type LayerEntry, layerHistory } from "../../src/image/layer-lookup.ts";
import type { ImageConfig } from "../../src/image/types.ts";
import type { Spec } from "../../src/oci/spec.ts";
import {
  mountOfPath,
  mountTree,
  overlayDirs,
  parseMountinfo,
  parseMountinfoLine,
  propagationOf,
} from "../../src/runtime/mountinfo.ts";
import { explainMounts, hostOnlyMounts, renderMountReport } from "../../src/runtime/provenance.ts";

// A container's mountinfo as read from the host (trimmed from a real engine container).
const CONTAINER = `89 51 0:43 / / rw,relatime - overlay overlay rw,lowerdir=l/bbbbbbbbbbbbbbbb:l/aaaaaaaaaaaaaaaa,upperdir=/var/lib/pivot/containers/c1/upper,workdir=/var/lib/pivot/containers/c1/work
90 89 0:46 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
91 89 0:47 / /dev rw,nosuid - tmpfs tmpfs rw,size=65536k,mode=755
94 89 0:50 / /sys/fs/cgroup ro,nosuid,nodev,noexec,relatime - tmpfs tmpfs ro,mode=755
95 94 0:29 /pivot-c1 /sys/fs/cgroup/cpu ro,nosuid,nodev,noexec,relatime - cgroup cgroup rw,cpu
123 89 254:0 /var/lib/pivot/containers/c1/hosts /etc/hosts rw,relatime - ext4 /dev/vda rw
126 89 254:0 /srv/my\\040data /data rw,relatime shared:7 - ext4 /dev/vda rw
127 126 0:60 / /data/sub rw,relatime master:3 - tmpfs tmpfs rw
52 90 0:62 / /proc/acpi ro,relatime - tmpfs tmpfs ro,size=0k
53 90 0:47 /null /proc/keys rw,nosuid - tmpfs tmpfs rw,size=65536k,mode=755
58 90 0:46 /sys /proc/sys ro,nosuid,nodev,noexec,relatime - proc proc rw
200 89 0:70 / /mnt/late rw,relatime master:1 - tmpfs tmpfs rw
`;

const SPEC: Spec = {
  ociVersion: "1.2.0",
  root: { path: "merged" },
  mounts: [
    { destination: "/proc", type: "proc", source: "proc" },
    { destination: "/dev", type: "tmpfs", source: "tmpfs", options: ["mode=755"] },
    { destination: "/sys/fs/cgroup", type: "cgroup", source: "cgroup", options: ["ro"] },
    {
      destination: "/etc/hosts",
      type: "bind",
      source: "/var/lib/pivot/containers/c1/hosts",
      options: ["rbind", "rprivate"],
    },
    { destination: "/data", type: "bind", source: "/srv/my data", options: ["rbind"] },
  ],
  linux: {
    maskedPaths: ["/proc/acpi", "/proc/keys", "/proc/kcore"],
    readonlyPaths: ["/proc/sys"],
  },
};

describe("mountinfo parser", () => {
  test("fields, escapes, optional fields and super options", () => {
    const m = parseMountinfoLine(
      "126 89 254:0 /srv/my\\040data /data rw,relatime shared:7 master:2 - ext4 /dev/vda rw,discard",
    )!;
    expect(m).toMatchObject({
      id: 126,
      parentId: 89,
      device: "254:0",
      root: "/srv/my data",
      mountPoint: "/data",
      options: ["rw", "relatime"],
      optionalFields: ["shared:7", "master:2"],
      fsType: "ext4",
      source: "/dev/vda",
      superOptions: ["rw", "discard"],
      propagation: "shared+slave",
      peerGroup: 7,
      master: 2,
    });
    expect(parseMountinfoLine("")).toBeNull();
    expect(parseMountinfoLine("garbage line")).toBeNull();
    expect(parseMountinfo(CONTAINER)).toHaveLength(12);
  });

  test("propagation from the optional fields", () => {
    expect(propagationOf([]).propagation).toBe("private");
    expect(propagationOf(["shared:1"])).toEqual({ propagation: "shared", peerGroup: 1 });
    expect(propagationOf(["master:4"])).toEqual({ propagation: "slave", master: 4 });
    expect(propagationOf(["master:4", "propagate_from:2"]).propagation).toBe("slave");
    expect(propagationOf(["unbindable"]).propagation).toBe("unbindable");
  });

  test("tree order by parent id, and the mount that provides a path", () => {
    const mounts = parseMountinfo(CONTAINER);
    const tree = mountTree(mounts);
    expect(tree.map((n) => `${n.depth}${n.mount.mountPoint}`)).toEqual([
      "0/",
      "1/proc",
      "2/proc/acpi",
      "2/proc/keys",
      "2/proc/sys",
      "1/dev",
      "1/sys/fs/cgroup",
      "2/sys/fs/cgroup/cpu",
      "1/etc/hosts",
      "1/data",
      "2/data/sub",
      "1/mnt/late",
    ]);
    expect(mountOfPath(mounts, "/proc/sys/kernel")?.id).toBe(58);
    expect(mountOfPath(mounts, "/procfoo")?.id).toBe(89);
    expect(mountOfPath(mounts, "/data")?.id).toBe(126);
    // Stacked on one mount point: the one on top (the child) wins.
    const stacked = parseMountinfo(
      "1 0 0:1 / / rw - ext4 /dev/a rw\n3 2 0:3 / /x rw - tmpfs t rw\n2 1 0:2 / /x rw - tmpfs t rw\n",
    );
    expect(mountOfPath(stacked, "/x/y")?.id).toBe(3);
    expect(overlayDirs(mounts[0]!)).toEqual({
      lower: ["l/bbbbbbbbbbbbbbbb", "l/aaaaaaaaaaaaaaaa"],
      upper: "/var/lib/pivot/containers/c1/upper",
      work: "/var/lib/pivot/containers/c1/work",
    });
  });
});

describe("provenance matcher", () => {
  const ctx = { spec: SPEC, rootfs: "/var/lib/pivot/containers/c1/merged", bundle: "/b" };

  test("each mount is matched to root.path, mounts[i], cgroups, masked and read-only paths", () => {
    const report = explainMounts(parseMountinfo(CONTAINER), ctx);
    const by = (p: string) => report.mounts.find((m) => m.mountPoint === p)!.origin;
    expect(by("/")).toMatchObject({ kind: "rootfs" });
    expect(by("/").layers?.map((l) => `${l.name} ${l.dir}`)).toEqual([
      "upper /var/lib/pivot/containers/c1/upper",
      "layer 2 l/bbbbbbbbbbbbbbbb",
      "layer 1 l/aaaaaaaaaaaaaaaa",
    ]);
    expect(by("/proc")).toMatchObject({ kind: "mount", index: 0 });
    expect(by("/proc").text).toContain("pseudo filesystem proc");
    expect(by("/sys/fs/cgroup")).toMatchObject({ kind: "mount", index: 2 });
    expect(by("/sys/fs/cgroup/cpu")).toMatchObject({ kind: "cgroup", index: 2 });
    expect(by("/etc/hosts")).toMatchObject({
      kind: "mount",
      index: 3,
      hostPath: "/var/lib/pivot/containers/c1/hosts",
    });
    expect(by("/data")).toMatchObject({ kind: "mount", index: 4, hostPath: "/srv/my data" });
    expect(by("/data/sub")).toMatchObject({ kind: "submount", index: 4 });
    expect(by("/proc/acpi")).toMatchObject({ kind: "masked", path: "/proc/acpi" });
    expect(by("/proc/acpi").text).toContain("empty read-only tmpfs");
    expect(by("/proc/keys").text).toContain("/dev/null");
    expect(by("/proc/sys")).toMatchObject({ kind: "readonly", path: "/proc/sys" });
    expect(by("/mnt/late")).toMatchObject({ kind: "other" });
    expect(by("/mnt/late").text).toContain("propagated from the host");
    const data = report.mounts.find((m) => m.mountPoint === "/data")!;
    expect(data).toMatchObject({ propagation: "shared", peerGroup: 7, depth: 1, readOnly: false });
    expect(report.mounts.find((m) => m.mountPoint === "/proc/acpi")!.readOnly).toBe(true);
  });

  test("the engine's hooks rename mounts and the root's layers", () => {
    const report = explainMounts(parseMountinfo(CONTAINER), {
      ...ctx,
      describeMount: (_m, i, base) =>
        i === 3 ? { ...base, generated: "/etc/hosts", text: "generated /etc/hosts" } : base,
      describeRoot: (_mount, base) => ({
        ...base,
        layers: base.layers?.map((l) => (l.name === "layer 1" ? { ...l, diffId: "sha256:aa" } : l)),
      }),
    });
    const hosts = report.mounts.find((m) => m.mountPoint === "/etc/hosts")!;
    expect(hosts.origin).toMatchObject({ generated: "/etc/hosts", text: "generated /etc/hosts" });
    expect(report.mounts[0]!.origin.layers?.[2]?.diffId).toBe("sha256:aa");
  });

  test("two mounts on one destination are matched in mount order", () => {
    const spec: Spec = {
      ociVersion: "1.2.0",
      mounts: [
        { destination: "/x", type: "tmpfs", source: "first" },
        { destination: "/x", type: "bind", source: "/second", options: ["bind"] },
      ],
    };
    const mounts = parseMountinfo(
      "1 0 0:1 / / rw - ext4 /dev/a rw\n2 1 0:2 / /x rw - tmpfs first rw\n3 2 8:1 /second /x rw - ext4 /dev/b rw\n",
    );
    const report = explainMounts(mounts, { spec, rootfs: "/r", bundle: "/b" });
    expect(report.mounts.map((m) => m.origin.index)).toEqual([undefined, 0, 1]);
  });

  test("bound device nodes in a user namespace; host-only mounts by device and root", () => {
    const mounts = parseMountinfo(
      "1 0 8:1 /r / rw - ext4 /dev/a rw\n2 1 0:5 /null /dev/null rw - devtmpfs udev rw\n",
    );
    const report = explainMounts(mounts, {
      spec: { ociVersion: "1.2.0" },
      rootfs: "/r",
      bundle: "/b",
      devicesBound: true,
    });
    expect(report.mounts[1]!.origin).toMatchObject({ kind: "device", path: "/dev/null" });
    const host = parseMountinfo(
      "10 1 8:1 / / rw - ext4 /dev/a rw\n11 10 0:5 / /dev rw - devtmpfs udev rw\n12 10 8:1 /r /r rw - ext4 /dev/a rw\n",
    );
    expect(hostOnlyMounts(host, mounts).map((m) => m.mountPoint)).toEqual(["/", "/dev"]);
    report.hostOnly = hostOnlyMounts(host, mounts);
    const text = renderMountReport(report, "mounts:");
    expect(text).toContain("  /dev/null  devtmpfs udev[/null]  rw  (private)");
    expect(text).toContain("host mounts the container does not have (2):");
  });
});

const file = (size = 1, mode = 0o644): LayerEntry => ({ type: "file", mode, uid: 0, gid: 0, size });
const dir = (opaque = false): LayerEntry => ({
  type: "directory",
  mode: 0o755,
  uid: 0,
  gid: 0,
  size: 0,
  opaque,
});
const whiteout: LayerEntry = { type: "whiteout", mode: 0, uid: 0, gid: 0, size: 0 };

describe("layer verdicts (OverlayFS lookup)", () => {
  const names = ["upper", "layer 2", "layer 1"];

  test("a file changed in a higher layer shadows the lower version", () => {
    const r = explainLayers(
      ["etc", "motd"],
      [
        [dir(), null],
        [dir(), file(3)],
        [dir(), file(2)],
      ],
      names,
    );
    expect(r.provider).toBe(1);
    expect(r.verdicts.map((v) => v.state)).toEqual(["absent", "provides", "shadowed"]);
    expect(r.verdicts[2]!.reason).toContain("layer 2 provides it");
  });

  test("a whiteout deletes the path; the lower version stays hidden", () => {
    const r = explainLayers(
      ["etc", "old"],
      [
        [null, null],
        [dir(), whiteout],
        [dir(), file()],
      ],
      names,
    );
    expect(r.provider).toBe(-1);
    expect(r.removedBy).toBe(1);
    expect(r.verdicts.map((v) => v.state)).toEqual(["absent", "whiteout", "shadowed"]);
  });

  test("an opaque directory hides the lower layers' entries under it", () => {
    const r = explainLayers(
      ["opt", "dir", "a"],
      [
        [null, null, null],
        [dir(), dir(true), null],
        [dir(), dir(), file()],
      ],
      names,
    );
    expect(r.provider).toBe(-1);
    expect(r.removedBy).toBe(1);
    expect(r.verdicts.map((v) => v.state)).toEqual(["absent", "absent", "shadowed"]);
    expect(r.verdicts[2]!.reason).toContain("/opt/dir is opaque in layer 2");
    // The opaque directory itself: provided by layer 2, layer 1's is not merged.
    const d = explainLayers(
      ["opt", "dir"],
      [
        [null, null],
        [dir(), dir(true)],
        [dir(), dir()],
      ],
      names,
    );
    expect(d.verdicts.map((v) => v.state)).toEqual(["absent", "provides", "shadowed"]);
  });

  test("directories merge; a whiteout or a file as an ancestor hides everything under it", () => {
    const m = explainLayers(["etc"], [[dir()], [null], [dir()]], names);
    expect(m.verdicts.map((v) => v.state)).toEqual(["provides", "absent", "merged"]);
    const w = explainLayers(
      ["a", "b"],
      [
        [whiteout, null],
        [dir(), file()],
        [null, null],
      ],
      names,
    );
    expect(w).toMatchObject({ provider: -1, removedBy: 0 });
    expect(w.verdicts.map((v) => v.state)).toEqual(["whiteout", "shadowed", "absent"]);
    const f = explainLayers(
      ["a", "b"],
      [
        [file(), null],
        [dir(), file()],
        [null, null],
      ],
      names,
    );
    expect(f.provider).toBe(-1);
    expect(f.verdicts[1]!.state).toBe("shadowed");
  });

  test("layer history skips empty_layer entries", () => {
    const config = {
      architecture: "amd64",
      os: "linux",
      rootfs: { type: "layers", diff_ids: ["sha256:a", "sha256:b"] },
      history: [
        { created_by: "ADD rootfs" },
        { created_by: "ENV X=1", empty_layer: true },
        { created_by: "RUN make" },
      ],
    } as ImageConfig;
    expect(layerHistory(config)).toEqual(["ADD rootfs", "RUN make"]);
  });
});
