// `pivot inspect NAME` as Docker's: NAME is looked up as a container, then an image, a volume and
// a network, the first found answering (`--type` names the kind to look for instead).
import type { Engine } from "../engine/engine.ts";
import { EngineError } from "../engine/errors.ts";
import { dockerVolume } from "../engine/volumes.ts";
import { ImageNotFoundError, InvalidReferenceError } from "../image/errors.ts";
import { UsageError } from "./args.ts";
import type { InspectKind } from "./inspect-format.ts";

const KINDS: readonly InspectKind[] = ["container", "image", "volume", "network"];

/** The object named `ref` of `kind`, or null if there is none of that kind. */
async function lookup(engine: Engine, ref: string, kind: InspectKind): Promise<unknown | null> {
  switch (kind) {
    case "container":
      try {
        engine.resolveId(ref);
      } catch (err) {
        // Missing, not ambiguous ("matches 2 containers"): that error is the answer.
        if (err instanceof EngineError && err.message.startsWith("no such container")) return null;
        throw err;
      }
      return engine.inspectDocker(ref);
    case "image":
      try {
        // Loaded only when a name is no container's: `inspect CONTAINER` stays a short command.
        const { inspectImage } = await import("../engine/images.ts");
        return await inspectImage(engine, ref);
      } catch (err) {
        if (err instanceof ImageNotFoundError || err instanceof InvalidReferenceError) return null;
        throw err;
      }
    case "volume":
      return engine.listVolumes().some((v) => v.name === ref)
        ? dockerVolume(engine.inspectVolume(ref))
        : null;
    case "network": {
      const manager = engine.networks;
      return manager.store.find(ref) ? manager.inspectNetwork(ref) : null;
    }
  }
}

export async function inspectAny(
  engine: Engine,
  ref: string,
  type: string | undefined,
): Promise<{ kind: InspectKind; object: unknown }> {
  if (type !== undefined && !(KINDS as readonly string[]).includes(type)) {
    throw new UsageError(`--type ${type}: not a kind of object`, {
      hint: `use ${KINDS.join(", ")}`,
    });
  }
  for (const kind of type === undefined ? KINDS : [type as InspectKind]) {
    const object = await lookup(engine, ref, kind);
    if (object !== null) return { kind, object };
  }
  throw new EngineError(`no such ${type ?? "object"}: ${ref}`, {
    hint:
      type === undefined
        ? "no container, image, volume or network has that name or id (`pivot ps -a`, `pivot images`, `pivot volume ls`, `pivot network ls`)"
        : `\`pivot ${type === "container" ? "ps -a" : type === "image" ? "images" : `${type} ls`}\` lists them`,
  });
}
