// The Go text/template subset behind `pivot inspect --format`.
import { describe, expect, test } from "bun:test";
import { goString, renderGoTemplate, TemplateError } from "../../src/util/go-template.ts";

const container = {
  id: "0c6abaeb0e96",
  name: "web",
  state: { status: "running", running: true, pid: 4242, exitCode: null },
  labels: { "org.example.role": "front", tier: "1" },
  ports: [
    { containerPort: 80, hostPort: 8080, protocol: "tcp" },
    { containerPort: 53, hostPort: 5353, protocol: "udp" },
  ],
  command: ["nginx", "-g", "daemon off;"],
};

describe("renderGoTemplate", () => {
  test("fields, exact or ignoring case (Docker's .State.Pid), and {{.}} / {{$}}", () => {
    expect(renderGoTemplate("{{.State.Pid}} {{.state.running}} {{.Id}}", container)).toBe(
      "4242 true 0c6abaeb0e96",
    );
    expect(renderGoTemplate("{{.}}", "plain")).toBe("plain");
    expect(renderGoTemplate("{{with .State}}{{$.Name}}:{{.Status}}{{end}}", container)).toBe(
      "web:running",
    );
  });

  test("json, index, len, join, printf, upper, pipelines", () => {
    expect(renderGoTemplate("{{json .State}}", container)).toBe(
      '{"status":"running","running":true,"pid":4242,"exitCode":null}',
    );
    expect(renderGoTemplate('{{index .Labels "org.example.role"}}', container)).toBe("front");
    expect(renderGoTemplate('{{index .Ports 1 "hostPort"}}', container)).toBe("5353");
    expect(renderGoTemplate('{{len .Ports}} {{join .Command ","}}', container)).toBe(
      "2 nginx,-g,daemon off;",
    );
    expect(renderGoTemplate('{{printf "%s=%d" .Name .State.Pid}}', container)).toBe("web=4242");
    expect(renderGoTemplate("{{.Name | upper}} {{.State | json}}", container)).toMatch(
      /^WEB \{"status"/,
    );
  });

  test("range over lists and maps (sorted keys), with variables; if/else; trimming", () => {
    expect(
      renderGoTemplate("{{range .Ports}}{{.containerPort}}/{{.protocol}} {{end}}", container),
    ).toBe("80/tcp 53/udp ");
    expect(renderGoTemplate("{{range $k, $v := .Labels}}{{$k}}={{$v}};{{end}}", container)).toBe(
      "org.example.role=front;tier=1;",
    );
    expect(renderGoTemplate("{{range .Missing}}x{{else}}none{{end}}", { missing: [] })).toBe(
      "none",
    );
    expect(
      renderGoTemplate("{{if .State.Running}}up{{else}}down{{end}}", container) +
        renderGoTemplate("{{if .State.ExitCode}}code{{else}}no code{{end}}", container),
    ).toBe("upno code");
    expect(renderGoTemplate("a  {{- .Name -}}  b", container)).toBe("awebb");
  });

  test("Go's printing of maps, lists and nulls", () => {
    expect(goString({ b: 2, a: [1, "x"] })).toBe("map[a:[1 x] b:2]");
    expect(goString(null)).toBe("<no value>");
    expect(renderGoTemplate("{{.State.ExitCode}}", container)).toBe("<no value>");
  });

  test("unknown fields and functions, and broken templates, are errors that say what is there", () => {
    const err = (t: string) => {
      try {
        renderGoTemplate(t, container);
      } catch (e) {
        expect(e).toBeInstanceOf(TemplateError);
        return (e as Error).message;
      }
      throw new Error(`no error for ${t}`);
    };
    expect(err("{{.State.Nope}}")).toContain(
      "can't evaluate field Nope in .State: it has status, running, pid, exitCode",
    );
    expect(err("{{nosuch .Name}}")).toContain('function "nosuch" not defined');
    expect(err("{{if .Name}}x")).toContain("without {{end}}");
    expect(err("{{end}}")).toContain("unexpected {{end}}");
    expect(err("{{.Name")).toContain("unclosed");
  });
});
