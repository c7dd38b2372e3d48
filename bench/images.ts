// Benchmark: images and storage, side by side in one run.
//
//   bun bench/images.ts [--runs N] [--layer FILE.tar.gz] [--containers N] [--skip-disk]
//
// 1. Unpacking one gzip layer of tens of MB, each arm in a process of its own, interleaved, --runs
//    times (default 5), median wall time:
//      pivot     `bun bench/images.ts --child-unpack FILE DEST`: unpackLayer (gunzip, tar parse,
//                blob digest and diff_id hashed, the hostile-input checks)
//      GNU tar   `tar --numeric-owner --xattrs --xattrs-include=* -xzf FILE -C DEST`
//      umoci     `umoci unpack --image LAYOUT:bench BUNDLE` on an OCI layout made of the same blob
//                (verifies the diff_id too and writes its mtree manifest, as it always does)
//    The layer: --layer, else the Debian minbase tarball of scripts/make-debian-image.sh if it is in
//    /tmp/pivot-bench/debian-bookworm.tar.gz, else a tarball of this host's /usr/lib (first 60 MB).
// 2. OverlayFS mount time against layer count (1, 16, 64, 128): `mount -t overlay` (spawned, as
//    the engine does it) and umount of an image of N one-file layers, 20 times each, median.
// 3. Disk used by --containers (default 20) containers of the layer's image, each having run
//    `sh -c 'echo hi > /hello'`: `du -skx` of the store's layers plus the containers' directories
//    (upper dirs; merged mounts not crossed), against the same containers with the "copy" driver
//    (a root filesystem copy each).
//
// Everything is made in a temporary directory removed at the end, mounts included, even on failure.
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { Engine } from "../src/engine/engine.ts";
import { importRootfs } from "../src/image/create.ts";
import { Digester } from "../src/image/digest.ts";
import { mountOverlay, planOverlay, unmountOverlay } from "../src/image/overlay.ts";
import { ImageStore } from "../src/image/store.ts";
import { unpackLayer } from "../src/image/unpack.ts";
import { buildTestImage } from "../test/fixtures/image-build.ts";
import { buildTar } from "../test/fixtures/image-tar.ts";

const argv = process.argv.slice(2);

if (argv[0] === "--child-unpack") {
  await unpackLayer(argv[1]!, argv[2]!, { archiveName: argv[1]! });
  process.exit(0);
}

function opt(name: string): string | undefined {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : undefined;
}
const runs = Number(opt("runs") ?? 5);
const containerCount = Number(opt("containers") ?? 20);
const BUN = process.execPath;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

function must(cmd: string, args: string[], cwd?: string): string {
  const r = spawnSync(cmd, args, {
    encoding: "utf8",
    maxBuffer: 64 << 20,
    ...(cwd ? { cwd } : {}),
  });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")}: ${r.stderr || r.error}`);
  return r.stdout;
}

function timed(cmd: string, args: string[]): number {
  const t0 = performance.now();
  must(cmd, args);
  return performance.now() - t0;
}

function duKiB(paths: string[]): number {
  const out = must("du", ["-skxc", ...paths]);
  return Number(out.trim().split("\n").at(-1)!.split("\t")[0]);
}

const work = mkdtempSync(join(tmpdir(), "pivot-bench-images-"));
const mounts: string[] = [];
const engines: Engine[] = [];
const lines: string[] = [];
const say = (s = "") => {
  lines.push(s);
  process.stdout.write(`${s}\n`);
};

