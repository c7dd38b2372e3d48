import { describe, expect, test } from "bun:test";
import { InvalidReferenceError } from "../../src/image/errors.ts";
import {
  familiarName,
  familiarString,
  formatReference,
  parseNamed,
  parseReference,
  withTag,
} from "../../src/image/reference.ts";

const D = `sha256:${"a".repeat(64)}`;

describe("parseReference normalization", () => {
  const cases: [string, string, string, string, string | undefined, string | undefined][] = [
    // input, full form, domain, path, tag, digest
    [
      "busybox",
      "docker.io/library/busybox:latest",
      "docker.io",
      "library/busybox",
      "latest",
      undefined,
    ],
    [
      "busybox:1.36",
      "docker.io/library/busybox:1.36",
      "docker.io",
      "library/busybox",
      "1.36",
      undefined,
    ],
    [
      "library/busybox",
      "docker.io/library/busybox:latest",
      "docker.io",
      "library/busybox",
      "latest",
      undefined,
    ],
    [
      "docker.io/busybox",
      "docker.io/library/busybox:latest",
      "docker.io",
      "library/busybox",
      "latest",
      undefined,
    ],
    [
      "index.docker.io/busybox",
      "docker.io/library/busybox:latest",
      "docker.io",
      "library/busybox",
      "latest",
      undefined,
    ],
    [
      "index.docker.io/alice/app:v1",
      "docker.io/alice/app:v1",
      "docker.io",
      "alice/app",
      "v1",
      undefined,
    ],
    ["alice/app", "docker.io/alice/app:latest", "docker.io", "alice/app", "latest", undefined],
    [
      "alice/team/app",
      "docker.io/alice/team/app:latest",
      "docker.io",
      "alice/team/app",
      "latest",
      undefined,
    ],
    ["localhost/app", "localhost/app:latest", "localhost", "app", "latest", undefined],
    ["localhost:5000/app:dev", "localhost:5000/app:dev", "localhost:5000", "app", "dev", undefined],
    ["registry:5000/app", "registry:5000/app:latest", "registry:5000", "app", "latest", undefined],
    [
      "quay.io/coreos/etcd",
      "quay.io/coreos/etcd:latest",
      "quay.io",
      "coreos/etcd",
      "latest",
      undefined,
    ],
    ["192.168.1.1:5000/a/b:c", "192.168.1.1:5000/a/b:c", "192.168.1.1:5000", "a/b", "c", undefined],
    ["[::1]:5000/app", "[::1]:5000/app:latest", "[::1]:5000", "app", "latest", undefined],
    [
      "Registry.Example/app",
      "Registry.Example/app:latest",
      "Registry.Example",
      "app",
      "latest",
      undefined,
    ],
    [
      "busybox:5000",
      "docker.io/library/busybox:5000",
      "docker.io",
      "library/busybox",
      "5000",
      undefined,
    ],
    [
      `busybox@${D}`,
      `docker.io/library/busybox@${D}`,
      "docker.io",
      "library/busybox",
      undefined,
      D,
    ],
    [`busybox:1@${D}`, `docker.io/library/busybox:1@${D}`, "docker.io", "library/busybox", "1", D],
    [`quay.io:443/a/b@${D}`, `quay.io:443/a/b@${D}`, "quay.io:443", "a/b", undefined, D],
    [
      "a-b__c_d/e.f--g",
      "docker.io/a-b__c_d/e.f--g:latest",
      "docker.io",
      "a-b__c_d/e.f--g",
      "latest",
      undefined,
    ],
    [
      "app:Tag_1.x-Y",
      "docker.io/library/app:Tag_1.x-Y",
      "docker.io",
      "library/app",
      "Tag_1.x-Y",
      undefined,
    ],
  ];
  for (const [input, full, domain, path, tag, digest] of cases) {
    test(input, () => {
      const ref = parseReference(input);
      expect(formatReference(ref)).toBe(full);
      expect(ref.domain).toBe(domain);
      expect(ref.path).toBe(path);
      expect(ref.name).toBe(`${domain}/${path}`);
      expect(ref.tag).toBe(tag);
      expect(ref.digest).toBe(digest);
    });
  }

  test("defaultTag: false leaves the tag out", () => {
    expect(parseReference("busybox", { defaultTag: false }).tag).toBeUndefined();
    expect(formatReference(parseReference("busybox", { defaultTag: false }))).toBe(
      "docker.io/library/busybox",
    );
  });
});

