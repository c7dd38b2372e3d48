// `pivot history`: the rows of an image's history (pure).
import { describe, expect, test } from "bun:test";
import { imageHistory } from "../../src/image/history.ts";
import type { ImageConfig } from "../../src/image/types.ts";

const base = (history?: ImageConfig["history"]): ImageConfig => ({
  architecture: "amd64",
  os: "linux",
  created: "2026-01-02T00:00:00Z",
  rootfs: { type: "layers", diff_ids: ["sha256:a", "sha256:b"] },
  ...(history ? { history } : {}),
});

describe("imageHistory", () => {
  test("newest first; empty-layer entries are 0 bytes; made layers take the sizes in order", () => {
    const rows = imageHistory(
      "sha256:img",
      base([
        { created: "2026-01-01T00:00:00Z", created_by: "ADD rootfs.tar /" },
        { created: "2026-01-01T00:00:01Z", created_by: "ENV A=1", empty_layer: true },
        { created: "2026-01-01T00:00:02Z", created_by: "RUN make", comment: "built" },
        { created: "2026-01-01T00:00:03Z", created_by: 'CMD ["sh"]', empty_layer: true },
      ]),
      [1000, 20],
    );
    expect(rows.map((r) => [r.id, r.createdBy, r.size, r.comment])).toEqual([
      ["sha256:img", 'CMD ["sh"]', 0, ""],
      ["<missing>", "RUN make", 20, "built"],
      ["<missing>", "ENV A=1", 0, ""],
      ["<missing>", "ADD rootfs.tar /", 1000, ""],
    ]);
  });

  test("without a recorded history: one row per layer, at the image's creation", () => {
    const rows = imageHistory("sha256:img", base(), [1000, 20]);
    expect(rows.map((r) => [r.id, r.size, r.created])).toEqual([
      ["sha256:img", 20, "2026-01-02T00:00:00Z"],
      ["<missing>", 1000, "2026-01-02T00:00:00Z"],
    ]);
  });
});
