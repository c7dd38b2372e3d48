// Overlay's attribute names, apart from the layer unpacker (unpack.ts) so that what only mounts or
// reads layers (overlay.ts, layer-lookup.ts: `pivot run`) does not load it, zlib and tar included.
import { overlayXattrPrefix } from "../runtime/userns.ts";

/** The opaque marker's name here: trusted.overlay.opaque for root, user.* rootless (userns.ts). */
export function overlayOpaqueXattr(): string {
  return `${overlayXattrPrefix()}opaque`;
}
