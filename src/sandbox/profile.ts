import { posix } from 'node:path';
import type { SandboxPolicy } from '../policy/types.ts';

/** Inside the sandbox: where the run's sockets and MCP config are mounted (read-only). */
export const SANDBOX_RUN_DIR = '/run/warden';
/** Inside the sandbox: the private HOME (a host directory of the run's own). */
export const SANDBOX_HOME = '/home/agent';
export const GATEWAY_SOCKET = 'gateway.sock';
export const PROXY_SOCKET = 'proxy.sock';
export const MCP_CONFIG_FILE = 'mcp.json';

/** What a path on the host is, as far as hiding it goes. */
export type PathKind = 'dir' | 'file' | 'missing';

export interface ProfileInput {
  sandbox: SandboxPolicy;
  workspace: string;
  /** Host directories of this run: its sockets and MCP config, its HOME, its /tmp. */
  runDir: string;
  homeDir: string;
  tmpDir: string;
  /** The host user's home, for `~/` in the policy and to hide it. */
  hostHome: string;
  /** Warden's own files: database (and its -wal, -shm), policy. */
  wardenFiles: readonly string[];
  /** Loopback port the gateway answers on inside the sandbox (the same as Warden's). */
  gatewayPort: number;
  proxyPort: number;
  /** Resolves symlinks and says what is there; injected so the builder stays pure. */
  inspect: (path: string) => { real: string; kind: PathKind };
  socat: string;
  /** Host directories kept readable even where they lie in a hidden place (Warden's own installation). */
  readable?: readonly string[] | undefined;
}

/** Files in Warden's installation that hold an operator's secrets (SLACK_BOT_TOKEN, a database URL with its password). */
const SECRET_FILE_NAMES = [
  '.env',
  '.env.local',
  '.env.production',
  '.env.production.local',
  '.env.development',
  '.env.development.local',
];

/** Homes hidden whatever the policy says: every credential file (~/.ssh, ~/.aws, ~/.config, …) lives in one. */
const ALWAYS_HIDDEN_DIRS = ['/root', '/home', '/run', '/var/run', '/media', '/mnt'];

export function expandHome(path: string, hostHome: string): string {
  if (path === '~') return hostHome;
  return path.startsWith('~/') ? posix.join(hostHome, path.slice(2)) : path;
}

function isUnder(path: string, dir: string): boolean {
  return path === dir || path.startsWith(dir.endsWith('/') ? dir : `${dir}/`);
}

interface MountInput {
  sandbox: SandboxPolicy;
  hostHome: string;
  wardenFiles: readonly string[];
  inspect: ProfileInput['inspect'];
  /** Bound read-write (source, destination), after the hiding and before Warden's files are hidden. */
  binds: ReadonlyArray<readonly [string, string]>;
  /** Bound read-only (source, destination). */
  readOnlyBinds: ReadonlyArray<readonly [string, string]>;
  /** The directory the process works in (real path): Warden's files are hidden one by one rather than hide it. */
  keep: string;
  /** A fresh writable /tmp (gone at exit) under the binds, rather than a bound host directory. */
  privateTmp?: boolean | undefined;
  /** Bound read-only over the hiding (a writable bind inside one stays writable). */
  readable?: readonly string[] | undefined;
}

/**
 * The filesystem half of a sandbox. Order matters: bwrap applies mounts in
 * sequence, so the host is mounted read-only first, homes and /run are
 * hidden, the writable places are bound over that, and Warden's own files and
 * the policy's `read_deny` are hidden last, so that not even a workspace that
 * contains them shows them.
 */
