// Registries: pull and push over the OCI distribution API, login and logout.
export {
  type Challenge,
  type CredentialOptions,
  type Credentials,
  credentialFiles,
  dockerConfigFile,
  getCredentials,
  parseChallenges,
  pivotAuthFile,
} from "./auth.ts";
export {
  type ClientOptions,
  type ManifestResponse,
  RegistryClient,
  type RetryOptions,
} from "./client.ts";
export {
  ManifestTooLargeError,
  RateLimitError,
  RegistryAuthError,
  RegistryConnectionError,
  RegistryError,
  RegistryNotFoundError,
  TruncatedStreamError,
  UnsupportedMediaTypeError,
} from "./errors.ts";
export { type RegistryEndpoint, type RegistryHostOptions, resolveEndpoint } from "./hosts.ts";
export { type LoginOptions, login, logout, normalizeRegistry } from "./login.ts";
export {
  formatPlatform,
  MAX_MANIFEST_SIZE,
  normalizePlatform,
  parseManifest,
  parsePlatform,
  selectManifest,
} from "./manifest.ts";
export {
  createProgress,
  LineProgress,
  type ProgressReporter,
  QuietProgress,
  TtyProgress,
} from "./progress.ts";
export { type PullOptions, type PullResult, pullImage } from "./pull.ts";
export {
  type IndexEntry,
  type PushOptions,
  type PushResult,
  pushImage,
  pushIndex,
} from "./push.ts";
