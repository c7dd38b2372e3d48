// The CNI version Pivot speaks and where it looks for plugins: the network definitions need them
// without cni.ts, which is loaded only to run plugins.

/** The plugin directories tried, in order: Debian's containernetworking-plugins, then upstream's. */
export const DEFAULT_CNI_PATH = ["/usr/lib/cni", "/opt/cni/bin"];
export const CNI_VERSION = "1.0.0";