describe("parseReference rejects", () => {
  const bad: [string, RegExp][] = [
    ["", /empty/],
    ["Busybox", /must be lowercase/],
    ["alice/App", /must be lowercase/],
    ["docker.io/Alice/app", /must be lowercase/],
    ["a".repeat(64), /image IDs/],
    ["busybox:", /invalid reference format/],
    ["busybox:-tag", /invalid reference format/],
    [`busybox:${"t".repeat(129)}`, /invalid reference format/],
    ["busybox@sha256:abc", /invalid reference format/],
    [`busybox@sha256:${"a".repeat(63)}`, /64 lowercase hex/],
    ["a.b_c/d", /registry "a.b_c" is not a valid host/],
    [`busybox@sha256:${"a".repeat(65)}`, /64 lowercase hex/],
    [`busybox@md5:${"a".repeat(32)}`, /unsupported algorithm/],
    ["busy box", /invalid reference format/],
    ["-busybox", /invalid reference format/],
    ["busybox-", /invalid reference format/],
    ["a//b", /invalid reference format/],
    ["a/b/", /invalid reference format/],
    ["a..b/c", /invalid reference format/],
    ["host:port/app", /invalid reference format/],
    ["localhost:/app", /invalid reference format/],
    [`x/${"a".repeat(260)}`, /limit is 255/],
  ];
  for (const [input, why] of bad) {
    test(JSON.stringify(input.length > 40 ? `${input.slice(0, 40)}…` : input), () => {
      let err: unknown;
      try {
        parseReference(input);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(InvalidReferenceError);
      expect((err as Error).message).toMatch(why);
      expect((err as Error).message).toContain(JSON.stringify(input));
      expect((err as Error).message).toContain("hint:");
    });
  }
});

describe("familiar forms", () => {
  const cases: [string, string, string][] = [
    ["busybox", "busybox", "busybox:latest"],
    ["docker.io/library/busybox:1", "busybox", "busybox:1"],
    ["alice/app", "alice/app", "alice/app:latest"],
    ["docker.io/library/a/b", "library/a/b", "library/a/b:latest"],
    ["localhost:5000/app", "localhost:5000/app", "localhost:5000/app:latest"],
    [`quay.io/a/b@${D}`, "quay.io/a/b", `quay.io/a/b@${D}`],
  ];
  for (const [input, name, str] of cases) {
    test(input, () => {
      const ref = parseReference(input);
      expect(familiarName(ref)).toBe(name);
      expect(familiarString(ref)).toBe(str);
      // The familiar string normalizes back to the same reference.
      expect(formatReference(parseReference(familiarString(ref)))).toBe(formatReference(ref));
    });
  }
});

describe("parseNamed (canonical only)", () => {
  test("accepts canonical", () => {
    expect(parseNamed("docker.io/library/busybox:latest").tag).toBe("latest");
    expect(parseNamed(`quay.io/a/b@${D}`).digest).toBe(D);
  });
  test("rejects familiar forms and names the canonical one", () => {
    expect(() => parseNamed("busybox")).toThrow(/docker.io\/library\/busybox/);
    expect(() => parseNamed("docker.io/busybox:1")).toThrow(/not in canonical form/);
    expect(() => parseNamed("index.docker.io/library/busybox:1")).toThrow(InvalidReferenceError);
  });
});

test("withTag replaces tag and drops digest", () => {
  const ref = withTag(parseReference(`busybox:1@${D}`), "2");
  expect(formatReference(ref)).toBe("docker.io/library/busybox:2");
  expect(() => withTag(ref, "bad tag")).toThrow(InvalidReferenceError);
});

describe("one-component names take a shorter path to the same result", () => {
  // parseReference reads `busybox` and `debian:12` without the full grammar; the written-out
  // form (docker.io/library/NAME) always goes through it: both must agree, errors included.
  const inputs = [
    "busybox",
    "bb:latest",
    "debian:12",
    "a",
    "a.b_c__d---e",
    "x9:Tag_1.2-rc",
    `name:${"t".repeat(128)}`,
    `name:${"t".repeat(129)}`,
    "Busybox",
    "a..b",
    "a-",
    "_a",
    "a:-tag",
    "a:",
    `${"a".repeat(64)}`,
    `${"f".repeat(64)}`,
    `${"a".repeat(240)}`,
  ];
  const outcome = (f: () => unknown) => {
    try {
      return { ok: f() };
    } catch {
      return { error: true };
    }
  };
  for (const input of inputs) {
    test(JSON.stringify(input.length > 40 ? `${input.slice(0, 40)}…` : input), () => {
      for (const defaultTag of [true, false]) {
        const short = outcome(() => parseReference(input, { defaultTag }));
        const full = outcome(() => parseReference(`docker.io/library/${input}`, { defaultTag }));
        // A 64-hex string is refused as a name, though its written-out form is a valid one.
        if (/^[a-f0-9]{64}$/.test(input)) expect(short).toEqual({ error: true });
        else expect(short).toEqual(full);
      }
    });
  }
});
