/** Shared setup for the emulator's contract tests: an emulator trusted in-process plus an operator principal. */
import { randomUUID } from 'node:crypto';
import assert from 'node:assert/strict';
import type { RestError } from '@azure/core-rest-pipeline';
import { ClientSecretCredential } from '@azure/identity';
import { ConfidentialClientApplication } from '@azure/msal-node';
import { startAzureEmulator, type AzureEmulator, type EmulatorOptions } from './emulator.js';

export const ARM_SCOPE = 'https://management.azure.com/.default';

export interface Fixture {
  emu: AzureEmulator;
  operator: { clientId: string; clientSecret: string; principalId: string };
  credential: ClientSecretCredential;
  /** Client options every ARM SDK client in the tests gets. */
  clientOptions: { endpoint: string; credentialScopes: string[] };
}

export async function startFixture(options: EmulatorOptions = {}): Promise<Fixture> {
  const emu = await startAzureEmulator(options);
  emu.trustInProcess();
  const clientSecret = `secret-${randomUUID()}`;
  const { clientId, principalId } = emu.seed.servicePrincipal({ clientId: randomUUID(), clientSecret, role: 'Owner' });
  const credential = new ClientSecretCredential(emu.tenantId, clientId, clientSecret, { authorityHost: emu.authorityHost, disableInstanceDiscovery: true });
  return { emu, operator: { clientId, clientSecret, principalId }, credential, clientOptions: { endpoint: emu.armEndpoint, credentialScopes: [ARM_SCOPE] } };
}

/** Decodes a JWT's payload without verifying it (tests only). */
export function claimsOf(token: string): Record<string, unknown> {
  const part = token.split('.')[1] ?? '';
  return JSON.parse(Buffer.from(part, 'base64url').toString('utf8')) as Record<string, unknown>;
}

export interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json: unknown;
}

/** A raw HTTPS/HTTP request (for malformed bodies and protocol details the SDKs never send). */
export async function rawRequest(
  url: string,
  init: { method?: string; headers?: Record<string, string>; body?: string; localAddress?: string; ca?: string } = {},
): Promise<RawResponse> {
  const { request: httpsRequest } = await import('node:https');
  const { request: httpRequest } = await import('node:http');
  const u = new URL(url);
  const request = u.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = request(
      u,
      {
        method: init.method ?? 'GET',
        headers: { ...(init.body !== undefined ? { 'content-type': 'application/json' } : {}), ...init.headers },
        ...(init.localAddress ? { localAddress: init.localAddress } : {}),
        ...(init.ca ? { ca: init.ca } : {}),
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json: unknown;
          try {
            json = JSON.parse(text);
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
        });
      },
    );
    req.on('error', reject);
    if (init.body !== undefined) req.write(init.body);
    req.end();
  });
}

/** A bearer token for the operator principal, from the emulator's own token endpoint via the real credential. */
export async function operatorToken(fx: Fixture): Promise<string> {
  const token = await fx.credential.getToken(ARM_SCOPE);
  return token.token;
}

/** A msal-node app that presents `assertion` for the identity `clientId` (workload identity federation). */
export function federatedApp(emu: AzureEmulator, clientId: string, assertion: string): ConfidentialClientApplication {
  return new ConfidentialClientApplication({
    auth: {
      clientId,
      authority: `${emu.authorityHost}/${emu.tenantId}`,
      clientAssertion: assertion,
      // No instance discovery against the public cloud: only the emulator's openid-configuration is fetched.
      knownAuthorities: [new URL(emu.authorityHost).host],
    },
  });
}

/** The RestError a call is expected to fail with (the SDKs' own error type). */
export async function restError(promise: Promise<unknown>): Promise<RestError> {
  try {
    await promise;
  } catch (err) {
    return err as RestError;
  }
  return assert.fail('expected the call to fail');
}
