// `pivot history IMAGE`: an image's layers, newest first, as `docker history` lists them: one row
// per entry of the config's history (empty-layer entries, ENV, CMD..., have size 0), each made
// layer matched in order to the next layer of rootfs.diff_ids; the top row carries the image's
// id, the others "<missing>" (their intermediate images do not exist here, as after a pull).
import type { ImageConfig } from "./types.ts";

export interface HistoryRow {
  /** The image's id on the newest row, else "<missing>". */
  id: string;
  created: string;
  createdBy: string;
  /** Uncompressed bytes of the layer the entry made; 0 for an empty layer. */
  size: number;
  comment: string;
}

/** LAYER_SIZES: the uncompressed size of each layer of rootfs.diff_ids, in order. */
export function imageHistory(
  imageId: string,
  config: ImageConfig,
  layerSizes: readonly number[],
): HistoryRow[] {
  const entries = config.history?.length
    ? config.history
    : // No history recorded (an imported tarball, some builders): one row per layer.
      layerSizes.map(() => ({ created: config.created }));
  let layer = 0;
  const rows = entries.map((h) => {
    const empty = "empty_layer" in h && h.empty_layer === true;
    const size = empty ? 0 : (layerSizes[layer++] ?? 0);
    return {
      id: "<missing>",
      created: h.created ?? "",
      createdBy: "created_by" in h ? (h.created_by ?? "") : "",
      size,
      comment: "comment" in h ? (h.comment ?? "") : "",
    };
  });
  rows.reverse();
  if (rows[0]) rows[0].id = imageId;
  return rows;
}