try {
  say(
    `# bench/images.ts: ${new Date().toISOString().slice(0, 10)}, ${cpus().length} CPUs (${cpus()[0]?.model.trim()}), Linux ${readFileSync("/proc/sys/kernel/osrelease", "utf8").trim()}, bun ${Bun.version}`,
  );

  // ---- the layer ----
  let layer = opt("layer");
  let what = "";
  if (!layer && existsSync("/tmp/pivot-bench/debian-bookworm.tar.gz")) {
    layer = "/tmp/pivot-bench/debian-bookworm.tar.gz";
    what = "Debian bookworm minbase (scripts/make-debian-image.sh)";
  }
  if (!layer) {
    layer = join(work, "usr-lib.tar.gz");
    must("sh", [
      "-c",
      `tar -C / --numeric-owner -cf - usr/lib 2>/dev/null | head -c 62914560 | gzip -6 > ${layer}; true`,
    ]);
    what = "the host's /usr/lib (first 60 MB)";
  }
  what ||= layer;
  const gz = readFileSync(layer);
  const digest = new Digester("sha256");
  digest.update(gz);
  const blobDigest = digest.digest();
  const tarBytes = Number(must("sh", ["-c", `gzip -dc < '${layer}' | wc -c`]).trim());
  const tarDigest = `sha256:${must("sh", ["-c", `gzip -dc < '${layer}' | sha256sum`]).split(" ")[0]}`;
  say();
  say(
    `## Unpacking one gzip layer: ${what}, ${(gz.length / 1e6).toFixed(1)} MB gzip, ${(tarBytes / 1e6).toFixed(1)} MB tar`,
  );
  say();

  // An OCI layout of that blob for umoci.
  const haveUmoci = spawnSync("umoci", ["--version"]).status === 0;
  const layout = join(work, "layout");
  if (haveUmoci) {
    mkdirSync(join(layout, "blobs/sha256"), { recursive: true });
    writeFileSync(join(layout, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }));
    must("cp", [layer, join(layout, "blobs/sha256", blobDigest.slice(7))]);
    const put = (obj: unknown) => {
      const data = Buffer.from(JSON.stringify(obj));
      const d = new Digester("sha256");
      d.update(data);
      const dg = d.digest();
      writeFileSync(join(layout, "blobs/sha256", dg.slice(7)), data);
      return { digest: dg, size: data.length };
    };
    const config = put({
      architecture: "amd64",
      os: "linux",
      config: {},
      rootfs: { type: "layers", diff_ids: [tarDigest] },
    });
    const manifest = put({
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: { mediaType: "application/vnd.oci.image.config.v1+json", ...config },
      layers: [
        {
          mediaType: "application/vnd.oci.image.layer.v1.tar+gzip",
          digest: blobDigest,
          size: gz.length,
        },
      ],
    });
    writeFileSync(
      join(layout, "index.json"),
      JSON.stringify({
        schemaVersion: 2,
        manifests: [
          {
            mediaType: "application/vnd.oci.image.manifest.v1+json",
            ...manifest,
            annotations: { "org.opencontainers.image.ref.name": "bench" },
          },
        ],
      }),
    );
  }
  const arms: [string, (dest: string) => number][] = [
    ["pivot (unpackLayer)", (d) => timed(BUN, [import.meta.path, "--child-unpack", layer!, d])],
    [
      "GNU tar -xzf",
      (d) => {
        mkdirSync(d);
        return timed("tar", [
          "--numeric-owner",
          "--xattrs",
          "--xattrs-include=*",
          "-xzf",
          layer!,
          "-C",
          d,
        ]);
      },
    ],
  ];
  if (haveUmoci)
    arms.push(["umoci unpack", (d) => timed("umoci", ["unpack", "--image", `${layout}:bench`, d])]);
  const times = new Map<string, number[]>(arms.map(([n]) => [n, []]));
  for (let i = 0; i < runs; i++) {
    for (const [name, fn] of i % 2 ? [...arms].reverse() : arms) {
      const dest = join(work, `unpack-${i}-${name.split(" ")[0]}`);
      spawnSync("sync");
      times.get(name)!.push(fn(dest));
      rmSync(dest, { recursive: true, force: true });
    }
  }
  const tarMs = median(times.get("GNU tar -xzf")!);
  say("| unpacker | median of " + runs + " | runs (ms) | vs GNU tar |");
  say("| --- | ---: | --- | ---: |");
  for (const [name] of arms) {
    const t = times.get(name)!;
    say(
      `| ${name} | ${median(t).toFixed(0)} ms | ${t.map((x) => x.toFixed(0)).join(", ")} | ${(median(t) / tarMs).toFixed(2)}× |`,
    );
  }
  if (!haveUmoci) say("\n(umoci is not installed: apt-get install umoci)");

  // ---- mount time vs layer count ----
  say();
  say(
    "## OverlayFS mount time against layer count (`mount -t overlay` spawned, then umount; 20 each)",
  );
  say();
  say("| layers | option bytes | mount median | umount median |");
  say("| ---: | ---: | ---: | ---: |");
  const mstore = await ImageStore.open(join(work, "mstore"));
  for (const n of [1, 16, 64, 128]) {
    const tars = Array.from({ length: n }, (_, i) =>
      buildTar([{ name: `l/${i}`, content: `${i}` }]),
    );
    const image = await buildTestImage(mstore, tars, { gzip: false });
    const layers = await mstore.ensureImageLayers(image);
    const plan = planOverlay(mstore.root, layers, join(work, `m${n}`), undefined, "overlay");
    const mt: number[] = [];
    const ut: number[] = [];
    for (let i = 0; i < 20; i++) {
      let t0 = performance.now();
      mounts.push(plan.target);
      await mountOverlay(plan);
      mt.push(performance.now() - t0);
      t0 = performance.now();
      await unmountOverlay(plan.target);
      mounts.pop();
      ut.push(performance.now() - t0);
    }
    say(
      `| ${n} | ${plan.options.length} | ${median(mt).toFixed(2)} ms | ${median(ut).toFixed(2)} ms |`,
    );
  }

  // ---- disk used by N containers ----
  if (!argv.includes("--skip-disk")) {
    say();
    say(
      `## Disk used by ${containerCount} containers of one image (${what}), each after \`echo hi > /hello\``,
    );
    say();
    say("| root filesystems | store layers | containers' directories | total | per container |");
    say("| --- | ---: | ---: | ---: | ---: |");
    for (const driver of ["overlay", "copy"] as const) {
      const root = join(work, `engine-${driver}`);
      const engine = new Engine({ root, warn: () => {} });
      engines.push(engine);
      const store = await engine.images();
      await importRootfs(store, layer, {
        refs: ["localhost/bench:1"],
        config: { config: { Cmd: ["sh"], Env: ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"] } },
      });
      process.env.PIVOT_STORAGE_DRIVER = driver;
      try {
        for (let i = 0; i < containerCount; i++) {
          const c = await engine.run({
            image: "localhost/bench:1",
            cmd: ["sh", "-c", "echo hi > /hello"],
          });
          if ((await c.wait()) !== 0) throw new Error("container failed");
        }
      } finally {
        delete process.env.PIVOT_STORAGE_DRIVER;
      }
      const layersKiB = duKiB([join(root, "layers")]);
      const containersKiB = duKiB([join(root, "containers")]);
      const total = layersKiB + containersKiB;
      say(
        `| ${driver === "overlay" ? "OverlayFS (shared layers + upper dirs)" : "copy driver (a copy each)"} | ${(layersKiB / 1024).toFixed(1)} MiB | ${(containersKiB / 1024).toFixed(1)} MiB | ${(total / 1024).toFixed(1)} MiB | ${(containersKiB / containerCount).toFixed(0)} KiB |`,
      );
    }
  }
} finally {
  for (const e of engines) {
    for (const c of await e.list({ all: true }).catch(() => []))
      await e.remove(c.id, { force: true }).catch(() => {});
  }
  for (const m of mounts) await unmountOverlay(m, { lazy: true }).catch(() => {});
  const left = readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .map((l) => l.split(" ")[4] ?? "")
    .filter((m) => m.startsWith(work))
    .reverse();
  for (const m of left) spawnSync("umount", ["-l", m]);
  rmSync(work, { recursive: true, force: true });
}
