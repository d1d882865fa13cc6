/**
 * Network namespaces for the agent e2e tests: a "node" netns (the agent, the iptables rules) with "pod"
 * netns on a bridge, and a veth from the root netns so the node reaches the Azure emulator and the API
 * server proxy. Everything is named `podid-<run id>-…` and torn down by `destroy()`, which also runs at
 * process exit. Addresses are random 10.x / 172.x subnets that exist only inside these namespaces (and on
 * the root end of the node link).
 *
 *   root netns                 node netns                           pod netns
 *   rootIp/30 ── veth ──────── nodeIp/30
 *                              bridge gatewayIp/24 ── veth ──────── eth0 podIp/24 (default via gatewayIp)
 */
import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { startProcess, type ManagedProcess, type StartOptions } from '../../support/processes.js';

export interface PodNetns {
  ns: string;
  ip: string;
}

export interface Topology {
  id: string;
  nodeNs: string;
  /** The node's address on the root link: the agent's IP, and its source address towards the emulator. */
  nodeIp: string;
  /** The root netns end of the node link: where the emulator and the API server proxy listen. */
  rootIp: string;
  gatewayIp: string;
  pods: PodNetns[];
  /** Runs a command in a namespace to completion; never throws on a non-zero exit. */
  exec(ns: string, cmd: string, args: string[], options?: { env?: NodeJS.ProcessEnv; timeoutMs?: number }): Promise<ExecResult>;
  /** Starts a long-running process in a namespace (through startProcess, so it is stopped by PID). */
  spawn(name: string, ns: string, cmd: string, args: string[], options?: StartOptions): ManagedProcess;
  destroy(): Promise<void>;
}

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

function sh(cmd: string, args: string[], timeoutMs = 30_000, env?: NodeJS.ProcessEnv): Promise<ExecResult> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: timeoutMs, env: env ?? process.env, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : -1) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}

