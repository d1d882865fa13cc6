/**
 * What a container image declares, read from the Dockerfile that builds it: the runtime stage's ENTRYPOINT,
 * CMD, WORKDIR, ENV, USER and what it COPYs, on top of what its base image declares. Docker can't build here,
 * so the base images' own configuration is written down below (from their published image configs).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

export interface ImageConfig {
  entrypoint: string[];
  cmd: string[];
  workdir: string;
  env: Record<string, string>;
  user?: string;
  /** `COPY --from=<stage> <src> <dest>` of the runtime stage, dest absolute. */
  copies: { from?: string; src: string; dest: string }[];
}

/**
 * The configuration the base images declare (`docker image inspect`), the parts a container's command and
 * environment depend on.
 * - node:<v>-bookworm-slim: ENTRYPOINT ["docker-entrypoint.sh"], CMD ["node"]; node in /usr/local/bin.
 * - gcr.io/distroless/nodejs<v>-debian12: ENTRYPOINT ["/nodejs/bin/node"], no CMD; :nonroot runs as 65532.
 */
const IMAGE_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
export const BASE_IMAGES: Record<string, ImageConfig> = {
  'node:24-bookworm-slim': { entrypoint: ['docker-entrypoint.sh'], cmd: ['node'], workdir: '/', env: { PATH: IMAGE_PATH }, copies: [] },
  'gcr.io/distroless/nodejs24-debian12:nonroot': {
    entrypoint: ['/nodejs/bin/node'],
    cmd: [],
    workdir: '/home/nonroot',
    env: { PATH: IMAGE_PATH },
    user: '65532',
    copies: [],
  },
};

interface Instruction {
  op: string;
  args: string;
}

export interface Stage {
  base: string;
  name?: string;
  instructions: Instruction[];
}

/** Splits a Dockerfile into stages of instructions (line continuations joined, comments dropped). */
export function parseStages(text: string): Stage[] {
  const lines = text.replace(/\\\n/g, ' ').split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));
  const stages: Stage[] = [];
  for (const line of lines) {
    const [op = '', ...rest] = line.split(/\s+/);
    const args = rest.join(' ');
    if (op.toUpperCase() === 'FROM') {
      const m = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(args);
      if (!m) throw new Error(`FROM ${args}: not understood`);
      stages.push({ base: m[1]!, ...(m[2] ? { name: m[2] } : {}), instructions: [] });
    } else {
      const stage = stages.at(-1);
      if (!stage) throw new Error(`${op} before FROM`);
      stage.instructions.push({ op: op.toUpperCase(), args });
    }
  }
  return stages;
}

/** The exec form (`["a", "b"]`) only: the shell form would add `/bin/sh -c`, which these images lack. */
function execForm(op: string, args: string): string[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(args);
  } catch {
    throw new Error(`${op} ${args}: only the exec form (a JSON array) is supported`);
  }
  if (!Array.isArray(parsed) || !parsed.every((a) => typeof a === 'string')) throw new Error(`${op} ${args}: not an array of strings`);
  return parsed as string[];
}

/** The runtime (last) stage's image configuration, on top of its base image's or an earlier stage's. */
export function imageConfig(dockerfileText: string): ImageConfig {
  const stages = parseStages(dockerfileText);
  const resolve = (stage: Stage): ImageConfig => {
    const earlier = stages.find((s) => s.name !== undefined && s.name === stage.base);
    const base = earlier ? resolve(earlier) : BASE_IMAGES[stage.base];
    if (!base) throw new Error(`base image ${stage.base}: its configuration is not recorded in dev/local-cluster/kubelet/image.ts`);
    const config: ImageConfig = { ...base, env: { ...base.env }, copies: [] };
    for (const { op, args } of stage.instructions) {
      if (op === 'ENTRYPOINT') {
        config.entrypoint = execForm(op, args);
        // Docker: setting ENTRYPOINT clears a CMD inherited from the base image.
        config.cmd = [];
      } else if (op === 'CMD') config.cmd = execForm(op, args);
      else if (op === 'WORKDIR') config.workdir = args.startsWith('/') ? args : join(config.workdir, args);
      else if (op === 'USER') config.user = args;
      else if (op === 'ENV') {
        const m = /^([A-Za-z_][A-Za-z0-9_]*)[= ](.*)$/.exec(args);
        if (!m) throw new Error(`ENV ${args}: not understood`);
        config.env[m[1]!] = m[2]!.replace(/^"(.*)"$/, '$1');
      } else if (op === 'COPY') {
        const parts = args.split(/\s+/);
        const from = parts[0]?.startsWith('--from=') ? parts.shift()!.slice('--from='.length) : undefined;
        const dest = parts.pop()!;
        for (const src of parts) config.copies.push({ ...(from ? { from } : {}), src, dest: dest.startsWith('/') ? dest : join(config.workdir, dest) });
      }
    }
    return config;
  };
  return resolve(stages.at(-1)!);
}

export function readImageConfig(repo: string, dockerfile: string): ImageConfig {
  return imageConfig(readFileSync(join(repo, dockerfile), 'utf8'));
}

/** Which Dockerfile builds an image, by the last segment of its repository (`ghcr.io/x/operator:0.1.0`). */
export function dockerfileFor(image: string): string {
  const repository = image.replace(/@.*$/, '').replace(/:[^/:]*$/, '');
  const name = repository.split('/').at(-1) ?? '';
  const component = /(operator|agent)$/.exec(name)?.[1];
  if (!component) throw new Error(`image ${image}: no Dockerfile builds it (expected a name ending in operator or agent)`);
  return `Dockerfile.${component}`;
}
