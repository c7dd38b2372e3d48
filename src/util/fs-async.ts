// node:fs/promises's functions, the module loaded on the first call: importing it costs ~2.4 ms of
// start-up under Bun (it brings Bun's async wrappers), which every `pivot` command paid, while
// `pivot run` of an image already in the store calls none of them. Import these instead.
import { lazyRequire } from "./lazy-require.ts";

type Fsp = typeof import("node:fs/promises");
const fsp = lazyRequire<Fsp>("node:fs/promises");

/** `name` of node:fs/promises with its own type (overloads included), loaded on first call. */
function lazy<K extends keyof Fsp>(name: K): Fsp[K] {
  return ((...args: unknown[]) => (fsp()[name] as (...a: unknown[]) => unknown)(...args)) as Fsp[K];
}

export const chmod = lazy("chmod");
export const chown = lazy("chown");
export const lchown = lazy("lchown");
export const link = lazy("link");
export const lstat = lazy("lstat");
export const lutimes = lazy("lutimes");
export const mkdir = lazy("mkdir");
export const mkdtemp = lazy("mkdtemp");
export const open = lazy("open");
export const readFile = lazy("readFile");
export const readdir = lazy("readdir");
export const readlink = lazy("readlink");
export const realpath = lazy("realpath");
export const rename = lazy("rename");
export const rm = lazy("rm");
export const stat = lazy("stat");
export const symlink = lazy("symlink");
export const unlink = lazy("unlink");
export const utimes = lazy("utimes");
export const writeFile = lazy("writeFile");