function mountArgs(input: MountInput): string[] {
  const args = ['--ro-bind', '/', '/', '--dev', '/dev', '--proc', '/proc'];
  const tmpfs = new Set<string>();
  for (const dir of ALWAYS_HIDDEN_DIRS) {
    const seen = input.inspect(dir);
    if (seen.kind === 'dir') tmpfs.add(seen.real);
  }
  for (const dir of tmpfs) args.push('--tmpfs', dir);
  const hostHome = input.inspect(input.hostHome);
  const homeHidden = hostHome.kind === 'dir' && ![...tmpfs].some((dir) => isUnder(hostHome.real, dir));
  if (homeHidden) args.push('--tmpfs', hostHome.real);
  if (input.privateTmp) args.push('--tmpfs', '/tmp');

  for (const [source, dest] of input.binds) args.push('--bind', source, dest);
  for (const [source, dest] of input.readOnlyBinds) args.push('--ro-bind', source, dest);
  // Warden's installation may sit under a hidden home or /tmp (a checkout in ~/src, a CI
  // workspace): the code it runs (its fixtures, node_modules) must stay readable there.
  for (const path of input.readable ?? []) {
    const seen = input.inspect(path);
    if (seen.kind !== 'dir') continue;
    args.push('--ro-bind', seen.real, seen.real);
    for (const [source, dest] of input.binds) if (isUnder(dest, seen.real)) args.push('--bind', source, dest);
  }
  for (const path of input.sandbox.write) {
    const seen = input.inspect(expandHome(path, input.hostHome));
    if (seen.kind !== 'missing') args.push('--bind', seen.real, seen.real);
  }

  // Warden's files: their whole directory (a database has -wal and -shm beside it, and a
  // journal may come and go), unless that directory holds the workspace; then the files one by one.
  const hidden: string[] = [];
  for (const file of input.wardenFiles) {
    const dir = input.inspect(posix.dirname(file));
    if (dir.kind === 'dir' && dir.real !== '/' && !isUnder(input.keep, dir.real)) hidden.push(dir.real);
    else hidden.push(file);
  }
  hidden.push(...input.sandbox.readDeny.map((p) => expandHome(p, input.hostHome)));
  // Warden's installation stays readable, but not the secrets an operator keeps beside it.
  for (const dir of input.readable ?? []) for (const name of SECRET_FILE_NAMES) hidden.push(posix.join(dir, name));
  for (const path of new Set(hidden)) {
    const seen = input.inspect(path);
    if (seen.kind === 'dir') {
      args.push('--tmpfs', seen.real);
      tmpfs.add(seen.real);
    } else if (seen.kind === 'file') args.push('--ro-bind', '/dev/null', seen.real);
  }
  // Hidden places are empty and read-only too (only now: the binds above needed mount points in them),
  // so a write there fails as it would anywhere outside the workspace instead of vanishing with the run.
  if (homeHidden) tmpfs.add(hostHome.real);
  for (const dir of tmpfs) args.push('--remount-ro', dir);
  return args;
}

/** What every sandbox (a run or an upstream) shares, before its mounts. */
const ISOLATION_ARGS: readonly string[] = [
  '--unshare-all',
  // A separate network namespace with loopback only: every byte out goes through Warden's sockets.
  '--unshare-net',
  '--die-with-parent',
  // No controlling terminal: the process cannot push keystrokes into the operator's shell (TIOCSTI).
  '--new-session',
  '--cap-drop',
  'ALL',
];

/**
 * The bubblewrap command line for one run.
 *
 * No secret goes on this command line (it shows in `ps`): the token travels in
 * the environment bwrap is started with.
 */
export function bwrapArgs(input: ProfileInput, command: readonly string[]): string[] {
  const workspace = input.inspect(input.workspace);
  return [
    ...ISOLATION_ARGS,
    // The sandbox's init pid, on fd 3: the supervisor signals the command (init's child) through it.
    '--info-fd',
    '3',
    ...mountArgs({
      sandbox: input.sandbox,
      hostHome: input.hostHome,
      wardenFiles: input.wardenFiles,
      inspect: input.inspect,
      binds: [
        [input.tmpDir, '/tmp'],
        [input.homeDir, SANDBOX_HOME],
        [workspace.real, workspace.real],
      ],
      readOnlyBinds: [[input.runDir, SANDBOX_RUN_DIR]],
      keep: workspace.real,
      readable: input.readable,
    }),
    '--chdir',
    workspace.real,
    '--',
    '/bin/sh',
    '-c',
    BRIDGE_SCRIPT,
    'warden-sandbox',
    input.socat,
    String(input.gatewayPort),
    String(input.proxyPort),
    ...command,
  ];
}

export interface UpstreamProfileInput {
  sandbox: SandboxPolicy;
  /** The server's `cwd`: the only host directory it may write. Absent: it writes only its private /tmp. */
  root: string | undefined;
  hostHome: string;
  wardenFiles: readonly string[];
  inspect: ProfileInput['inspect'];
  readable?: readonly string[] | undefined;
}

/**
 * bubblewrap for a stdio upstream (a third-party MCP server): no network at
 * all (its own namespace, nothing listening), writes only under its root and
 * a private /tmp that is gone when it exits, and the same hiding as a run.
 * Its stdin and stdout stay the JSON-RPC pipes to the gateway.
 */
export function upstreamBwrapArgs(input: UpstreamProfileInput, command: string, args: readonly string[]): string[] {
  const root = input.root === undefined ? undefined : input.inspect(input.root);
  return [
    ...ISOLATION_ARGS,
    ...mountArgs({
      sandbox: input.sandbox,
      hostHome: input.hostHome,
      wardenFiles: input.wardenFiles,
      inspect: input.inspect,
      binds: root ? [[root.real, root.real]] : [],
      readOnlyBinds: [],
      keep: root?.real ?? '/nonexistent',
      privateTmp: true,
      readable: input.readable,
    }),
    ...(root ? ['--chdir', root.real] : []),
    '--',
    command,
    ...args,
  ];
}

