// The Go text/template subset behind `pivot inspect --format`.
import { describe, expect, test } from "bun:test";
import {
  asGoMap,
  goString,
  renderGoTemplate,
  TemplateError,
  withNilKinds,
} from "../../src/util/go-template.ts";

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

  test("Go's printing of maps, lists, nil (JSON's null) and a missing map key", () => {
    expect(goString({ b: 2, a: [1, "x"] })).toBe("map[a:[1 x] b:2]");
    expect(goString(null)).toBe("<nil>");
    expect(goString(undefined)).toBe("<no value>");
    expect(renderGoTemplate("{{.State.ExitCode}}", container)).toBe("<nil>");
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

  // Shaped as Docker's inspect: structs, with Go maps marked (Labels is a map[string]string).
  const docker = {
    Name: "/web",
    State: { Status: "exited", Running: false, ExitCode: 3, Pid: 0 },
    Config: withNilKinds(
      {
        Env: ["PATH=/bin", "A=1"],
        Labels: asGoMap({ role: "front" }, ""),
        Entrypoint: null,
        Volumes: null,
        Healthcheck: null,
      },
      { Entrypoint: "list", Volumes: "map" },
    ),
    NetworkSettings: {
      Ports: asGoMap({ "80/tcp": [{ HostIp: "0.0.0.0", HostPort: "8080" }], "443/tcp": null }),
      Networks: asGoMap({ bridge: { IPAddress: "10.88.0.2" } }),
    },
  };

  test("a missing map key is <no value> (index: the map's zero value); a missing struct field an error", () => {
    expect(renderGoTemplate("{{.Config.Labels.nope}}", docker)).toBe("<no value>");
    expect(renderGoTemplate("{{.NetworkSettings.Networks.other.IPAddress}}", docker)).toBe(
      "<no value>",
    );
    expect(renderGoTemplate('[{{index .Config.Labels "nope"}}]', docker)).toBe("[]");
    expect(renderGoTemplate('{{index .NetworkSettings.Networks "other"}}', docker)).toBe(
      "<no value>",
    );
    // Map keys are exact; struct fields also match ignoring case (Pivot's own camelCase fields).
    expect(renderGoTemplate("{{.Config.Labels.Role}} {{.state.exitcode}}", docker)).toBe(
      "<no value> 3",
    );
    expect(() => renderGoTemplate("{{.State.Nope}}", docker)).toThrow(
      "can't evaluate field Nope in .State",
    );
    expect(() => renderGoTemplate("{{index .Config.Env 2}}", docker)).toThrow(
      "index out of range: 2",
    );
  });

  test("null: a nil list or map prints as Go's ([], map[]), a nil pointer as <nil>; json null", () => {
    expect(
      renderGoTemplate(
        "{{.Config.Entrypoint}} {{json .Config.Entrypoint}} {{len .Config.Entrypoint}} {{.Config.Volumes}} {{json .Config.Volumes}} {{.Config.Healthcheck}} {{if .Config.Entrypoint}}x{{else}}empty{{end}}",
        docker,
      ),
    ).toBe("[] null 0 map[] null <nil> empty");
  });

  test("parenthesized pipelines and their fields: Docker's port one-liners", () => {
    expect(
      renderGoTemplate('{{(index (index .NetworkSettings.Ports "80/tcp") 0).HostPort}}', docker),
    ).toBe("8080");
    expect(
      renderGoTemplate(
        "{{range $p, $conf := .NetworkSettings.Ports}}{{$p}}->{{if $conf}}{{(index $conf 0).HostPort}}{{else}}none{{end}} {{end}}",
        docker,
      ),
    ).toBe("443/tcp->none 80/tcp->8080 ");
    expect(renderGoTemplate('{{len (split "a:b:c" ":")}} {{(.State).Status}}', docker)).toBe(
      "3 exited",
    );
  });

  test("else if, variables, comparisons, and/or", () => {
    const status = (s: string) =>
      renderGoTemplate(
        '{{if eq .State.Status "running"}}up{{else if eq .State.Status "exited" "dead"}}down {{.State.ExitCode}}{{else}}other{{end}}',
        { State: { Status: s, ExitCode: 3 } },
      );
    expect([status("running"), status("exited"), status("created")]).toEqual([
      "up",
      "down 3",
      "other",
    ]);
    expect(
      renderGoTemplate("{{$c := .State.ExitCode}}{{if gt $c 0}}failed {{$c}}{{end}}", docker),
    ).toBe("failed 3");
    expect(
      renderGoTemplate(
        '{{lt 1 2}} {{le 2 2}} {{gt 1 2}} {{ge 2 3}} {{ne .Name "/db"}} {{lt "a" "b"}}',
        docker,
      ),
    ).toBe("true true false false true true");
    expect(
      renderGoTemplate(
        '{{and .State.Running "x"}} {{or .State.Running "fallback"}} {{not .State.Running}} {{and 1 "last"}}',
        docker,
      ),
    ).toBe("false fallback true last");
    expect(() => renderGoTemplate('{{lt 1 "a"}}', docker)).toThrow("incompatible types");
  });

  test("Docker's functions (json join split lower upper title pad truncate) and printf's verbs", () => {
    expect(renderGoTemplate('{{json .Config.Env}} {{join .Config.Env ","}}', docker)).toBe(
      '["PATH=/bin","A=1"] PATH=/bin,A=1',
    );
    expect(renderGoTemplate('{{range split "a,b" ","}}<{{.}}>{{end}}', docker)).toBe("<a><b>");
    expect(
      renderGoTemplate(
        '{{lower "AbC"}} {{upper .Name}} {{title "hello big-world"}} [{{pad "x" 1 2}}] {{truncate "abcdef" 3}} {{slice "abcdef" 1 3}}',
        docker,
      ),
    ).toBe("abc /WEB Hello Big-World [ x  ] abc bc");
    expect(
      renderGoTemplate(
        '{{printf "%-6s|%4d|%03d|%v|%q|%t|%x" "ab" 42 7 .State.Running "q" true 255}}',
        docker,
      ),
    ).toBe('ab    |  42|007|false|"q"|true|ff');
    expect(renderGoTemplate('{{printf "%s %s" "a"}}', docker)).toBe("a %!s(MISSING)");
    expect(renderGoTemplate('{{printf "%d" "a"}}', docker)).toBe("%!d(string=a)");
    expect(renderGoTemplate('{{print 1 2 "a" 3}}|{{println "a" 1}}', docker)).toBe("1 2a3|a 1\n");
  });

  test("hostile widths and counts: Go's limits and errors, not gigabytes or a crash", () => {
    // Go's fmt gives up on a width or precision past 1e6: %!(NOVERB), the rest of the format
    // unread. Padded to 999999999 it took seconds and a gigabyte a directive.
    const started = Date.now();
    expect(renderGoTemplate('{{printf "a%999999999d|%d" 1}}', docker)).toBe(
      "a%!(NOVERB)%!(EXTRA int=1)",
    );
    expect(renderGoTemplate('{{printf "%s%.99999999f" "x" 1.5}}', docker)).toBe(
      "x%!(NOVERB)%!(EXTRA float64=1.5)",
    );
    expect(Date.now() - started).toBeLessThan(1000);
    expect(renderGoTemplate('{{printf "%1000001d" 1 | len}}', docker)).toBe("1000001");
    // A precision over toFixed's 100 (a RangeError, not the template's error).
    expect(renderGoTemplate('{{printf "%.102f" 1.5}}', docker)).toBe(`1.5${"0".repeat(101)}`);
    // Docker's pad and truncate fail on a negative count (strings.Repeat, a slice's bounds).
    expect(() => renderGoTemplate('{{pad "x" -1 0}}', docker)).toThrow(TemplateError);
    expect(() => renderGoTemplate('{{truncate "abc" -1}}', docker)).toThrow(TemplateError);
    expect(renderGoTemplate('{{truncate "abc" 5}}', docker)).toBe("abc");
  });

  test("a template of {{ without }} fails at once (each {{ was searched to the end again)", () => {
    const started = Date.now();
    expect(() => renderGoTemplate("{{".repeat(60_000), docker)).toThrow("unclosed action");
    expect(Date.now() - started).toBeLessThan(1000);
    // Trimming as before: {{- and -}} with their space, "-3" is no trim marker.
    expect(renderGoTemplate("a  {{- 1 -}}  b {{-3}}", docker)).toBe("a1b -3");
  });
});
