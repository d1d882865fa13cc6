/**
 * Runs the Argo CD health check for PodIdentity (config/argocd/…/health.lua) on Debian's lua5.1, the way Argo CD
 * runs it on its Lua 5.1 interpreter: the object bound to the global `obj`, the script's returned table read.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { repoRoot } from '../../dev/local-cluster/kubelet/render.js';

const run = promisify(execFile);
export const CHECK_DIR = join(repoRoot, 'config/argocd/resource_customizations/podidentity.dev/PodIdentity');
export const HEALTH_LUA = join(CHECK_DIR, 'health.lua');

/** A Lua 5.1 table constructor for a JSON value; null becomes nil, as Argo CD's conversion does. */
function luaLiteral(value: unknown): string {
  if (value === null || value === undefined) return 'nil';
  if (typeof value === 'boolean') return String(value);
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new Error(`not a finite number: ${value}`);
    return String(value);
  }
  if (typeof value === 'string') {
    // Lua 5.1 has no \u escapes: keep bytes as they are, escape only what would end or break the literal.
    let out = '';
    for (const c of value) {
      const code = c.codePointAt(0)!;
      out += c === '\\' || c === '"' ? '\\' + c : code < 0x20 || code === 0x7f ? '\\' + String(code).padStart(3, '0') : c;
    }
    return '"' + out + '"';
  }
  if (Array.isArray(value)) return '{' + value.map(luaLiteral).join(', ') + '}';
  if (typeof value === 'object') {
    return '{' + Object.entries(value as Record<string, unknown>).filter(([, v]) => v !== null && v !== undefined).map(([k, v]) => `[${luaLiteral(k)}] = ${luaLiteral(v)}`).join(', ') + '}';
  }
  throw new Error(`cannot express ${typeof value} in Lua`);
}

/** Runs health.lua on lua5.1 with `obj` bound to the object, as Argo CD does; returns its status and message. */
export async function assess(obj: unknown, script = HEALTH_LUA): Promise<{ status: string; message: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'podid-argocd-'));
  try {
    const runner = join(dir, 'run.lua');
    writeFileSync(runner, `obj = ${luaLiteral(obj)}\nlocal hs = dofile(${luaLiteral(script)})\nio.write(tostring(hs.status), "\\0", tostring(hs.message))\n`);
    const { stdout } = await run('lua5.1', [runner], { encoding: 'utf8' });
    const [status, message] = stdout.split('\0');
    return { status: status ?? '', message: message ?? '' };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

