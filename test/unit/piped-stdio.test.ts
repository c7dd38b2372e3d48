// PipedStdio: the caller's ends of a process's "pipe" stdio, from Bun.spawn (a FileSink) or from
// node:child_process (node streams). No root, no container: a shell stands in for the launcher.
import { afterEach, describe, expect, test } from "bun:test";
import { spawn } from "node:child_process";
import { bunPipes, type PipedStdio, pipedStdioOf } from "../../src/runtime/piped-stdio.ts";

const rejections: unknown[] = [];
const onRejection = (reason: unknown) => {
  rejections.push(reason);
};

afterEach(() => {
  process.off("unhandledRejection", onRejection);
  rejections.length = 0;
});

/** Writes more than a pipe holds (a FileSink keeps the rest for later) and ends: no rejection. */
async function writeToClosedStdin(pipes: PipedStdio): Promise<void> {
  await pipes.stdin!.write(Buffer.alloc(1 << 20, 120));
  await pipes.stdin!.write(Buffer.from("more\n"));
  pipes.stdin!.end();
  await Bun.sleep(100);
  expect(rejections).toEqual([]);
}

describe("stdin whose reader is gone while the process lives", () => {
  // The launcher holds the container's stdin until it exits: a reader gone with the writer's
  // process alive is the moment between the launcher's exit and Bun noticing it.
  const script = "exec 0<&-; sleep 5";

  test("Bun.spawn: a write that fails with EPIPE rejects nothing (an unhandled rejection ends Bun)", async () => {
    process.on("unhandledRejection", onRejection);
    const proc = Bun.spawn(["sh", "-c", script], { stdio: ["pipe", "ignore", "ignore"] });
    try {
      await Bun.sleep(200); // the shell has closed its stdin
      await writeToClosedStdin(bunPipes(proc));
    } finally {
      proc.kill("SIGKILL");
      await proc.exited;
    }
  });

  test("node:child_process: the same write is ignored too", async () => {
    process.on("unhandledRejection", onRejection);
    const child = spawn("sh", ["-c", script], { stdio: ["pipe", "ignore", "ignore"] });
    try {
      await Bun.sleep(200);
      await writeToClosedStdin(pipedStdioOf(child));
    } finally {
      child.kill("SIGKILL");
      await new Promise((r) => child.once("close", r));
    }
  });
});
