// biome-ignore-all lint/suspicious/noTemplateCurlyInString: Dockerfile ${VAR} syntax, not template strings
// The Dockerfile parser and Docker's variable substitution (src/engine/build/dockerfile.ts), the
// config-only instructions (config-steps.ts) and the build context's .dockerignore globs (context.ts).
import { describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { configChange } from "../../src/engine/build/config-steps.ts";
import { globMatcher, IgnoreRules } from "../../src/engine/build/context.ts";
import {
  DockerfileError,
  expandWord,
  expandWords,
  parseDockerfile,
  parseJsonArray,
  parseKeyValues,
  splitWords,
} from "../../src/engine/build/dockerfile.ts";
import {
  effectiveHealthcheck,
  formatGoDuration,
  goQuote,
  goQuoteRune,
  healthHistoryText,
  mergeHealthcheck,
  parseGoDuration,
} from "../../src/engine/health-config.ts";

const vars =
  (m: Record<string, string>) =>
  (n: string): string | undefined =>
    m[n];

describe("parseDockerfile", () => {
  test("instructions, keywords any case, comments and blank lines dropped, start lines kept", () => {
    const { instructions } = parseDockerfile(
      '# a comment\n\nfrom busybox\n  # indented comment\nRUN echo hi\n\ncmd ["sh"]\n',
    );
    expect(instructions.map((i) => [i.keyword, i.line, i.args])).toEqual([
      ["FROM", 3, "busybox"],
      ["RUN", 5, "echo hi"],
      ["CMD", 7, '["sh"]'],
    ]);
    expect(instructions[2]!.json).toEqual(["sh"]);
    expect(instructions[1]!.json).toBeNull();
  });

  test("continuations join lines, skipping comments and blank lines inside them", () => {
    const { instructions } = parseDockerfile(
      "FROM x\nRUN apk add \\\n# a comment inside\n    curl \\  \n\n    git\nENV A=1\n",
    );
    expect(instructions.map((i) => i.keyword)).toEqual(["FROM", "RUN", "ENV"]);
    expect(instructions[1]!.args).toBe("apk add     curl     git");
    expect(instructions[1]!.line).toBe(2);
    expect(instructions[2]!.line).toBe(7);
  });

  test("a continuation on the last line ends the instruction", () => {
    const { instructions } = parseDockerfile("FROM x\nRUN true \\");
    expect(instructions[1]!.args).toBe("true");
  });

  test("the escape directive changes the continuation character", () => {
    const { instructions, escapeChar } = parseDockerfile(
      "# escape=`\nFROM x\nRUN dir `\n  C:\\path\n",
    );
    expect(escapeChar).toBe("`");
    expect(instructions[1]!.args).toBe("dir   C:\\path");
  });

  test("leading --flags of FROM, COPY, ADD and RUN are flags; elsewhere they are arguments", () => {
    const { instructions } = parseDockerfile(
      "FROM --platform=linux/amd64 x AS b\nCOPY --chown=1:2 --from=b a /b\nCMD --help\n",
    );
    expect(instructions[0]!.flags).toEqual({ platform: "linux/amd64" });
    expect(instructions[0]!.args).toBe("x AS b");
    expect(instructions[1]!.flags).toEqual({ chown: "1:2", from: "b" });
    expect(instructions[1]!.args).toBe("a /b");
    expect(instructions[2]!.flags).toEqual({});
    expect(instructions[2]!.args).toBe("--help");
  });

  test("CRLF line ends", () => {
    const { instructions } = parseDockerfile("FROM x\r\nRUN a \\\r\n b\r\n");
    expect(instructions[1]!.args).toBe("a  b");
  });
});

describe("exec form", () => {
  test("a JSON array of strings, else the shell form", () => {
    expect(parseJsonArray('["a", "b c"]')).toEqual(["a", "b c"]);
    expect(parseJsonArray("[1, 2]")).toBeNull();
    expect(parseJsonArray("['a']")).toBeNull();
    expect(parseJsonArray("echo [x]")).toBeNull();
  });
});

describe("variable substitution", () => {
  const lookup = vars({ A: "1", EMPTY: "", PATH_: "/usr/bin", NAME: "world" });

  test("$VAR and ${VAR}, unset variables empty", () => {
    expect(expandWord("$A-${A}x$NONE.", lookup)).toBe("1-1x.");
    expect(expandWord("${PATH_}:/bin", lookup)).toBe("/usr/bin:/bin");
  });

  test("defaults and alternatives, with and without the colon", () => {
    expect(expandWord("${NONE:-def}", lookup)).toBe("def");
    expect(expandWord("${EMPTY:-def}", lookup)).toBe("def");
    expect(expandWord("${EMPTY-def}", lookup)).toBe("");
    expect(expandWord("${NONE-def}", lookup)).toBe("def");
    expect(expandWord("${A:+alt}", lookup)).toBe("alt");
    expect(expandWord("${EMPTY:+alt}", lookup)).toBe("");
    expect(expandWord("${EMPTY+alt}", lookup)).toBe("alt");
    expect(expandWord("${NONE:-$NAME}", lookup)).toBe("world");
  });

  test("single quotes are literal, double quotes expand, quotes and escapes are removed", () => {
    expect(expandWord("'$A'", lookup)).toBe("$A");
    expect(expandWord('"$A b"', lookup)).toBe("1 b");
    expect(expandWord("\\$A", lookup)).toBe("$A");
    expect(expandWord('"a \\"q\\" \\$A"', lookup)).toBe('a "q" $A');
    expect(expandWord("a\\ b", lookup)).toBe("a b");
  });

  test("a lone $ stays", () => {
    expect(expandWord("cost$ 5$", lookup)).toBe("cost$ 5$");
  });

  test("bad substitutions are errors", () => {
    expect(() => expandWord("${A", lookup)).toThrow(DockerfileError);
    expect(() => expandWord("${1A}", lookup)).toThrow(/bad substitution/);
    expect(() => expandWord('"open', lookup)).toThrow(/unmatched/);
  });

  test("words split on unquoted whitespace only", () => {
    expect(splitWords(`a "b c" 'd e' f\\ g`)).toEqual(["a", '"b c"', "'d e'", "f\\ g"]);
    expect(expandWords(`$A "x y" z`, lookup)).toEqual(["1", "x y", "z"]);
  });
});

describe("ENV and LABEL pairs", () => {
  const lookup = vars({ A: "1" });

  test("KEY=VALUE pairs, quoted values, expansion", () => {
    expect(parseKeyValues(`X=$A Y="two words" Z='$A'`, lookup, "ENV")).toEqual([
      ["X", "1"],
      ["Y", "two words"],
      ["Z", "$A"],
    ]);
    expect(parseKeyValues(`"org.x.y"="a b" k=v`, lookup, "LABEL")).toEqual([
      ["org.x.y", "a b"],
      ["k", "v"],
    ]);
  });

  test("the legacy ENV KEY VALUE form takes the rest of the line", () => {
    expect(parseKeyValues("GREETING hello big  world", lookup, "ENV")).toEqual([
      ["GREETING", "hello big  world"],
    ]);
  });

  test("malformed pairs are errors", () => {
    expect(() => parseKeyValues("", lookup, "ENV")).toThrow(DockerfileError);
    expect(() => parseKeyValues("=x", lookup, "ENV")).toThrow(/KEY=VALUE/);
    expect(() => parseKeyValues("key value", lookup, "LABEL")).toThrow(/KEY=VALUE/);
  });
});

describe(".dockerignore", () => {
  test("globs: * within a component, ** across, ? and classes", () => {
    expect(globMatcher("*.log").test("a.log")).toBe(true);
    expect(globMatcher("*.log").test("d/a.log")).toBe(false);
    expect(globMatcher("**/*.log").test("d/e/a.log")).toBe(true);
    expect(globMatcher("**/*.log").test("a.log")).toBe(true);
    expect(globMatcher("file?.[ch]").test("file1.c")).toBe(true);
    expect(globMatcher("file?.[ch]").test("file1.o")).toBe(false);
    expect(globMatcher("[!a-c]x").test("dx")).toBe(true);
    expect(globMatcher("[!a-c]x").test("bx")).toBe(false);
    expect(globMatcher("[!a]x").test("/x")).toBe(false);
    expect(globMatcher("a\\*b").test("a*b")).toBe(true);
    expect(globMatcher("a\\*b").test("axb")).toBe(false);
    expect(globMatcher("a/**/b").test("a/b")).toBe(true);
    expect(globMatcher("a/**/b").test("a/x/y/b")).toBe(true);
    expect(globMatcher("a/**").test("a/x/y")).toBe(true);
    expect(globMatcher("a[").test("a[")).toBe(true);
  });

  test("a matched directory covers what is under it; ! re-includes; the last match wins", () => {
    const rules = new IgnoreRules([
      "# not read here",
      "node_modules",
      "*.md",
      "!README.md",
      "/secret/",
    ]);
    expect(rules.ignores("node_modules/x/y.js")).toBe(true);
    expect(rules.ignores("notes.md")).toBe(true);
    expect(rules.ignores("README.md")).toBe(false);
    expect(rules.ignores("secret/key")).toBe(true);
    expect(rules.ignores("src/main.ts")).toBe(false);
  });

  // The .dockerignore and the Dockerfile's wildcards are the untrusted repository's: matching runs
  // synchronously, so a pattern that backtracks for ever would hang the build (and its event loop).
  test("hostile globs match in linear time (no regular-expression backtracking)", () => {
    const r = inChild(`
      const { IgnoreRules, globMatcher } = await import(${JSON.stringify(CONTEXT_TS)});
      const rules = new IgnoreRules(["*a*a*a*a*a*a*a*a*a*a*a*a*ab", "**a**a**a**a**a**a**a**a**ab"]);
      const long = "a".repeat(200);
      console.log(rules.ignores(long), rules.ignores(long + "b"), globMatcher("[z-a]x").test("x"));
    `);
    expect(r.error).toBeUndefined();
    expect(r.stdout.trim()).toBe("false true false");
  });

  // A .dockerignore that is a fifo, a device, or a symlink out of the context: readFileSync
  // would block for ever on the fifo (or read /dev/zero until memory runs out, or a host file).
  test("a .dockerignore that is no regular file of the context is refused, never read", () => {
    const dir = mkdtempSync(join(tmpdir(), "pivot-ignore-"));
    try {
      const read = (what: string) =>
        inChild(
          `
          const { IgnoreRules } = await import(${JSON.stringify(CONTEXT_TS)});
          try { IgnoreRules.read(${JSON.stringify(dir)}); console.log("read"); }
          catch (e) { console.log(e.constructor.name + ": " + e.message); }
        `,
          what,
        );
      spawnSync("mkfifo", [join(dir, ".dockerignore")]);
      const fifo = read("fifo");
      expect(fifo.error).toBeUndefined();
      expect(fifo.stdout).toContain("DockerfileError: .dockerignore is not a regular file");
      rmSync(join(dir, ".dockerignore"));
      symlinkSync("/dev/zero", join(dir, ".dockerignore"));
      const zero = read("/dev/zero");
      expect(zero.error).toBeUndefined();
      expect(zero.stdout).toBe("read\n"); // resolved inside the context: CONTEXT/dev/zero, missing
      rmSync(join(dir, ".dockerignore"));
      // A symlink to a host file: followed inside the context only (its patterns are the context's).
      writeFileSync(join(dir, "real-ignore"), "*.md\n");
      symlinkSync("/real-ignore", join(dir, ".dockerignore"));
      expect(IgnoreRules.read(dir).ignores("a.md")).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

const CONTEXT_TS = join(import.meta.dir, "../../src/engine/build/context.ts");

/** CODE run in a child bun, killed after 10 s: a synchronous hang cannot stop this test runner. */
function inChild(code: string, what = "") {
  const r = spawnSync(process.execPath, ["-e", code], { encoding: "utf8", timeout: 10_000 });
  if (r.error) return { error: `${what}: ${r.error.message}`, stdout: r.stdout };
  return {
    error: r.status === 0 ? undefined : `${what}: exit ${r.status}: ${r.stderr}`,
    stdout: r.stdout,
  };
}

describe("config-only instructions", () => {
  const inst = (text: string) => parseDockerfile(`FROM x\n${text}\n`).instructions[1]!;
  const lookup = vars({ PORT: "8080" });
  const sh = ["/bin/sh", "-c"];

  test("ENV keeps the order and moves a changed variable to the end", () => {
    const c = configChange(inst("ENV A=2 C=3"), { Env: ["A=1", "B=1"] }, lookup, sh);
    expect(c.Env).toEqual(["B=1", "A=2", "C=3"]);
  });

  test("EXPOSE: ports, protocols, ranges, variables; bad ports refused", () => {
    expect(
      configChange(inst("EXPOSE $PORT 53/UDP 7000-7002/tcp"), {}, lookup, sh).ExposedPorts,
    ).toEqual({
      "8080/tcp": {},
      "53/udp": {},
      "7000/tcp": {},
      "7001/tcp": {},
      "7002/tcp": {},
    });
    expect(() => configChange(inst("EXPOSE http"), {}, lookup, sh)).toThrow(/invalid port "http"/);
    expect(() => configChange(inst("EXPOSE 70000"), {}, lookup, sh)).toThrow(/invalid port range/);
  });

  test("CMD and ENTRYPOINT: the exec form as is, the shell form through the shell", () => {
    expect(configChange(inst('CMD ["a", "$PORT"]'), {}, lookup, sh).Cmd).toEqual(["a", "$PORT"]);
    expect(configChange(inst("ENTRYPOINT exec app $PORT"), {}, lookup, sh).Entrypoint).toEqual([
      "/bin/sh",
      "-c",
      "exec app $PORT",
    ]);
  });

  test("VOLUME: the JSON form or words; LABEL merges; USER expands", () => {
    expect(configChange(inst('VOLUME ["/a", "/b c"]'), {}, lookup, sh).Volumes).toEqual({
      "/a": {},
      "/b c": {},
    });
    expect(
      configChange(inst("VOLUME /x /y"), { Volumes: { "/a": {} } }, lookup, sh).Volumes,
    ).toEqual({
      "/a": {},
      "/x": {},
      "/y": {},
    });
    expect(configChange(inst("LABEL b=2"), { Labels: { a: "1" } }, lookup, sh).Labels).toEqual({
      a: "1",
      b: "2",
    });
    expect(configChange(inst("USER app:$PORT"), {}, lookup, sh).User).toBe("app:8080");
  });
});

describe("HEALTHCHECK", () => {
  const inst = (text: string) => parseDockerfile(`FROM x\n${text}\n`).instructions[1]!;
  const hc = (text: string) =>
    configChange(inst(text), {}, vars({}), ["/bin/sh", "-c"]).Healthcheck;

  test("the shell form is one CMD-SHELL string, not expanded; the exec form is CMD", () => {
    expect(hc("HEALTHCHECK CMD wget -q -O- http://localhost:$PORT/ || exit 1")).toEqual({
      Test: ["CMD-SHELL", "wget -q -O- http://localhost:$PORT/ || exit 1"],
    });
    expect(hc('healthcheck cmd ["/bin/check", "--fast"]')).toEqual({
      Test: ["CMD", "/bin/check", "--fast"],
    });
    expect(hc("HEALTHCHECK NONE")).toEqual({ Test: ["NONE"] });
    // Docker ignores the options of NONE.
    expect(hc("HEALTHCHECK --interval=5s NONE")).toEqual({ Test: ["NONE"] });
  });

  test("options: Go durations in nanoseconds, retries; zero values stay unset", () => {
    expect(
      hc(
        "HEALTHCHECK --interval=1m30s --timeout=1.5s --start-period=500ms --start-interval=2s --retries=4 \\\n  CMD true",
      ),
    ).toEqual({
      Test: ["CMD-SHELL", "true"],
      Interval: 90_000_000_000,
      Timeout: 1_500_000_000,
      StartPeriod: 500_000_000,
      StartInterval: 2_000_000_000,
      Retries: 4,
    });
    expect(hc("HEALTHCHECK --interval=0s --retries=0 CMD true")).toEqual({
      Test: ["CMD-SHELL", "true"],
    });
  });

  test("bad forms and values are errors that say what to write", () => {
    expect(() => hc("HEALTHCHECK")).toThrow(/needs CMD and a command, or NONE/);
    expect(() => hc("HEALTHCHECK CMD")).toThrow(/missing command after HEALTHCHECK CMD/);
    expect(() => hc("HEALTHCHECK CMD []")).toThrow(/missing command after HEALTHCHECK CMD/);
    expect(() => hc("HEALTHCHECK RUN true")).toThrow(
      /unknown type "RUN" in HEALTHCHECK \(try CMD\)/,
    );
    expect(() => hc("HEALTHCHECK NONE x")).toThrow(/NONE takes no arguments/);
    expect(() => hc("HEALTHCHECK --interval=5 CMD true")).toThrow(
      /--interval: invalid duration "5"/,
    );
    expect(() => hc("HEALTHCHECK --timeout=-1s CMD true")).toThrow(/--timeout cannot be negative/);
    expect(() => hc("HEALTHCHECK --interval=10us CMD true")).toThrow(/cannot be less than 1ms/);
    expect(() => hc("HEALTHCHECK --retries=-1 CMD true")).toThrow(/--retries cannot be negative/);
    expect(() => hc("HEALTHCHECK --retries=x CMD true")).toThrow(/--retries: invalid number/);
  });
});

describe("Go durations and quoting (health-config.ts)", () => {
  test("parseGoDuration reads Go's syntax; formatGoDuration writes Duration.String()", () => {
    expect(parseGoDuration("1h2m3.5s")).toBe(3_723_500_000_000);
    expect(parseGoDuration("0")).toBe(0);
    expect(parseGoDuration(".5s")).toBe(500_000_000);
    expect(parseGoDuration("10µs")).toBe(10_000);
    expect(parseGoDuration("5")).toBeNull();
    expect(parseGoDuration("1d")).toBeNull();
    expect(parseGoDuration("")).toBeNull();
    const shown = [0, 1500, 2_500_000, 3e9, 300e9, 3600e9, 1_500_000_000].map(formatGoDuration);
    expect(shown).toEqual(["0s", "1.5µs", "2.5ms", "3s", "5m0s", "1h0m0s", "1.5s"]);
  });

  test("the history text is Go's %q of the config, as Docker's classic builder writes it", () => {
    expect(
      healthHistoryText({
        Test: ["CMD-SHELL", 'curl -f "http://x/" || exit 1'],
        Interval: 300e9,
        Timeout: 3e9,
        Retries: 3,
      }),
    ).toBe(
      'HEALTHCHECK &{["CMD-SHELL" "curl -f \\"http://x/\\" || exit 1"] "5m0s" "3s" "0s" "0s" \'\\x03\'}',
    );
    expect(healthHistoryText({ Test: ["NONE"] })).toBe(
      'HEALTHCHECK &{["NONE"] "0s" "0s" "0s" "0s" \'\\x00\'}',
    );
    expect(goQuote("a\tb\u0001é")).toBe('"a\\tb\\x01é"');
    expect(goQuoteRune(65)).toBe("'A'");
  });

  test("a container's options override its image's field by field; NONE means none", () => {
    const image = { Test: ["CMD-SHELL", "img"], Interval: 5e9, Retries: 2 };
    expect(mergeHealthcheck({ Interval: 1e9 }, image)).toEqual({
      Test: ["CMD-SHELL", "img"],
      Interval: 1e9,
      Retries: 2,
    });
    expect(effectiveHealthcheck({ Test: ["CMD-SHELL", "mine"] }, image)).toEqual({
      Test: ["CMD-SHELL", "mine"],
      Interval: 5e9,
      Retries: 2,
    });
    expect(effectiveHealthcheck({ Test: ["NONE"] }, image)).toBeNull();
    expect(effectiveHealthcheck(undefined, { Test: ["NONE"] })).toBeNull();
    expect(effectiveHealthcheck(undefined, undefined)).toBeNull();
  });
});
