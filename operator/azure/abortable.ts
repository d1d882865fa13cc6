import type { AzureClients } from './types.js';

/**
 * The same clients, bound to one reconcile's cancellation signal: once it aborts (the shutdown deadline, or
 * leadership lost), no new Azure call starts and a call in flight stops being awaited, so the reconcile ends.
 */
export function abortable(azure: AzureClients, signal: AbortSignal | undefined): AzureClients {
  if (!signal) return azure;
  const wrap = <T extends object>(client: T): T =>
    new Proxy(client, {
      get(target, prop, receiver) {
        const value: unknown = Reflect.get(target, prop, receiver);
        if (typeof value !== 'function') return value;
        return (...args: unknown[]) => {
          signal.throwIfAborted();
          return new Promise((resolve, reject) => {
            const onAbort = () => reject(signal.reason);
            signal.addEventListener('abort', onAbort, { once: true });
            const done = () => signal.removeEventListener('abort', onAbort);
            try {
              (value as (...a: unknown[]) => Promise<unknown>).apply(target, args).then(resolve, reject).finally(done);
            } catch (err) {
              done();
              reject(err);
            }
          });
        };
      },
    });
  return {
    identities: wrap(azure.identities),
    federatedCredentials: wrap(azure.federatedCredentials),
    roles: wrap(azure.roles),
    scaleSets: wrap(azure.scaleSets),
    cluster: wrap(azure.cluster),
  };
}
