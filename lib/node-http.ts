/**
 * `node:http`, loaded with `require`, not `import`.
 *
 * Importing a built-in from an ES module builds a facade that reads each of its exports once, and reading them
 * runs the built-in's lazy getters (nodejs/node#59686). `http`'s `WebSocket`, `CloseEvent` and `MessageEvent`
 * getters load undici, which brings http2, zlib, worker_threads and assert with it: 76 modules, about 14 MB of
 * RSS in a bare process, none of which the agent uses. `require` returns the same module object without the
 * facade. `agent/import-graph_test.ts` checks at run time that the agent loads no undici.
 */
import type * as Http from 'node:http';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

export const http = require('node:http') as typeof Http;
