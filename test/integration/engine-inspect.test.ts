// `pivot inspect` and `inspect --format` as `docker inspect` answers scripts: Docker's field names
// and zero values (State.ExitCode 0 while running, the zero time, Name with "/", Image the ID and
// Config.Image the reference), and Go's templates over them (a missing map key is <no value>).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { findConmon } from "../../src/engine/monitor.ts";
import { CONFIGURED, IMAGE, makeTestEngine, type TestEngine } from "../fixtures/engine.ts";
import { isRoot, pivotCli } from "../helpers.ts";

const hasConmon = findConmon() !== null;
const ZERO_TIME = "0001-01-01T00:00:00Z";

let t: TestEngine;

beforeAll(async () => {
  if (!isRoot) return;
  t = await makeTestEngine();
});

afterAll(async () => {
  await t?.cleanup();
});

const pivot = (args: string[]) => pivotCli(t.root, args);
/** `pivot inspect -f FORMAT NAME`'s output, without its newline; fails on an error. */
const format = (name: string, template: string) => {
  const r = pivot(["inspect", "-f", template, name]);
  expect(r.stderr).toBe("");
  expect(r.status).toBe(0);
  return r.stdout.replace(/\n$/, "");
};

describe.skipIf(!isRoot)("pivot inspect, as docker inspect", () => {
  test.skipIf(!hasConmon)(
    "a running container, then exited: State, Name, Image, Config, HostConfig as Docker names them",
    async () => {
      const run = pivot([
        "run",
        "-d",
        "--name",
        "insp",
        "-e",
        "FOO=bar",
        "-l",
        "role=web",
        "--restart",
        "on-failure:3",
        "--memory",
        "64m",
        "--cap-drop",
        "NET_RAW",
        IMAGE,
        "sh",
        "-c",
        "trap 'exit 7' TERM; sleep 60 & wait",
      ]);
      expect(run.stderr).toBe("");
      const id = run.stdout.trim();
      try {
        // Running: ExitCode 0 (it was <no value>), FinishedAt the zero time.
        expect(
          format(
            "insp",
            "{{.State.Status}} {{.State.Running}} {{.State.ExitCode}} {{.State.Error}}|",
          ),
        ).toBe("running true 0 |");
        expect(Number(format("insp", "{{.State.Pid}}"))).toBeGreaterThan(1);
        expect(format("insp", "{{.State.FinishedAt}}")).toBe(ZERO_TIME);
        expect(format("insp", "{{.State.StartedAt}}")).not.toBe(ZERO_TIME);
        expect(format("insp", "{{.Name}} {{.Id}} {{.Path}} {{json .Args}}")).toBe(
          `/insp ${id} sh ["-c","trap 'exit 7' TERM; sleep 60 \\u0026 wait"]`.replace(
            "\\u0026",
            "&",
          ),
        );
        // Image: the image's ID, as `image inspect` has it; Config.Image: the reference given.
        const imageId = pivot(["image", "inspect", "-f", "{{.Id}}", IMAGE]).stdout.trim();
        expect(imageId).toMatch(/^sha256:[0-9a-f]{64}$/);
        expect(format("insp", "{{.Image}} {{.Config.Image}}")).toBe(`${imageId} ${IMAGE}`);
        expect(format("insp", "{{json .Config.Env}}")).toBe(
          '["PATH=/usr/sbin:/usr/bin:/sbin:/bin","FOO=bar"]',
        );
        expect(
          format(
            "insp",
            "{{.HostConfig.RestartPolicy.Name}} {{.HostConfig.RestartPolicy.MaximumRetryCount}} {{.HostConfig.Memory}} {{.HostConfig.CapDrop}} {{.HostConfig.NetworkMode}} {{.RestartCount}}",
          ),
        ).toBe("on-failure 3 67108864 [NET_RAW] none 0");
        // Labels is a map: a missing key is <no value> (index: the zero value ""), no error.
        expect(
          format(
            "insp",
            '{{.Config.Labels.role}} {{.Config.Labels.nope}} [{{index .Config.Labels "nope"}}]',
          ),
        ).toBe("web <no value> []");
        // A missing field of Docker's structs stays an error, as Docker's is.
        const bad = pivot(["inspect", "-f", "{{.State.Nope}}", "insp"]);
        expect(bad.status).toBe(125);
        expect(bad.stderr).toContain("can't evaluate field Nope in .State");
        // The JSON: Docker's fields first, Pivot's own kept after them.
        const info = JSON.parse(pivot(["inspect", "insp"]).stdout)[0];
        expect(Object.keys(info).slice(0, 4)).toEqual(["Id", "Created", "Path", "Args"]);
        expect(info.State).toMatchObject({ Status: "running", ExitCode: 0, OOMKilled: false });
        expect(info.state).toMatchObject({ status: "running", exitCode: null });
        expect(info.id).toBe(id);

        expect(pivot(["stop", "-t", "5", "insp"]).status).toBe(0);
        expect(
          format("insp", "{{.State.Status}} {{.State.Running}} {{.State.ExitCode}} {{.State.Pid}}"),
        ).toBe("exited false 7 0");
        const finished = format("insp", "{{.State.FinishedAt}}");
        expect(finished).not.toBe(ZERO_TIME);
        expect(Date.parse(finished)).toBeGreaterThan(Date.now() - 60_000);
      } finally {
        pivot(["rm", "-f", "insp"]);
      }
    },
  );

  test("a created container: zero times and code, and the image's config merged as Docker's Config", () => {
    const created = pivot([
      "create",
      "--name",
      "insp-new",
      "-v",
      "/anon",
      "--tmpfs",
      "/t",
      "--init",
      CONFIGURED,
    ]);
    expect(created.stderr).toBe("");
    try {
      expect(
        format(
          "insp-new",
          "{{.State.Status}} {{.State.ExitCode}} {{.State.Pid}} {{.State.StartedAt}} {{.State.FinishedAt}}",
        ),
      ).toBe(`created 0 0 ${ZERO_TIME} ${ZERO_TIME}`);
      expect(
        format(
          "insp-new",
          "{{json .Config.Entrypoint}} {{json .Config.Cmd}} {{.Config.User}} {{.Config.WorkingDir}} {{.Config.StopSignal}}",
        ),
      ).toBe(
        `["sh","-c"] ["echo \\"$GREETING from $(pwd) as $(id -u):$(id -g)\\""] nobody /srv/app SIGUSR1`,
      );
      expect(
        format(
          "insp-new",
          "{{range $v, $_ := .Config.Volumes}}{{$v}} {{end}}{{json .HostConfig.Tmpfs}} {{.HostConfig.Init}} {{.HostConfig.PidsLimit}} {{index .Config.Labels `org.example.role`}}",
        ),
      ).toBe('/anon /data {"/t":""} true <nil> test');
      // Nil lists print as Go prints them, [], and are null in JSON, as Docker's.
      expect(format("insp-new", "{{.HostConfig.CapAdd}} {{json .HostConfig.CapAdd}}")).toBe(
        "[] null",
      );
      expect(
        format(
          "insp-new",
          "{{if .HostConfig.AutoRemove}}rm{{else if .HostConfig.Init}}init{{end}}",
        ),
      ).toBe("init");
    } finally {
      pivot(["rm", "-v", "insp-new"]);
    }
  });

  test("--memory-swap -1 (unlimited swap) is HostConfig.MemorySwap -1, as Docker's", () => {
    const created = pivot([
      "create",
      "--name",
      "insp-swap",
      "-m",
      "64m",
      "--memory-swap",
      "-1",
      IMAGE,
    ]);
    expect(created.stderr).toBe("");
    try {
      expect(format("insp-swap", "{{.HostConfig.Memory}} {{.HostConfig.MemorySwap}}")).toBe(
        "67108864 -1",
      );
    } finally {
      pivot(["rm", "insp-swap"]);
    }
  });
});
