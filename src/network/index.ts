// Pivot's networking: CNI plugins (bridge, host-local, portmap, firewall, loopback) driven from
// TypeScript, network definitions, container attachments, hosts/resolv.conf, published ports.
export {
  type Attachment,
  type AttachmentInfo,
  type ConnectOptions,
  cniPluginsInstalled,
  hostResolvConf,
  type NetworkInspect,
  NetworkManager,
  type SandboxOptions,
} from "./attach.ts";
export {
  addNetworkList,
  CNI_VERSION,
  CniError,
  type CniResult,
  checkNetworkList,
  DEFAULT_CNI_PATH,
  delNetworkList,
  invokePlugin,
  type NetworkConfList,
  type PluginConf,
  type RuntimeConf,
} from "./cni.ts";
export { hostsContent, parseAddHost, type ResolvOptions, resolvConfContent } from "./dnsfiles.ts";
export {
  type CreateNetworkOptions,
  DEFAULT_SETTINGS,
  type NetworkDef,
  NetworkError,
  type NetworkSettings,
  NetworkStore,
} from "./networks.ts";
export {
  formatMapping,
  freeHostPort,
  PortError,
  type PortMapping,
  type Protocol,
  parsePublish,
} from "./ports.ts";
