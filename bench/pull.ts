// Benchmark: pulling a multi-layer image from a local registry into an empty store.
//
//   bun bench/pull.ts [--runs N] [--layers N] [--layer-mb N] [--concurrency N] [--out FILE]
//
// A docker-registry (Debian's, the CNCF distribution server) is started on 127.0.0.1 over plain
// HTTP in a temporary directory; an image of --layers gzip layers (default 12, each about
// --layer-mb MB uncompressed (default 8): half random bytes, half text, so that gzip has real
// work) is pushed to it by Pivot. Then, interleaved, each arm pulls it into an empty store,
// --runs times (default 5), and the median wall time is reported:
//
//   pivot          `bun bench/pull.ts --child STORE REF`: pullImage (parallel, unpacked while streaming)
//   podman         `podman --root R --runroot RR --storage-driver overlay pull --tls-verify=false REF`
//   skopeo+umoci   `skopeo copy docker://REF oci:DIR:t` then `umoci unpack --image DIR:t BUNDLE`
//
// Arms whose program is missing are left out. Everything (registry, stores) is removed at the end,
// even on failure; the registry is stopped by its PID. A script, never a timed test.
import { spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import * as zlib from "node:zlib";
import { createImage } from "../src/image/create.ts";
import { ImageStore } from "../src/image/store.ts";
import { MediaType } from "../src/image/types.ts";
import { pullImage } from "../src/registry/pull.ts";
import { pushImage } from "../src/registry/push.ts";
import { buildTar, sha256 } from "../test/fixtures/image-tar.ts";
import { startRegistry } from "../test/fixtures/registry.ts";

const argv = process.argv.slice(2);

if (argv[0] === "--child") {
  // One timed pull in a process of its own (startup included, as for the other arms).
  const [, storeDir, ref, concurrency] = argv;
  const store = await ImageStore.open(storeDir!);
  await pullImage(store, ref!, {
    tlsVerify: false,
    certsDirs: [],
    concurrency: Number(concurrency ?? 3),
  });
  process.exit(0);
}

function opt(name: string, dflt: number): number {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? Number(argv[i + 1]) : dflt;
}
const runs = opt("runs", 5);
const layerCount = opt("layers", 12);
const layerMb = opt("layer-mb", 8);
const concurrency = opt("concurrency", 3);
const outIdx = argv.indexOf("--out");
const outFile = outIdx >= 0 ? argv[outIdx + 1] : undefined;

const have = (cmd: string, arg = "--version") => spawnSync(cmd, [arg]).status === 0;

function timed(cmd: string, args: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const child = spawn(cmd, args, { stdio: ["ignore", "ignore", "pipe"] });
    let err = "";
    child.stderr.on("data", (d: Buffer) => {
      err += d.toString();
    });
    child.on("error", reject);
    child.on("exit", (code) => {
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      if (code === 0) resolve(ms);
      else reject(new Error(`${cmd} ${args.join(" ")} failed (${code}): ${err.slice(-2000)}`));
    });
  });
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