/**
 * Runs inside the sandbox: two socat listeners on loopback carry the gateway
 * port and the egress proxy out through the run's Unix sockets; once both
 * answer, the shell replaces itself with the agent's command (so signals and
 * the exit code are the command's own). Nothing else listens, so any other
 * loopback port is refused. (bwrap's own --die-with-parent was seen to leave
 * the sandbox running after its supervisor was SIGKILLed under load, hence
 * the lifeline on fd 4.)
 */
const BRIDGE_SCRIPT = `set -e
socat="$1"; gw="$2"; proxy="$3"; shift 3
# Dead man's switch: fd 4 is a socket whose other end only \`warden run\` holds. It reads EOF when
# that process is gone, however it died, and then nothing in here may live on unsupervised.
( while read -r _; do :; done; kill -KILL -1 ) <&4 2>/dev/null &
"$socat" TCP-LISTEN:"$gw",bind=127.0.0.1,fork,reuseaddr UNIX-CONNECT:${SANDBOX_RUN_DIR}/${GATEWAY_SOCKET} 2>/dev/null 4<&- &
"$socat" TCP-LISTEN:"$proxy",bind=127.0.0.1,fork,reuseaddr UNIX-CONNECT:${SANDBOX_RUN_DIR}/${PROXY_SOCKET} 2>/dev/null 4<&- &
for port in "$gw" "$proxy"; do
  tries=0
  until "$socat" -u OPEN:/dev/null TCP:127.0.0.1:"$port" 2>/dev/null; do
    tries=$((tries + 1)); [ "$tries" -lt 500 ] || { echo "warden: sandbox network bridge did not start" >&2; exit 125; }
    sleep 0.01
  done
done
exec "$@" 4<&-`;

export interface EnvInput {
  sandbox: SandboxPolicy;
  host: NodeJS.ProcessEnv;
  wardenUrl: string;
  token: string;
  mcpConfigPath: string;
  proxyPort: number;
  tmp: string;
  home: string;
}

/** Passed through from the host when set; everything else of the host's environment stays outside. */
const BASE_ENV = ['PATH', 'LANG', 'TERM'] as const;

/** The whole environment of the agent: an allowlist, never the host's environment minus a denylist. */
export function sandboxEnv(input: EnvInput): Record<string, string> {
  const env: Record<string, string> = {};
  for (const name of [...BASE_ENV, ...input.sandbox.env]) {
    const value = input.host[name];
    if (value !== undefined) env[name] = value;
  }
  env.PATH ??= '/usr/local/bin:/usr/bin:/bin';
  const proxy = `http://127.0.0.1:${input.proxyPort}`;
  Object.assign(env, {
    HOME: input.home,
    TMPDIR: input.tmp,
    HTTP_PROXY: proxy,
    HTTPS_PROXY: proxy,
    http_proxy: proxy,
    https_proxy: proxy,
    ALL_PROXY: proxy,
    all_proxy: proxy,
    NO_PROXY: '127.0.0.1,localhost',
    no_proxy: '127.0.0.1,localhost',
    WARDEN_URL: input.wardenUrl,
    WARDEN_AGENT_TOKEN: input.token,
    WARDEN_MCP_CONFIG: input.mcpConfigPath,
  });
  return env;
}

/** The generated MCP client config (Claude Code / Claude Desktop `mcpServers` shape): Warden is the only server. */
export function mcpClientConfig(wardenUrl: string, token: string): string {
  return `${JSON.stringify(
    { mcpServers: { warden: { type: 'http', url: wardenUrl, headers: { Authorization: `Bearer ${token}` } } } },
    null,
    2,
  )}\n`;
}

/**
 * `$WARDEN_MCP_CONFIG` and `$WARDEN_URL` (or `${…}`) in the command's arguments,
 * written in single quotes so the operator's shell leaves them alone, become
 * the run's values: the command is exec'd without a shell, so nothing else
 * would expand them. The token is never expanded: arguments show in `ps`.
 */
export function expandRunArgs(command: readonly string[], values: { mcpConfig: string; url: string }): string[] {
  return command.map((arg) =>
    arg.replace(
      /\$(?:\{(WARDEN_MCP_CONFIG|WARDEN_URL)\}|(WARDEN_MCP_CONFIG|WARDEN_URL)(?![A-Za-z0-9_]))/g,
      (_m, a, b) => ((a ?? b) === 'WARDEN_URL' ? values.url : values.mcpConfig),
    ),
  );
}
