import { lookup } from 'node:dns/promises';
import { createServer as createHttpServer, request as httpRequest, type Server as HttpServer } from 'node:http';
import { connect, createServer as createNetServer, isIP, type Server as NetServer, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { describeError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import { hostAllowed } from '../policy/index.ts';

/**
 * Whether `network.allow` lets the agent open host:port. An entry without a
 * port means the web ports (80, 443): an allowed API host is not an allowed
 * SSH or database host.
 */
export function egressAllowed(allow: readonly string[], host: string, port: number): boolean {
  return allow.some((entry) => {
    const m = /:(\d+)$/.exec(entry);
    const portOk = m ? Number(m[1]) === port : port === 443 || port === 80;
    return portOk && hostAllowed(entry, host);
  });
}

/**
 * Addresses an allowed name must never lead to: the host's loopback (other
 * local services; Warden's gateway has its own door), link-local (cloud
 * metadata endpoints hand out credentials) and the unspecified address. A
 * name that resolves to one of them is refused however it is listed.
 */
export function forbiddenAddress(address: string): boolean {
  const v4 = address.startsWith('::ffff:') ? address.slice(7) : address;
  if (isIP(v4) === 4) {
    const [a, b] = v4.split('.').map(Number) as [number, number];
    return a === 127 || a === 0 || (a === 169 && b === 254);
  }
  const v6 = address.toLowerCase();
  return v6 === '::1' || v6 === '::' || /^fe[89ab]/.test(v6);
}

function parseAuthority(authority: string | undefined): { host: string; port: number } | undefined {
  const m = /^\[?([^\]\s]+?)\]?:(\d{1,5})$/.exec(authority ?? '');
  if (!m) return undefined;
  const port = Number(m[2]);
  return port > 0 && port < 65_536 ? { host: m[1]!.toLowerCase(), port } : undefined;
}

export interface EgressProxyOptions {
  allow: readonly string[];
  /** Each refused destination, as `host:port`; the caller aggregates and audits. */
  onDenied: (destination: string, why: string) => void;
  logger: Logger;
}

/**
 * The run's only way out to the network: an HTTP proxy (CONNECT for TLS,
 * absolute URLs for plain HTTP) on a Unix socket that the sandbox reaches
 * through its loopback bridge. Names are resolved here, checked, and the
 * connection is made to the checked address, so a name cannot be re-pointed
 * between the check and the connect.
 */
export class EgressProxy {
  readonly #allow: readonly string[];
  readonly #onDenied: EgressProxyOptions['onDenied'];
  readonly #logger: Logger;
  readonly #server: HttpServer;
  readonly #sockets = new Set<Duplex>();

  constructor(options: EgressProxyOptions) {
    this.#allow = options.allow;
    this.#onDenied = options.onDenied;
    this.#logger = options.logger;
    this.#server = createHttpServer();
    this.#server.on('connect', (req, socket, head) => this.#tunnel(req.url, socket, head));
    this.#server.on('request', (req, res) => {
      let url: URL;
      try {
        url = new URL(req.url ?? '');
      } catch {
        res.writeHead(400, { 'content-type': 'text/plain' }).end('warden sandbox: expected a proxy request\n');
        return;
      }
      const port = url.port ? Number(url.port) : 80;
      const host = url.hostname.replace(/^\[|\]$/g, '').toLowerCase();
      if (url.protocol !== 'http:') {
        res.writeHead(400, { 'content-type': 'text/plain' }).end('warden sandbox: only http:// URLs or CONNECT\n');
        return;
      }
      void this.#resolve(host, port).then((address) => {
        if (address === undefined) {
          res
            .writeHead(403, { 'content-type': 'text/plain' })
            .end(`warden sandbox: egress to ${host}:${port} is not allowed by the policy\n`);
          return;
        }
        const upstream = httpRequest(
          { host: address, port, method: req.method, path: `${url.pathname}${url.search}`, headers: req.headers },
          (answer) => {
            res.writeHead(answer.statusCode ?? 502, answer.headers);
            answer.pipe(res);
          },
        );
        upstream.on('error', () => {
          if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
          res.end();
        });
        req.pipe(upstream);
      });
    });
  }

  listen(socketPath: string): Promise<void> {
    return listenOn(this.#server, socketPath);
  }

  close(): Promise<void> {
    for (const socket of this.#sockets) socket.destroy();
    return new Promise((resolve) => this.#server.close(() => resolve()));
  }

  #tunnel(authority: string | undefined, client: Duplex, head: Buffer): void {
    this.#sockets.add(client);
    client.on('close', () => this.#sockets.delete(client));
    client.on('error', () => client.destroy());
    const target = parseAuthority(authority);
    if (!target) {
      client.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
      return;
    }
    void this.#resolve(target.host, target.port).then((address) => {
      if (address === undefined) {
        const body = `warden sandbox: egress to ${target.host}:${target.port} is not allowed by the policy\n`;
        client.end(
          `HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
        );
        return;
      }
      const upstream: Socket = connect({ host: address, port: target.port });
      this.#sockets.add(upstream);
      upstream.on('close', () => this.#sockets.delete(upstream));
      upstream.once('connect', () => {
        client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
        if (head.length > 0) upstream.write(head);
        upstream.pipe(client);
        client.pipe(upstream);
      });
      upstream.on('error', (err) => {
        this.#logger.debug({ err: describeError(err), target: authority }, 'sandbox egress connection failed');
        if (upstream.connecting) client.end('HTTP/1.1 502 Bad Gateway\r\nConnection: close\r\n\r\n');
        else client.destroy();
      });
      client.on('close', () => upstream.destroy());
    });
  }

  /** The address to connect to, or undefined (after reporting the refusal). */
  async #resolve(host: string, port: number): Promise<string | undefined> {
    const destination = `${host}:${port}`;
    if (!egressAllowed(this.#allow, host, port)) {
      this.#onDenied(destination, 'not in sandbox.network.allow');
      return undefined;
    }
    let addresses: { address: string }[];
    try {
      addresses = isIP(host) ? [{ address: host }] : await lookup(host, { all: true });
    } catch (err) {
      this.#logger.debug({ err: describeError(err), host }, 'sandbox egress: name did not resolve');
      this.#onDenied(destination, 'name did not resolve');
      return undefined;
    }
    if (addresses.length === 0 || addresses.some((a) => forbiddenAddress(a.address))) {
      this.#onDenied(destination, 'resolves to a loopback or link-local address');
      return undefined;
    }
    return addresses[0]!.address;
  }
}

/**
 * The sandbox's door to Warden's gateway: a Unix socket whose every connection
 * is joined to the gateway's TCP port. It carries bytes only; the gateway
 * authenticates the run's token like any agent's.
 */
export class GatewayBridge {
  readonly #server: NetServer;
  readonly #sockets = new Set<Socket>();

  constructor(target: { host: string; port: number }) {
    this.#server = createNetServer((client) => {
      const upstream = connect({ host: target.host, port: target.port });
      for (const socket of [client, upstream]) {
        this.#sockets.add(socket);
        socket.on('close', () => this.#sockets.delete(socket));
        socket.on('error', () => {
          client.destroy();
          upstream.destroy();
        });
      }
      client.pipe(upstream).pipe(client);
    });
  }

  listen(socketPath: string): Promise<void> {
    return listenOn(this.#server, socketPath);
  }

  close(): Promise<void> {
    for (const socket of this.#sockets) socket.destroy();
    return new Promise((resolve) => this.#server.close(() => resolve()));
  }
}

function listenOn(server: NetServer, socketPath: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => {
      server.off('error', reject);
      resolve();
    });
  });
}
