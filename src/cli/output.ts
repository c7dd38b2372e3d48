// The commands' output, on fd 1 and 2 without process.stdout and process.stderr (see
// util/write-fd.ts for why). Streams that need back-pressure (export, logs, cp) still use them.
import { writeAllSync } from "../util/write-fd.ts";

export const writeOut = (text: string): void => writeAllSync(1, text);
export const writeErr = (text: string): void => writeAllSync(2, text);