async function must(cmd: string, args: string[]): Promise<string> {
  const res = await sh(cmd, args);
  if (res.code !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${res.code}): ${res.stderr.trim()}`);
  return res.stdout;
}

const live = new Set<Topology>();
process.once('exit', () => {
  // Last resort for a crashed test: synchronous deletes by exact name.
  for (const t of live) {
    for (const ns of [t.nodeNs, ...t.pods.map((p) => p.ns)]) {
      try {
        execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
      } catch {}
    }
  }
});

/** True when this process may create namespaces (root with iproute2). */
export async function netnsAvailable(): Promise<boolean> {
  if (process.getuid?.() !== 0) return false;
  return (await sh('ip', ['netns', 'list'])).code === 0;
}

export interface TopologyOptions {
  /** How many pod namespaces (ignored when podNames is given). */
  pods?: number;
  /** Explicit pod namespace names, e.g. `podid-<namespace>-<pod>` for `make run`'s demo pods. */
  podNames?: string[];
  /**
   * Masquerade pod traffic that leaves the node towards the root netns, as a real node SNATs to its own
   * address, so apps in pods reach the emulator's ARM and Azure AD endpoints.
   */
  podEgress?: boolean;
}

export async function createTopology({ pods: podCount = 3, podNames, podEgress = false }: TopologyOptions = {}): Promise<Topology> {
  const id = randomBytes(3).toString('hex');
  const r = randomBytes(3);
  const link = `172.${16 + (r[0]! % 16)}.${r[1]!}.${(r[2]! % 64) * 4}`;
  const [a, b, c, d] = link.split('.');
  const rootIp = `${a}.${b}.${c}.${Number(d) + 1}`;
  const nodeIp = `${a}.${b}.${c}.${Number(d) + 2}`;
  const podNet = `10.${200 + (r[2]! % 50)}.${r[1]!}`;
  const gatewayIp = `${podNet}.1`;
  const nodeNs = `podid-${id}-node`;
  const rootVeth = `pi${id}r`;
  const nodeVeth = `pi${id}n`;
  const bridge = `pi${id}br`;
  const names = podNames ?? Array.from({ length: podCount }, (_, i) => `podid-${id}-pod${i}`);
  for (const name of names) if (!name.startsWith('podid-')) throw new Error(`pod netns "${name}" must start with podid- (leak checks look for it)`);
  const pods: PodNetns[] = names.map((ns, i) => ({ ns, ip: `${podNet}.${10 + i}` }));
  const inNode = (...args: string[]) => must('ip', ['netns', 'exec', nodeNs, ...args]);

  const topology: Topology = {
    id,
    nodeNs,
    nodeIp,
    rootIp,
    gatewayIp,
    pods,
    exec: (ns, cmd, args, options = {}) => sh('ip', ['netns', 'exec', ns, cmd, ...args], options.timeoutMs ?? 30_000, options.env),
    spawn: (name, ns, cmd, args, options) => startProcess(name, 'ip', ['netns', 'exec', ns, cmd, ...args], options),
    async destroy() {
      live.delete(topology);
      // Deleting a netns deletes the veths inside it, and with them their peers in the root netns.
      for (const ns of [...pods.map((p) => p.ns), nodeNs]) await sh('ip', ['netns', 'del', ns]);
      await sh('ip', ['link', 'del', rootVeth]);
    },
  };
  live.add(topology);
  try {
    await must('ip', ['netns', 'add', nodeNs]);
    await inNode('ip', 'link', 'set', 'lo', 'up');
    await inNode('sysctl', '-qw', 'net.ipv4.ip_forward=1');
    await must('ip', ['link', 'add', rootVeth, 'type', 'veth', 'peer', 'name', nodeVeth]);
    await must('ip', ['link', 'set', nodeVeth, 'netns', nodeNs]);
    await must('ip', ['addr', 'add', `${rootIp}/30`, 'dev', rootVeth]);
    await must('ip', ['link', 'set', rootVeth, 'up']);
    await inNode('ip', 'addr', 'add', `${nodeIp}/30`, 'dev', nodeVeth);
    await inNode('ip', 'link', 'set', nodeVeth, 'up');
    await inNode('ip', 'link', 'add', bridge, 'type', 'bridge');
    await inNode('ip', 'addr', 'add', `${gatewayIp}/24`, 'dev', bridge);
    await inNode('ip', 'link', 'set', bridge, 'up');
    for (const [i, p] of pods.entries()) {
      const host = `pi${id}h${i}`;
      const peer = `pi${id}c${i}`;
      await must('ip', ['netns', 'add', p.ns]);
      await must('ip', ['netns', 'exec', p.ns, 'ip', 'link', 'set', 'lo', 'up']);
      await inNode('ip', 'link', 'add', host, 'type', 'veth', 'peer', 'name', peer);
      await inNode('ip', 'link', 'set', peer, 'netns', p.ns);
      await inNode('ip', 'link', 'set', host, 'master', bridge);
      await inNode('ip', 'link', 'set', host, 'up');
      await must('ip', ['netns', 'exec', p.ns, 'ip', 'link', 'set', peer, 'name', 'eth0']);
      await must('ip', ['netns', 'exec', p.ns, 'ip', 'addr', 'add', `${p.ip}/24`, 'dev', 'eth0']);
      await must('ip', ['netns', 'exec', p.ns, 'ip', 'link', 'set', 'eth0', 'up']);
      await must('ip', ['netns', 'exec', p.ns, 'ip', 'route', 'add', 'default', 'via', gatewayIp]);
    }
    if (podEgress) await inNode('iptables-nft', '-w', '5', '-t', 'nat', '-A', 'POSTROUTING', '-s', `${podNet}.0/24`, '-o', nodeVeth, '-j', 'MASQUERADE');
    return topology;
  } catch (err) {
    await topology.destroy();
    throw err;
  }
}

/**
 * Models the cloud's path from the node to the real IMDS, which aad-pod-identity's restart window exposed:
 * without the agent's rules, pod traffic to 169.254.169.254:80 is forwarded (and masqueraded as the node)
 * to `imdsHost:imdsPort` (the emulator's IMDS), which then sees the node and hands out its identities.
 * Appended after anything else in PREROUTING, in its own chain, so the agent's own rules come first.
 */
export async function addPlatformImdsPath(t: Topology, imdsHost: string, imdsPort: number): Promise<void> {
  const restore = [
    '*nat',
    ':TEST-PLATFORM-IMDS - [0:0]',
    `-A TEST-PLATFORM-IMDS -d 169.254.169.254/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination ${imdsHost}:${imdsPort}`,
    '-A PREROUTING -j TEST-PLATFORM-IMDS',
    `-A POSTROUTING -o pi${t.id}n -j MASQUERADE`,
    'COMMIT',
    '',
  ].join('\n');
  const res = await new Promise<ExecResult>((resolve) => {
    const child = execFile('ip', ['netns', 'exec', t.nodeNs, 'iptables-nft-restore', '-w', '5', '--noflush'], (err, stdout, stderr) =>
      resolve({ code: err ? 1 : 0, stdout: String(stdout), stderr: String(stderr) }),
    );
    child.stdin?.end(restore);
  });
  if (res.code !== 0) throw new Error(`platform IMDS path: ${res.stderr}`);
}

/** A plain TCP forwarder in this (root) netns, e.g. rootIp:port → the API server on 127.0.0.1. */
export async function tcpForward(listenHost: string, targetHost: string, targetPort: number): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const upstream = connect(targetPort, targetHost);
    sockets.add(client).add(upstream);
    const drop = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, listenHost, () => resolve());
  });
  const address = server.address();
  return {
    port: typeof address === 'object' && address ? address.port : 0,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
