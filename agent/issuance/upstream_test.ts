import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { startProcess } from '../../dev/support/processes.js';

async function listening(server: Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

test('the node IMDS is called directly, never through a proxy the environment names (NODE_USE_ENV_PROXY with HTTP_PROXY and no NO_PROXY)', async () => {
  const proxied: string[] = [];
  const proxy = createServer((req, res) => {
    proxied.push(req.url ?? '');
    res.writeHead(200, { 'Content-Type': 'application/json' }).end('{"access_token":"from the proxy\'s host"}');
  });
  const imds = createServer((_req, res) => res.writeHead(200, { 'Content-Type': 'application/json' }).end('{"access_token":"from the node IMDS"}'));
  const [proxyPort, imdsPort] = [await listening(proxy), await listening(imds)];
  const upstream = fileURLToPath(new URL('./upstream.ts', import.meta.url));
  const script = `import { callNodeImds } from ${JSON.stringify(upstream)};
const answer = await callNodeImds('http://127.0.0.1:${imdsPort}', '/metadata/identity/oauth2/token?resource=x', 5000);
console.log('ANSWER ' + answer.text);`;
  const child = startProcess('node-imds-caller', process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    env: { ...process.env, NODE_USE_ENV_PROXY: '1', HTTP_PROXY: `http://127.0.0.1:${proxyPort}`, http_proxy: `http://127.0.0.1:${proxyPort}`, NO_PROXY: '', no_proxy: '' },
  });
  try {
    assert.equal(await child.exited, 0, child.output());
    assert.match(child.output(), /ANSWER \{"access_token":"from the node IMDS"\}/);
    assert.deepEqual(proxied, []);
  } finally {
    await child.stop();
    proxy.close();
    imds.close();
  }
});
