import type http from 'node:http';

/**
 * What a raw request to the API server needs, and nothing more: where it is, and how to connect and
 * authenticate. Two implementations: in-cluster (`in-cluster.ts`, Node built-ins only, what pods run) and a
 * kubeconfig file through client-node (`kubeconfig.ts`, loaded only when a kubeconfig is used).
 */
export interface ApiServer {
  /** The API server's base URL, without a trailing slash (`https://10.96.0.1:443`). */
  readonly server: string;
  /**
   * The agent that carries the TLS settings (CA, client certificate) and pools connections, and the headers
   * that authenticate this one request. Called per request, so rotated credentials (a projected token file,
   * an exec plugin) are picked up.
   */
  credentials(): Promise<RequestCredentials>;
}

export interface RequestCredentials {
  /** For `https:` servers, an `https.Agent`; undefined means Node's global agent (plain `http:` only). */
  agent: http.Agent | undefined;
  /** `Authorization` and whatever else the credential source adds. Never logged. */
  headers: Record<string, string>;
}
