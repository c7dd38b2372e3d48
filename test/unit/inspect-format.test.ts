// `inspect --format` of images, volumes and networks: their Go maps as Docker's templates see
// them (a missing key is <no value>), a missing field still an error. Objects shaped as
// inspectImage, Engine.inspectVolume and NetworkManager.inspectNetwork make them.
import { describe, expect, test } from "bun:test";
import { UsageError } from "../../src/cli/args.ts";
import { renderInspect } from "../../src/cli/inspect-format.ts";

const image = () => ({
  Id: "sha256:0123",
  RepoTags: ["localhost/busybox:test"],
  Config: {
    User: "",
    ExposedPorts: { "80/tcp": {} },
    Env: ["PATH=/bin"],
    Cmd: null,
    Entrypoint: null,
    Volumes: null,
    WorkingDir: "",
    Labels: { role: "web" },
    StopSignal: "",
  },
  GraphDriver: { Name: "overlay2", Data: { LowerDir: "/l/1/diff" } },
  RootFS: { Type: "layers", Layers: ["sha256:aa"] },
});
const unlabelled = () => ({ ...image(), Config: { ...image().Config, Labels: null } });
const volume = () => ({
  name: "data",
  mountpoint: "/var/lib/pivot/volumes/data/_data",
  created: "2026-11-29T00:00:00Z",
  labels: { tier: "db" },
  anonymous: false,
});
const network = () => ({
  name: "app",
  id: "ab".repeat(32),
  driver: "bridge",
  bridge: "pivot1",
  subnet: "10.88.1.0/24",
  gateway: "10.88.1.1",
  internal: false,
  labels: {},
  created: "2026-11-29T00:00:00Z",
  containers: [],
});

describe("renderInspect: images, volumes and networks", () => {
  test("a missing map key is <no value>, its index the map's zero value", () => {
    const f = (format: string, o: unknown, kind: "image" | "volume" | "network") =>
      renderInspect([o], format, kind);
    expect(f("{{.Config.Labels.role}} {{.Config.Labels.nope}}", image(), "image")).toBe(
      "web <no value>\n",
    );
    expect(f('[{{index .Config.Labels "nope"}}]', image(), "image")).toBe("[]\n");
    expect(
      f("{{.Config.ExposedPorts.nope}} {{.GraphDriver.Data.UpperDir}}", image(), "image"),
    ).toBe("<no value> <no value>\n");
    // Nil maps and lists (null in the JSON), as Go prints them.
    expect(
      f("{{.Config.Labels.nope}} {{.Config.Volumes}} {{.Config.Cmd}}", unlabelled(), "image"),
    ).toBe("<no value> map[] []\n");
    expect(f("{{json .Config.Labels}}", unlabelled(), "image")).toBe("null\n");
    expect(f("{{.Labels.tier}} {{.Labels.nope}}", volume(), "volume")).toBe("db <no value>\n");
    expect(f('{{.Labels.nope}}|{{index .Labels "nope"}}', network(), "network")).toBe(
      "<no value>|\n",
    );
  });

  test("a missing field is still an error, as in Docker", () => {
    for (const [o, kind, format] of [
      [image(), "image", "{{.Config.Nope}}"],
      [volume(), "volume", "{{.Nope}}"],
      [network(), "network", "{{.Nope}}"],
    ] as const) {
      expect(() => renderInspect([o], format, kind)).toThrow(UsageError);
      expect(() => renderInspect([o], format, kind)).toThrow("can't evaluate field Nope");
    }
  });
});
