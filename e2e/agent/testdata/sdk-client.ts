/**
 * An unmodified app in a pod netns: @azure/identity with its defaults (IMDS at 169.254.169.254, no custom
 * HTTP client). CREDENTIAL=managed uses ManagedIdentityCredential, CREDENTIAL=default the whole
 * DefaultAzureCredential chain (with its IMDS probe). Prints one JSON line.
 */
import { DefaultAzureCredential, ManagedIdentityCredential } from '@azure/identity';

const scope = process.env['SCOPE'] ?? 'https://management.azure.com/.default';
const credential = process.env['CREDENTIAL'] === 'default' ? new DefaultAzureCredential() : new ManagedIdentityCredential();
try {
  const token = await credential.getToken(scope);
  process.stdout.write(`${JSON.stringify({ ok: true, token: token.token })}\n`);
} catch (err) {
  process.stdout.write(`${JSON.stringify({ ok: false, name: (err as Error).name, message: (err as Error).message })}\n`);
}
