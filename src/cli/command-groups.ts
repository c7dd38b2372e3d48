// The pivot CLI's command groups by name and usage text, apart from their code: `pivot` loads a
// group's code (images.ts, network.ts, registry.ts, and through them the image, network and
// registry libraries) only when one of its commands runs, which keeps `pivot run` starting fast.

export const IMAGE_COMMANDS = [
  "images",
  "image",
  "history",
  "tag",
  "rmi",
  "load",
  "save",
  "import",
  "system",
  "builder",
];

export const IMAGE_USAGE = `images:
  build [-t NAME[:TAG]] [-f DOCKERFILE|-] [--build-arg K=V] [--target STAGE]
        [--network bridge|none|host|NAME] [--no-cache] [-q] CONTEXT
                               an image from a Dockerfile, each RUN in a container (network:
                               default bridge, as Docker; rootless: pasta or slirp4netns if
                               installed, else none); FROM takes local images only (no pull);
                               multi-stage with COPY --from; steps found in the build cache are
                               not run (" ---> Using cache"; --no-cache runs them all)
  images [-a] [-q] [--no-trunc] [--format table|json]   list images (REPOSITORY TAG IMAGE ID CREATED SIZE)
  image inspect [-f TEMPLATE] IMAGE...   details as JSON (or a Go template)
  history [--no-trunc] [-q] [-H=false] [--format table|json] IMAGE   its layers, newest first
  tag SOURCE TARGET            another name for an image
  rmi [-f] [--no-prune] IMAGE...   untag; remove the image with its last name (refused while a
                               container uses it, unless -f), then unused blobs and layers
  image prune [-a] [-f]        remove untagged images (-a: every image no container uses, and
                               the build cache)
  image gc                     remove blobs and layers that no image or container uses
  load [-i FILE] [-q]          images from a docker-archive, OCI archive or OCI layout (stdin: -)
  save [-o FILE] [--format docker-archive|oci-archive] IMAGE...   images as an archive
  import [-m MESSAGE] [-c CMD] TARBALL|- [REFERENCE]   a root filesystem tarball as an image
  system df [-v] [--format json]   disk used by images (shared and unique), containers, volumes,
                               the build cache
  system info                  store and run roots, rootless or not (and its id mappings), storage driver and why
  builder prune [-a] [-f]      the dangling build cache (-a: all of it); builder build = build
  image ls|rm|inspect|tag|history|prune|load|save|import|pull|push|build, system events:
                               Docker's longer names for the same commands
  system prune [-a] [--volumes] [-f]   stopped containers, unused networks, dangling (-a: unused)
                               images and build cache (-a: all of it), and with --volumes unused
                               anonymous volumes
`;

export const NETWORK_USAGE = `networks:
  network create [--subnet CIDR] [--gateway IP] [--internal] [--label K=V] NAME
  network ls [-q]                     network inspect NAME...
  network rm [-f] NAME...             network prune
  network connect [--alias A] [--ip IP] NETWORK CONTAINER
  network disconnect NETWORK CONTAINER
  run/create: --network NAME (bridge = the default network "pivot"), -p [IP:]HOSTPORT:PORT[/udp],
  --network-alias NAME, --ip IP
`;

export const REGISTRY_COMMANDS = ["pull", "push", "login", "logout"] as const;

export const REGISTRY_USAGE = `registries:
  pull [--platform OS/ARCH[/VARIANT]] [-q] IMAGE      pull an image (layers in parallel, unpacked as they arrive)
  push [-q] [--chunk-size BYTES] IMAGE [DESTINATION]  push an image from the store
  login [-u USER] [-p PASS | --password-stdin] [REGISTRY]   check and store credentials
  logout [REGISTRY]                                   remove stored credentials
  registry flags: --tls-verify=false (plain HTTP / unverified TLS for this registry),
  --authfile FILE (default ~/.config/pivot/auth.json, then ~/.docker/config.json),
  --creds USER:PASS, --cert-dir DIR (holds HOST:PORT/ca.crt)
`;

export const CONTAINER_USAGE = `  ps [-a] [-q] [--no-trunc] [--filter KEY=VALUE] [--format TEMPLATE]   list containers
                               (filters: status= name= label= ancestor= id= exited= before= since=;
                               format: '{{.ID}} {{.Names}}', 'table {{.ID}}\\t{{.Status}}', json)
  stats [--no-stream] [-a] [--format T] [CONTAINER...]   live CPU, memory, network, block I/O, pids
  top CONTAINER [PS OPTIONS]   the container's processes (ps -ef by default)
  pause CONTAINER... | unpause CONTAINER...   freeze and thaw every process of containers
  rename CONTAINER NEW_NAME    give a container another name
  healthcheck run CONTAINER    run its health check once and record it (exit 0 healthy, 1 not)
  update [--memory M] [--memory-swap M] [--cpus N] [--cpu-shares N] [--cpuset-cpus L]
         [--cpuset-mems L] [--pids-limit N] [--restart POLICY] CONTAINER...
                               new limits (at once if it runs) and restart policy
  container prune [-f] [--filter label=K[=V]]   remove every stopped container
  volume prune [-f] [-a] [--filter label=K[=V]]   remove unused anonymous (-a: and named) volumes`;
