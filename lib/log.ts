import winston from 'winston';

/** Field names whose values are never written to a log line, whatever the caller passes. */
const SECRET_KEYS = /^(access_token|refresh_token|token|assertion|client_assertion|client_secret|secret|password|authorization|id_token)$/i;
/** Anything shaped like a JWT is redacted, even under an innocent key. */
const JWT_LIKE = /eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*/g;

function scrub(value: unknown, depth = 0): unknown {
  if (typeof value === 'string') return value.replace(JWT_LIKE, '[REDACTED]');
  if (depth > 6 || value === null || typeof value !== 'object') return value;
  if (value instanceof Error) return { name: value.name, message: scrub(value.message, depth + 1) };
  if (Array.isArray(value)) return value.map((v) => scrub(v, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [key, v] of Object.entries(value)) out[key] = SECRET_KEYS.test(key) ? '[REDACTED]' : scrub(v, depth + 1);
  return out;
}

const redact = winston.format((info) => {
  for (const key of Object.keys(info)) {
    info[key] = SECRET_KEYS.test(key) ? '[REDACTED]' : scrub(info[key]);
  }
  if (typeof info.message === 'string') info.message = info.message.replace(JWT_LIKE, '[REDACTED]');
  return info;
});

export type Logger = winston.Logger;

/** JSON logs with a component name; tokens, assertions and secrets are redacted before formatting. */
export function createLogger(component: string, level = process.env['LOG_LEVEL'] ?? 'info'): Logger {
  return winston.createLogger({
    level,
    defaultMeta: { component },
    format: winston.format.combine(redact(), winston.format.timestamp(), winston.format.json()),
    transports: [new winston.transports.Console({ stderrLevels: ['error', 'warn', 'info', 'debug'] })],
  });
}
