/**
 * A "pod" for the IMDS contract test: runs @azure/identity's ManagedIdentityCredential once and prints the
 * outcome as JSON. It runs as its own process because msal-node keeps the IMDS source (and with it the first
 * credential's HTTP client) in a process-wide static. Its sockets leave from LOCAL_ADDRESS, the simulated
 * node's IP. Env: AZURE_POD_IDENTITY_AUTHORITY_HOST (the emulator's IMDS), LOCAL_ADDRESS, CLIENT_ID, SCOPE.
 */
import { Agent } from 'node:http';
import { createDefaultHttpClient, type HttpClient } from '@azure/core-rest-pipeline';
import { ManagedIdentityCredential } from '@azure/identity';

const localAddress = process.env['LOCAL_ADDRESS'] ?? '127.0.0.1';
const inner = createDefaultHttpClient();
const agent = new Agent({ keepAlive: false, localAddress } as ConstructorParameters<typeof Agent>[0]);
const httpClient: HttpClient = {
  sendRequest(request) {
    request.agent = agent;
    return inner.sendRequest(request);
  },
};

const clientId = process.env['CLIENT_ID'];
const credential = new ManagedIdentityCredential({ ...(clientId ? { clientId } : {}), httpClient });
try {
  const token = await credential.getToken(process.env['SCOPE'] ?? 'https://management.azure.com/.default');
  process.stdout.write(`${JSON.stringify({ ok: true, token: token.token, expiresOnTimestamp: token.expiresOnTimestamp })}\n`);
} catch (err) {
  process.stdout.write(`${JSON.stringify({ ok: false, name: (err as Error).name, message: (err as Error).message })}\n`);
}