// Short paths: podman refuses a runroot longer than 50 characters.
const work = mkdtempSync(join(tmpdir(), "pbp-"));
let stopRegistry: (() => Promise<void>) | undefined;
try {
  const reg = await startRegistry(join(work));
  stopRegistry = reg.stop;
  const ref = `${reg.host}/bench/multi:1`;

  // The image: text compresses ~4:1, random bytes not at all.
  const src = await ImageStore.open(join(work, "src"));
  const layers = [];
  let compressed = 0;
  let uncompressed = 0;
  const words = "container image layer registry pull push digest manifest index blob ".repeat(20);
  for (let i = 0; i < layerCount; i++) {
    const half = (layerMb << 20) >> 1;
    const text = Buffer.from(words.repeat(Math.ceil(half / words.length)).slice(0, half));
    const tar = buildTar([
      { name: `layer${i}/`, type: "dir" },
      { name: `layer${i}/random.bin`, content: randomBytes(half) },
      { name: `layer${i}/text.txt`, content: Buffer.concat([Buffer.from(`${i}\n`), text]) },
    ]);
    const gz = zlib.gzipSync(tar);
    const blob = await src.putBlob(gz, { digest: sha256(gz) });
    layers.push({
      descriptor: { mediaType: MediaType.ociLayerGzip, digest: blob.digest, size: blob.size },
      diffId: sha256(tar),
    });
    compressed += gz.length;
    uncompressed += tar.length;
  }
  await createImage(src, { layers, refs: [ref], config: { created: "2024-01-01T00:00:00Z" } });
  await pushImage(src, ref, undefined, { tlsVerify: false, certsDirs: [] });

  interface ArmDef {
    name: string;
    run: (dir: string) => Promise<number>;
  }
  const arms: ArmDef[] = [
    {
      name: `pivot (concurrency ${concurrency})`,
      run: (dir) =>
        timed(process.execPath, [
          import.meta.path,
          "--child",
          join(dir, "store"),
          ref,
          String(concurrency),
        ]),
    },
  ];
  if (have("podman")) {
    arms.push({
      name: "podman pull",
      run: (dir) =>
        timed("podman", [
          "--root",
          join(dir, "root"),
          "--runroot",
          join(dir, "runroot"),
          "--storage-driver",
          "overlay",
          "--events-backend",
          "file",
          "pull",
          "-q",
          "--tls-verify=false",
          ref,
        ]),
    });
  }
  if (have("skopeo") && have("umoci")) {
    arms.push({
      name: "skopeo copy + umoci unpack",
      run: async (dir) => {
        const a = await timed("skopeo", [
          "--insecure-policy",
          "copy",
          "-q",
          "--src-tls-verify=false",
          `docker://${ref}`,
          `oci:${join(dir, "oci")}:t`,
        ]);
        const b = await timed("umoci", [
          "unpack",
          "--image",
          `${join(dir, "oci")}:t`,
          join(dir, "bundle"),
        ]);
        return a + b;
      },
    });
  }

  const samples = new Map<string, number[]>(arms.map((a) => [a.name, []]));
  for (let r = 0; r < runs; r++) {
    for (const [a, arm] of arms.entries()) {
      const dir = join(work, `r${r}a${a}`);
      mkdirSync(dir);
      try {
        samples.get(arm.name)!.push(await arm.run(dir));
      } finally {
        // podman's overlay storage may hold mounts for layers; its own reset removes them.
        if (arm.name.startsWith("podman")) {
          spawnSync(
            "podman",
            [
              "--root",
              join(dir, "root"),
              "--runroot",
              join(dir, "runroot"),
              "--storage-driver",
              "overlay",
              "system",
              "reset",
              "-f",
            ],
            { stdio: "ignore" },
          );
        }
        rmSync(dir, { recursive: true, force: true });
      }
    }
    process.stderr.write(`round ${r + 1}/${runs} done\n`);
  }

  const pivotMedian = median(samples.get(arms[0]!.name)!);
  const lines = [
    `Pull of ${layerCount} gzip layers, ${(compressed / 1e6).toFixed(1)} MB compressed, ${(uncompressed / 1e6).toFixed(1)} MB uncompressed,`,
    `from docker-registry on 127.0.0.1 (plain HTTP) into an empty store; ${runs} runs per arm, interleaved.`,
    `Machine: ${cpus().length} × ${cpus()[0]?.model ?? "?"}; ${process.versions.bun ? `Bun ${process.versions.bun}` : `Node ${process.version}`}.`,
    "",
    "| arm | median | min | max | pivot's time as a share |",
    "| --- | ---: | ---: | ---: | ---: |",
  ];
  for (const arm of arms) {
    const xs = samples.get(arm.name)!;
    const m = median(xs);
    lines.push(
      `| ${arm.name} | ${(m / 1000).toFixed(2)} s | ${(Math.min(...xs) / 1000).toFixed(2)} s | ${(Math.max(...xs) / 1000).toFixed(2)} s | ${arm === arms[0] ? "" : `${((pivotMedian / m) * 100).toFixed(0)} %`} |`,
    );
  }
  const report = `${lines.join("\n")}\n`;
  process.stdout.write(report);
  if (outFile) writeFileSync(outFile, report);
} finally {
  await stopRegistry?.();
  rmSync(work, { recursive: true, force: true });
}
