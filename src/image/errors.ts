/**
 * Error classes of the image subsystem. Every error says what failed, on which
 * path or reference, why, and (in `hint`) what the user can do about it.
 */

export class ImageError extends Error {
  readonly hint: string | undefined;
  constructor(message: string, options: { hint?: string; cause?: unknown } = {}) {
    super(options.hint ? `${message}\n  hint: ${options.hint}` : message, {
      cause: options.cause,
    });
    this.name = new.target.name;
    this.hint = options.hint;
  }
}

/** An image reference (name:tag, name@digest) that does not parse. */
export class InvalidReferenceError extends ImageError {
  readonly reference: string;
  constructor(reference: string, reason: string, hint?: string) {
    super(`invalid image reference ${JSON.stringify(reference)}: ${reason}`, {
      hint:
        hint ??
        "references look like NAME[:TAG][@DIGEST], e.g. busybox, busybox:1.36, registry.example:5000/team/app@sha256:<64 hex>",
    });
    this.reference = reference;
  }
}

/** A string that is not a valid content digest. */
export class InvalidDigestError extends ImageError {
  readonly digest: string;
  constructor(digest: string, reason: string) {
    super(`invalid digest ${JSON.stringify(digest)}: ${reason}`, {
      hint: "digests look like sha256:<64 lowercase hex characters>",
    });
    this.digest = digest;
  }
}

/** Content whose digest or size is not the one it was announced with. */
export class DigestMismatchError extends ImageError {
  readonly expected: string;
  readonly actual: string;
  readonly what: string;
  constructor(what: string, expected: string, actual: string, hint?: string) {
    super(`${what}: digest mismatch: expected ${expected}, got ${actual}`, {
      hint:
        hint ??
        "the content is corrupt or was tampered with; fetch or export the image again from a trusted source",
    });
    this.what = what;
    this.expected = expected;
    this.actual = actual;
  }
}

/** A blob the store does not have. */
export class BlobNotFoundError extends ImageError {
  readonly digest: string;
  constructor(digest: string, root: string) {
    super(`blob ${digest} is not in the image store at ${root}`, {
      hint: "load or pull the image that contains it again",
    });
    this.digest = digest;
  }
}

/** An image name, tag, digest or ID that matches nothing in the store. */
export class ImageNotFoundError extends ImageError {
  readonly reference: string;
  constructor(reference: string, root: string) {
    super(`image ${JSON.stringify(reference)} not found in the image store at ${root}`, {
      hint: "list images with `pivot images`; load one with `pivot load` or `pivot import`",
    });
    this.reference = reference;
  }
}

/** A short image ID prefix that matches more than one image. */
export class AmbiguousImageError extends ImageError {
  constructor(prefix: string, matches: string[]) {
    super(`image ID prefix ${JSON.stringify(prefix)} matches ${matches.length} images`, {
      hint: "give more characters of the ID, or a name:tag",
    });
  }
}

/** Malformed image metadata (manifest, config, index, layout). */
export class InvalidImageError extends ImageError {
  readonly source: string;
  constructor(source: string, reason: string, hint?: string) {
    super(`${source}: ${reason}`, {
      hint: hint ?? "the image is malformed; re-export it with docker, podman or skopeo",
    });
    this.source = source;
  }
}

/**
 * A layer archive that cannot be unpacked. Names the archive and, when the
 * problem is with one member, the entry. The partly unpacked layer is removed
 * before this is thrown.
 */
export class LayerUnpackError extends ImageError {
  readonly archive: string;
  readonly entry: string | undefined;
  constructor(
    archive: string,
    entry: string | undefined,
    reason: string,
    options: { hint?: string; cause?: unknown } = {},
  ) {
    const where = entry === undefined ? archive : `${archive}, entry ${JSON.stringify(entry)}`;
    super(`cannot unpack layer ${where}: ${reason}`, {
      hint:
        options.hint ??
        "the layer archive is malformed or hostile; nothing of it was kept. Re-export the image from a trusted source",
      cause: options.cause,
    });
    this.archive = archive;
    this.entry = entry;
  }
}

/** An OverlayFS mount or unmount that failed. */
export class OverlayError extends ImageError {
  readonly target: string;
  constructor(target: string, reason: string, hint?: string) {
    super(`overlay ${target}: ${reason}`, hint ? { hint } : {});
    this.target = target;
  }
}

/** An external helper program (mknod, setfattr, mount) that is missing or failed. */
export class HelperError extends ImageError {
  readonly command: string;
  constructor(command: string, reason: string, hint?: string) {
    super(`${command}: ${reason}`, hint ? { hint } : {});
    this.command = command;
  }
}
